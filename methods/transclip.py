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
"""
from __future__ import annotations

from adapt.core.method import Method, MethodInputs, MethodOutputs
from adapt.core.settings import parse_method_args
from adapt.graph import gaussian

DESCRIPTION = "TransCLIP-ZS: Gaussian pool model + text prior + kNN Laplacian, alternating updates"


Settings = gaussian.Settings  # method_args of transclip; values and meaning: configs/transclip.py


def make(config) -> Method:
    s = parse_method_args(Settings, config.method_args, "transclip")

    def run(inputs: MethodInputs) -> MethodOutputs:
        return gaussian.run_method(inputs, s, "transclip")

    return Method("transclip", DESCRIPTION, run, settings=s, uses_prior=True)
