"""TEEN: training-free calibration of few-shot prototypes toward well-estimated ones.

Paper: Wang, Zhou, Ye, Zhan, "Few-Shot Class-Incremental Learning via Training-Free Prototype
Calibration", NeurIPS 2023 (official code: wangkiw/TEEN). There a new class's prototype p_new, the
mean of its few features, is pulled toward the base-class prototypes p_b similar to it:
  p'_new = lambda p_new + (1 - lambda) sum_b w_b p_b,   w = softmax_b(tau cos(p_new, p_b)).
Here the "new" prototypes are the image prototypes of the few-label setting (mean of the
`labels_per_class` known rows per class, the pseudolabel SSL draw, adapt/core/few_labels.py) and
the well-estimated "base" prototypes (`base`) are
- `text`: the zero-shot class embeddings t (K, D);
- `pool`: prototypes rectified on the pool: the zero-shot-probability-weighted means of all pool
  rows, sum_i softmax(s f_i t^T)_k f_i (the image-side class means the text classifier implies).
Every class is a base of every class (in TEEN the bases are other, old classes; here the same classes
seen through the text or the whole pool), so a class's own base usually gets the largest weight.
Classification: s cos(f, p'_k). `lambda = 1` gives plain few-shot prototypes (the baseline).

Deviations: both prototype sets are L2-normalised before mixing (text and image embeddings come from
two towers and have different norms; TEEN mixes means of one encoder's features); `center=True` runs
on the CL2N-centred pool (pool mean subtracted, rows renormalised). lambda = 0.5 and tau = 16 are
TEEN's defaults as we read the paper, not tuned here.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from adapt.core import few_labels as few
from adapt.core.distributed import to_host
from adapt.core.method import INDUCTIVE, TRANSDUCTIVE, Head, Method, MethodInputs, MethodOutputs
from adapt.core.settings import check_at_least, check_choice, parse_method_args

DESCRIPTION = "TEEN: few-label image prototypes calibrated toward the zero-shot class embeddings"
BASES = ("text", "pool")


@dataclasses.dataclass(frozen=True)
class Settings:
    """method_args of teen; values and their meaning: configs/teen.py."""

    labels_per_class: int
    base: str
    lam: float
    tau: float
    center: bool

    def __post_init__(self):
        check_at_least("labels_per_class", self.labels_per_class, 1)
        check_choice("base", self.base, BASES)
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"method_args.lam must lie in [0, 1], not {self.lam}")


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def calibrate(protos: np.ndarray, bases: np.ndarray, lam: float, tau: float) -> np.ndarray:
    """TEEN: protos (K, D), bases (B, D) -> lam p + (1 - lam) softmax(tau cos(p, bases)) bases (K, D),
    both sets normalised first."""
    p, q = unit(protos), unit(bases)
    w = softmax(tau * p @ q.T)  # (K, B)
    return lam * p + (1 - lam) * w @ q


def few_shot_prototypes(f: np.ndarray, known: np.ndarray, k: int) -> np.ndarray:
    """Mean of the known rows of each class (K, D); a class with none keeps a zero row."""
    protos = np.zeros((k, f.shape[1]))
    for c in range(k):
        rows = known == c
        if rows.any():
            protos[c] = f[rows].mean(0)
    return protos


def make(config) -> Method:
    s = parse_method_args(Settings, config.method_args, "teen")

    def run(inputs: MethodInputs) -> MethodOutputs:
        if inputs.labels is None or not (np.asarray(inputs.labels) >= 0).any():
            raise ValueError("teen needs a pool with labels (its few known labels per class: the "
                             "few-label setting); on an unlabeled pool use zero_shot or gda")
        n = int(to_host(inputs.mask).sum())
        x = np.asarray(to_host(inputs.x)[:n], np.float64)
        mean = x.mean(0) if s.center else None
        f = unit(x - mean) if s.center else x
        t = np.asarray(to_host(inputs.class_weights), np.float64)
        scale = float(inputs.logit_scale)
        known = np.asarray(inputs.labels)
        bases = t if s.base == "text" else softmax(scale * f @ t.T).T @ f
        protos = calibrate(few_shot_prototypes(f, known, len(t)), bases, s.lam, s.tau)
        head = Head(weights=unit(protos).astype(np.float32), center=mean, scale=scale)
        probs = head.probs(x.astype(np.float32))
        metrics = dict(teen=dict(base=s.base, lam=s.lam, tau=s.tau, n_labelled=int((known >= 0).sum())))
        setting = TRANSDUCTIVE if (s.center or s.base == "pool") else INDUCTIVE
        return MethodOutputs(probs, probs.argmax(1), head, setting, metrics)

    return Method("teen", DESCRIPTION, run, settings=s,
                  few_labels=lambda labels: few.per_class(labels, s.labels_per_class))
