"""StatA: TransCLIP-style transduction with statistical anchors, robust to pools that hold only a
few of the classes (issue #22).

Paper: Zanella, Fuchs, De Vleeschouwer, Ben Ayed, "Realistic Test-Time Adaptation of
Vision-Language Models", CVPR 2025 (official code: MaxZanella/StatA, solvers/StatA.py, batch mode).
The math lives in adapt/graph/gaussian.py. As TransCLIP-ZS except: mu starts at the class
embeddings; one diagonal variance per class with its log-determinant in the z update, started at
var_init = (1/N) sum_ik yhat_ik (x_i - t_k)^2; each update anchors on the text with
beta_k = n_k / (alpha + n_k) (n_k: hard counts of argmax z): mu_k = normalize(beta_k muhat_k +
(1 - beta_k) t_k), var_k = beta_k varhat_k + (1 - beta_k)(var_init + (t_k - mu_k)^2). 3-NN,
lambda_y = lambda_L = 1, 10 iterations (11 rounds of 5 z steps).

Deviations from the official code (also in experiments/transclip/README.md):
- the kNN graph excludes each image itself by index (see methods/transclip.py);
- var_init divides the whole sum by N once; the official `init_cov` divides inside its
  2500-row chunk loop, so on pools over 2500 images the earlier chunks are divided again (identical
  for N <= 2500);
- `center=True` runs on the CL2N-centred pool; the official code uses the features as given.
"""
from __future__ import annotations

import dataclasses

from adapt.core.method import Method, MethodInputs, MethodOutputs
from adapt.core.settings import check_at_least, parse_method_args
from adapt.graph import gaussian, gaussian_job

DESCRIPTION = "StatA: TransCLIP with text-anchored per-class Gaussians (pools with few classes)"


@dataclasses.dataclass(frozen=True)
class Settings(gaussian.Settings):
    """method_args of stata: TransCLIP's (adapt.graph.gaussian.Settings) and the anchor strength
    `alpha` (beta_k = n_k / (alpha + n_k)); values and their meaning: configs/stata.py."""

    alpha: float

    def __post_init__(self):
        super().__post_init__()
        check_at_least("alpha", self.alpha, 0.0)


def make(config) -> Method:
    s = parse_method_args(Settings, config.method_args, "stata")

    def run(inputs: MethodInputs) -> MethodOutputs:
        return gaussian_job.run_method(inputs, s, "stata", alpha=s.alpha)

    return Method("stata", DESCRIPTION, run, settings=s, uses_prior=True)
