"""TransCLIP-ZS: transductive zero-shot classification by a Gaussian model of the pool, the text
prior and a kNN Laplacian term (issue #22).

Paper: Zanella, Gerin, Ben Ayed, "Boosting Vision-Language Models with Transduction", NeurIPS 2024
(official code: MaxZanella/transduction-for-vlms, TransCLIP_solver/TransCLIP.py and
TransCLIP_utils.py; zero-shot mode only). The math lives in adapt/graph/gaussian.py:
yhat = softmax(100 x t^T), z0 = yhat; mu_k = normalize of the z-weighted mean of the 8 most confident
images of class k; one shared diagonal variance 1/D; W the 3-NN raw-cosine graph; 11 rounds of 5
parallel z updates with 10 mean / variance updates between them; prediction argmax z.

Deviations from the official code (each also in experiments/transclip/README.md):
- the kNN graph excludes each image itself by index (the official top-(k+1)-drop-first keeps the
  image and drops a duplicate when they tie at cosine 1);
- the 8 initial images per class are ranked by the prior's log-odds, not by the float32 softmax
  (equal where softmax does not saturate; without this, saturated ties go to the lowest pool index);
- `center=True` runs everything on the CL2N-centred pool (pool mean subtracted, renormalised), as
  our other graph methods do; the official code uses the features as given (`center=False`).
The deployable head is the soft class means of the pool under z (inductive).

Few-shot mode (`shots` > 0: that many known labels per class, the few-label setting of
methods/pseudolabel.py): the official TransCLIP-FS update (TransCLIP_utils.py update_z, update_mu,
update_sigma, init_mu) with the official lambda 0.5 (in place of `lam_prior`); supports keep one-hot z;
the means start at the normalised sums of each class's supports; mean / variance sums weight a
query 1 / n_query and a support gamma 50 / n_support. Deviations from the official few-shot code:
- the supports are pool rows (the few-label setting labels some pool images) instead of a separate
  shot set: they are nodes of the one kNN graph over the pool (self excluded by index), so a query's
  neighbours may be supports and a support's out-edges reach every pool row; the official graph
  stacks support rows above query rows while its z stacks them below (its W^T z and W z then pair
  rows by position, not by image), which we do not restate;
- one gamma (`gamma`, default 0.002, the smallest of the official list) instead of the official
  choice among [0.002, 0.01, 0.02, 0.2] by accuracy on a separate labelled validation set, which
  the few-label setting does not have;
- the engine's accuracy counts every pool row, the supports (predicted as their labels) included.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from adapt.core.method import Method, MethodInputs, MethodOutputs
from adapt.core.settings import check_at_least, parse_method_args
from adapt.graph import gaussian, gaussian_job

DESCRIPTION = "TransCLIP-ZS: Gaussian pool model + text prior + kNN Laplacian, alternating updates"


@dataclasses.dataclass(frozen=True)
class Settings(gaussian.Settings):
    """method_args of transclip (values and meaning: configs/transclip.py): the settings shared
    with StatA, plus the few-shot mode's labels per class and support weight gamma."""

    shots: int
    gamma: float

    def __post_init__(self):
        super().__post_init__()
        check_at_least("shots", self.shots, 0)
        check_at_least("gamma", self.gamma, 0.0)


def few_labels(shots: int, labels: np.ndarray) -> np.ndarray | None:
    """Few-shot mode: `shots` known labels per class (numpy seed 0), -1 elsewhere; 0 shots: None.
    The same draw as pseudolabel's few-label setting (methods/pseudolabel.py `few_labels`)."""
    if shots == 0:
        return None
    rng = np.random.default_rng(0)
    out = np.full(len(labels), -1, np.int64)
    for c in np.unique(labels[labels >= 0]):
        pick = rng.choice(np.flatnonzero(labels == c), shots, replace=False)
        out[pick] = c
    return out


def make(config) -> Method:
    s = parse_method_args(Settings, config.method_args, "transclip")

    def run(inputs: MethodInputs) -> MethodOutputs:
        return gaussian_job.run_method(inputs, s, "transclip", gamma=s.gamma)

    return Method("transclip", DESCRIPTION, run, settings=s, uses_prior=True,
                  few_labels=lambda labels: few_labels(s.shots, labels))
