"""TransCLIP-ZS / TransCLIP few-shot and StatA on a classification job's inputs: the pool
features (centred or not), the kNN graph, the prior (zero-shot, or a chained run's start
probabilities), the supports of the few-label setting, the solver of adapt/graph/gaussian.py, and
the method's outputs (probabilities, soft-class-mean head, metrics).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from adapt.core import mesh as mesh_lib
from adapt.core.distributed import to_host
from adapt.core.method import TRANSDUCTIVE, MethodInputs, MethodOutputs
from adapt.graph import outputs as graph_outputs
from adapt.graph.gaussian import Z_STEPS, knn_affinity, solve

FEW_SHOT_LAMBDA = 0.5  # the official few-shot lambda on log yhat (get_parameters)


def run_method(inputs: MethodInputs, s, model: str, alpha: float = 1.0, gamma: float = 0.0) -> MethodOutputs:
    """Runs TransCLIP-ZS or StatA (`model`) on a classification job's inputs with the method's
    settings `s` (center, prior_scale, k, iterations, lam_prior, lam_laplacian, block). TransCLIP
    with known labels (`inputs.labels`, the few-label setting): few-shot mode, supports fixed,
    `gamma` their weight in the mean / variance updates."""
    n = int(to_host(inputs.mask).sum())
    graph_outputs.require_graph_pool(n, model)
    x, mean = graph_outputs.pool_features(inputs.x, inputs.mask, s.center)
    k = min(s.k, n - 1)
    nb = knn_affinity(x, inputs.mask, k, mesh=inputs.mesh, block=s.block)
    prior = None if inputs.prior_probs is None else mesh_lib.shard_rows(
        np.asarray(inputs.prior_probs, x.dtype), inputs.mesh)[0]
    support = few_shot_support(inputs) if model == "transclip" else None
    z, _, info = solve(x, inputs.mask, inputs.class_weights, nb, s.prior_scale, model=model, k=k,
                       iterations=s.iterations,
                       lam_prior=s.lam_prior if support is None else FEW_SHOT_LAMBDA,
                       lam_laplacian=s.lam_laplacian, alpha=alpha, prior=prior, support=support,
                       gamma=float(gamma))
    probs = graph_outputs.host_rows(z, n)
    head = graph_outputs.soft_mean_head(x, z, inputs.mask, mean, inputs.logit_scale)
    metrics = {
        "gaussian_model": model, "centered": bool(s.center), "prior_scale": s.prior_scale, "k": k,
        "iterations": s.iterations, "z_steps": Z_STEPS,
        "last_round_max_change": float(info["last_change"]),
        "agreement_with_prior": float(info["prior_agreement"]),
        "graph_edges": int(to_host(jnp.sum(nb.w != 0))),
        "predictions_setting": TRANSDUCTIVE, "head": "soft class means (inductive)",
        "prior": "zero-shot softmax" if prior is None else "the start run's probabilities (init.from)",
    }
    if support is not None:
        metrics.update(few_shot=True, n_support=int(to_host(jnp.sum(support[0]))), gamma=float(gamma),
                       lam_prior=FEW_SHOT_LAMBDA)
    return MethodOutputs(probs, graph_outputs.predict(probs), head, TRANSDUCTIVE, metrics)


def few_shot_support(inputs: MethodInputs):
    """(rows (Np,) bool, one-hot labels (Np, K)) of the known labels, sharded; None without any."""
    if inputs.labels is None or not (np.asarray(inputs.labels) >= 0).any():
        return None
    labels = np.asarray(inputs.labels)
    onehot = np.zeros((len(labels), inputs.class_weights.shape[0]), np.float32)
    onehot[np.flatnonzero(labels >= 0), labels[labels >= 0]] = 1.0
    rows = mesh_lib.shard_rows(labels >= 0, inputs.mesh)[0]
    return rows, mesh_lib.shard_rows(onehot, inputs.mesh)[0]
