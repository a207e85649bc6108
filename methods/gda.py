"""GDA: Gaussian discriminant analysis on the image features, added to the zero-shot logits.

Paper: Wang, Li, Zhang, Ji, "A Hard-to-Beat Baseline for Training-free CLIP-based Adaptation",
ICLR 2024 (official code: mrflogs/ICLR24, main_few_shots.py). One Gaussian per class with a shared
covariance; with f (N, D) features, mu (K, D) class means, Sigma the covariance of the class-centred
features (normalised by N - 1) and p (K,) the class prior:
  precision P = D * pinv((N - 1) Sigma + tr(Sigma) I)      (the paper's shrinkage estimator)
  W_k = P mu_k,  b_k = log p_k - 1/2 mu_k^T P mu_k
  logits = s f t^T + alpha (f W^T + b)                      (s: the model's logit scale, t: class texts)

Settings (`setting`):
- `ssl`: the supervised form on `labels_per_class` known labels per class (the same seed-0 draw as
  the pseudolabel method's SSL setting, adapt/core/few_labels.py); mu, Sigma from those rows only.
- `ul`: no labels. Our reading of the paper's unlabeled extension (no public code): EM for the same
  shared-covariance mixture, started from the zero-shot probabilities. Responsibilities
  r (N, K) = softmax(s f t^T) at the start; M step: n_k = sum_i r_ik, mu_k = sum_i r_ik f_i / n_k,
  (N - 1) Sigma = sum_ik r_ik (f_i - mu_k)(f_i - mu_k)^T (the soft within-class scatter; one-hot r
  gives the supervised form exactly); E step: r = softmax(s f t^T + alpha (f W^T + b)), i.e. the text
  logits stay in every E step as a per-image prior on the class (the posterior of a model whose
  likelihood is the Gaussian raised to alpha and whose prior is the zero-shot softmax). `iterations`
  M+E steps; the last iterate is reported.

alpha without labels (both settings): the official code grid-searches alpha on a labelled validation
split, which this setting does not have (the few labels are the training set). Rule: alpha makes the
GDA logits as spread as the text logits, alpha = mean_i std_k(s f_i t^T) / mean_i std_k(f_i W^T + b)
over the pool rows (both terms then weigh equally); 0 when the GDA logits are constant (one label per
class: every class-centred row is zero, Sigma = 0, pinv(0) = 0, so W = 0 and GDA is zero-shot).
`alpha > 0` in the config fixes it instead.

Deviations from the official code (also in experiments/statistics/README.md):
- the prior p is uniform, as in the official code, also in the EM (n_k is not re-estimated: a
  re-estimated prior lets one class absorb the pool);
- no augmented views of the labelled images (the official code embeds `augment_epoch` random crops
  of each), so with one label per class Sigma = 0 and GDA returns the zero-shot classifier;
- `center=True` runs on the CL2N-centred pool (pool mean subtracted, rows renormalised), as our other
  transductive methods do; the official code uses the unit features as given (`center=False`).
The deployable head carries the whole classifier: weights t + (alpha / s) W, scale s, bias alpha b,
the pool mean as its center.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg

from adapt.core import few_labels as few
from adapt.core.distributed import to_host
from adapt.core.method import INDUCTIVE, TRANSDUCTIVE, Head, Method, MethodInputs, MethodOutputs
from adapt.core.settings import check_at_least, check_choice, parse_method_args

DESCRIPTION = "GDA: shared-covariance Gaussian discriminant on image features + zero-shot logits (few labels or EM)"
SETTINGS = ("ul", "ssl")


@dataclasses.dataclass(frozen=True)
class Settings:
    """method_args of gda; values and their meaning: configs/gda.py."""

    setting: str
    labels_per_class: int
    iterations: int
    alpha: float
    center: bool

    def __post_init__(self):
        check_choice("setting", self.setting, SETTINGS)
        check_at_least("labels_per_class", self.labels_per_class, 1)
        check_at_least("iterations", self.iterations, 1)


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def features(x: np.ndarray, center: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Unit rows x (N, D) -> (f (N, D), the pool mean (D,) or None): CL2N when `center`."""
    x = np.asarray(x, np.float64)
    if not center:
        return x, None
    mean = x.mean(0)
    f = x - mean
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12), mean


def gda_parameters(f: np.ndarray, resp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f (N, D) features, resp (N, K) responsibilities (one-hot rows for labels) -> W (K, D), b (K,)."""
    n, d = f.shape
    mass = resp.sum(0)  # (K,)
    mu = resp.T @ f / np.maximum(mass, 1e-12)[:, None]  # (K, D)
    if np.all((resp == 0) | (resp == 1)):  # labels: centre each class's rows first (exact zero scatter
        c = f - resp @ mu                    # for one label per class, where the expanded form below
        scatter = c.T @ c                    # leaves rounding noise that pinv blows up)
    else:  # sum_ik r_ik (f_i - mu_k)(f_i - mu_k)^T = sum_i (sum_k r_ik) f_i f_i^T - sum_k n_k mu_k mu_k^T
        scatter = (f * resp.sum(1, keepdims=True)).T @ f - (mu * mass[:, None]).T @ mu
        scatter = (scatter + scatter.T) / 2
    trace = np.trace(scatter) / max(n - 1, 1)  # tr(Sigma), Sigma = scatter / (N - 1)
    if trace > 0:  # scatter + tr(Sigma) I is positive definite: pinv = inverse; W = D mu A^-1 by Cholesky
        w = d * scipy.linalg.solve(scatter + trace * np.eye(d), mu.T, assume_a="pos").T
    else:  # tr(Sigma) = 0: a PSD scatter with trace 0 is 0, and pinv(0) = 0
        w = np.zeros_like(mu)
    prior = np.full(len(mu), 1.0 / len(mu))
    b = np.log(prior) - 0.5 * np.einsum("kd,kd->k", w, mu)
    return w, b


def balance_alpha(text_logits: np.ndarray, gda_logits: np.ndarray) -> float:
    """The label-free alpha: mean row spread (std over classes) of the text logits over that of the
    GDA logits; 0 when the GDA logits do not vary over classes."""
    spread = float(gda_logits.std(1).mean())
    return float(text_logits.std(1).mean()) / spread if spread > 1e-9 else 0.0


def gda_step(f, text_logits, resp, alpha: float):
    """One M step (GDA from `resp`) and E step: -> (W, b, alpha used, logits (N, K))."""
    w, b = gda_parameters(f, resp)
    g = f @ w.T + b
    a = alpha if alpha > 0 else balance_alpha(text_logits, g)
    return w, b, a, text_logits + a * g


def fit(f, t, scale: float, s: Settings, known: np.ndarray | None):
    """f (N, D), t (K, D), known (N,) labels (-1 unknown; `ssl`) -> (W, b, alpha, logits (N, K), trace)."""
    text_logits = scale * f @ t.T
    if s.setting == "ssl":
        rows = np.flatnonzero(known >= 0)
        onehot = np.eye(len(t))[known[rows]]
        w, b = gda_parameters(f[rows], onehot)
        g = f @ w.T + b
        a = s.alpha if s.alpha > 0 else balance_alpha(text_logits, g)
        return w, b, a, text_logits + a * g, []
    resp, trace = softmax(text_logits), []
    for _ in range(s.iterations):
        w, b, a, logits = gda_step(f, text_logits, resp, s.alpha)
        new = softmax(logits)
        trace.append(dict(alpha=a, changed=int((new.argmax(1) != resp.argmax(1)).sum())))
        resp = new
    return w, b, a, logits, trace


def make(config) -> Method:
    s = parse_method_args(Settings, config.method_args, "gda")

    def run(inputs: MethodInputs) -> MethodOutputs:
        n = int(to_host(inputs.mask).sum())
        known = None
        if s.setting == "ssl":
            if inputs.labels is None or not (np.asarray(inputs.labels) >= 0).any():
                raise ValueError("gda setting=ssl needs a pool with labels (its few known labels per "
                                 "class); use setting=ul on an unlabeled pool")
            known = np.asarray(inputs.labels)
        f, mean = features(to_host(inputs.x)[:n], s.center)
        t = np.asarray(to_host(inputs.class_weights), np.float64)
        scale = float(inputs.logit_scale)
        w, b, alpha, logits, trace = fit(f, t, scale, s, known)
        probs = softmax(logits).astype(np.float32)
        head = Head(weights=(t + alpha / scale * w).astype(np.float32), center=mean, scale=scale,
                    bias=(alpha * b).astype(np.float32))
        metrics = dict(gda=dict(setting=s.setting, alpha=alpha, alpha_rule="given" if s.alpha > 0 else
                                "balance: mean std_k(text logits) / mean std_k(GDA logits)",
                                n_labelled=int((known >= 0).sum()) if known is not None else 0,
                                em=trace))
        setting = TRANSDUCTIVE if (s.center or s.setting == "ul") else INDUCTIVE
        return MethodOutputs(probs, probs.argmax(1), head, setting, metrics)

    def labelled(labels: np.ndarray) -> np.ndarray | None:
        return few.per_class(labels, s.labels_per_class) if s.setting == "ssl" else None

    return Method("gda", DESCRIPTION, run, settings=s, few_labels=labelled)
