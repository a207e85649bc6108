"""LaplacianShot and SLK on the pool: Laplacian-regularised assignment (spec laplacian.md).

Papers: Ziko et al., "Laplacian Regularized Few-Shot Learning", ICML 2020 (official code:
imtiazziko/LaplacianShot on GitHub); SLK: Ziko et al., "Transductive Few-Shot Learning: Clustering is
All You Need?" (official code: imtiazziko/SLK-few-shot).

A unary term a_ik (fit of image i to class prototype k) plus a Laplacian term over the binary,
directed kNN graph of the pool (`knn` counts the node itself, so each node has knn - 1 out-edges),
solved by the parallel bound updates Y <- softmax(-A + lam W Y) (adapt/graph/bound.py).

Prototype sources (`method_args.prototypes`):
  text    a_ik = -s x_i . t_k on the uncentred pool (zero-shot; Y^0 is the zero-shot softmax at scale s,
          lam on that scale; `center` applies to image-space prototypes only, spec A.1)
  pseudo  a_ik = |x_i - m_k|^2, m_k = normalize(sum over the 8 pool images with the highest P0_ik
          of P0_ik x_i) (the TransCLIP initialisation; no labels)
  rectified  a_ik = -s x_i . m_k, m_k = normalize(sum_i P0_ik x_i) over the whole pool (P0 at the
          model's logit scale; `graph_outputs.rectified_prototypes`): text mode on image-space
          prototypes, so s and lam keep their meaning
  few-shot support means (optionally rectified, BD-CSPN) through `few_shot_unary` (Python API: the
          engine does not pass supports yet).
Variant `slk`: prototypes are re-estimated (kmeans means, or K-modes by mean-shift "ms") between
assignment steps (adapt/graph/slk.py). The head is the soft class means of the final assignments.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from adapt.core.distributed import to_host
from adapt.core.method import TRANSDUCTIVE, Method, MethodInputs, MethodOutputs
from adapt.core.settings import check_at_least, check_choice, parse_method_args
from adapt.graph import bound as graph_bound
from adapt.graph import outputs as graph_outputs
from adapt.graph import slk as graph_slk
from adapt.graph import sparse as graph
from adapt.graph.knn import blocked_knn, euclidean_knn

DESCRIPTION = "LaplacianShot / SLK: Laplacian-regularised assignment to text or pool prototypes"
RECTIFY_TEMPERATURE = 10.0
PSEUDO_TOP = 8
VARIANTS = ("lshot", "slk")
PROTOTYPES = ("text", "pseudo", "rectified")
SLK_STEPS = ("kmeans", "ms")


@dataclasses.dataclass(frozen=True)
class Settings:
    """method_args of laplacian; values and their meaning: configs/laplacian.py."""

    variant: str
    prototypes: str
    knn: int
    lam: float
    scale: float
    center: bool
    max_iters: int
    tol: float
    slk_lam: float
    slk_step: str
    slk_laplacian: bool
    slk_max_outer: int
    slk_tol: float
    slk_bound_iters: int
    bandwidth: str
    block: int

    def __post_init__(self):
        check_choice("variant", self.variant, VARIANTS)
        check_choice("prototypes", self.prototypes, PROTOTYPES,
                     " (few-shot supports go through few_shot_unary in Python)")
        check_choice("slk_step", self.slk_step, SLK_STEPS)
        check_at_least("knn", self.knn, 2, " (it counts the node itself)")


def knn_graph(x, mask, knn, mesh=None, block=1024, unit_norm=True):
    """Binary directed kNN W (self excluded, knn - 1 out-edges), Euclidean on the features:
    inner-product ranking for unit rows, the augmented form otherwise. The method passes
    knn = min(knn, N) (the official sklearn search cannot ask for more neighbours than rows)."""
    search = blocked_knn if unit_norm else euclidean_knn
    _, idx = search(x, x, knn - 1, exclude_self=True, block=block, key_mask=mask, mesh=mesh)
    return graph.from_knn(idx, jnp.ones(idx.shape, x.dtype), mask)


@jax.jit
def text_unary(x, class_weights, scale):
    """a_ik = -s x_i . t_k: (Np, C)."""
    return -scale * x @ class_weights.T


def log_odds_against(logits):
    """u_ik = logsumexp_{j != k} z_ij - z_ik for logits z (N, C): P_ik = softmax_k(z_i) = 1 / (1 + e^u),
    so u ranks rows like -P_ik without saturating where float32 rounds P_ik to exactly 1.0."""
    top = jnp.max(logits, axis=1, keepdims=True)
    is_top = jax.nn.one_hot(jnp.argmax(logits, axis=1), logits.shape[1], dtype=bool)
    second = jnp.max(jnp.where(is_top, -jnp.inf, logits), axis=1, keepdims=True)
    others_of_top = jnp.sum(jnp.where(is_top, 0.0, jnp.exp(logits - second)), axis=1, keepdims=True)
    total = jnp.sum(jnp.exp(logits - top), axis=1, keepdims=True)  # >= 1; minus one non-top term stays >= 1
    rest = jnp.maximum(total - jnp.exp(logits - top), 1.0)
    return jnp.where(is_top, second + jnp.log(others_of_top), top + jnp.log(rest)) - logits


@jax.jit
def pseudo_prototypes(x, mask, class_weights, scale):
    """m_k = normalize(sum_{top-8 pool rows by P0_ik} P0_ik x_i): (C, D).

    Rows are ranked by `log_odds_against` of the logits, not by the float32 P0_ik: with few classes
    many confident rows saturate to P0 = 1.0 and the tie would go to the lowest pool indices
    (pool-order dependence). The weights stay P0_ik. Fewer than 8 rows: all real rows."""
    logits = scale * x @ class_weights.T
    p0 = jax.nn.softmax(logits, axis=1)
    odds = jnp.where(mask[:, None], log_odds_against(logits), jnp.inf)
    _, top_i = lax.top_k(-odds.T, min(PSEUDO_TOP, x.shape[0]))  # (C, top)
    weights = jnp.take_along_axis(p0.T, top_i, axis=1) * mask[top_i]
    protos = jnp.einsum("ck,ckd->cd", weights, x[top_i])
    return protos / jnp.maximum(jnp.linalg.norm(protos, axis=1, keepdims=True), 1e-12)


@jax.jit
def rectify_prototypes(support, queries, q_mask, protos):
    """BD-CSPN rectification on X' = [S; X]: m_k <- (1/n_k) sum_{argmax = k} softmax(10 cos)_k x.
    Not divided by the weight sum (official); a class no row picks keeps its prototype."""
    xs = jnp.concatenate([support, queries])
    w_rows = jnp.concatenate([jnp.ones(support.shape[0], bool), q_mask]).astype(xs.dtype)
    unit = lambda a: a / jnp.maximum(jnp.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    cos = unit(xs) @ unit(protos).T
    w = jax.nn.softmax(RECTIFY_TEMPERATURE * cos, axis=1)
    pick = jax.nn.one_hot(jnp.argmax(cos, axis=1), protos.shape[0], dtype=xs.dtype) * w_rows[:, None]
    count = pick.sum(0)
    new = ((pick * w).T @ xs) / jnp.where(count > 0, count, 1.0)[:, None]
    return jnp.where((count > 0)[:, None], new, protos)


@functools.partial(jax.jit, static_argnames=("num_classes", "rectify"))
def few_shot_unary(x, mask, support, support_labels, num_classes, rectify=False):
    """Few-shot LaplacianShot: prototypes are support means (support (M, D), labels (M,)), with
    optional rectification (queries shifted by mean(S) - mean(X) first). Returns (unary (Np, C),
    the possibly shifted x, prototypes)."""
    support = jnp.asarray(support)
    onehot = jax.nn.one_hot(jnp.asarray(support_labels), num_classes, dtype=support.dtype)
    protos = (onehot.T @ support) / jnp.maximum(onehot.sum(0), 1.0)[:, None]
    if rectify:
        w = mask.astype(x.dtype)[:, None]
        shift = support.mean(0) - jnp.sum(w * x, 0) / jnp.maximum(w.sum(), 1.0)
        x = jnp.where(mask[:, None], x + shift, 0.0)
        protos = rectify_prototypes(support, x, mask, protos)
    return graph_bound.squared_distances(x, protos), x, protos


def _metrics(s: Settings, centered, iterations, energies, extra):
    trace = to_host(energies).astype(np.float64)
    trace = trace[np.isfinite(trace)]
    lam = s.lam if s.variant == "lshot" else s.slk_lam
    return {"variant": s.variant, "prototypes": s.prototypes, "knn": s.knn,
            "lambda": lam, "centered": centered, "iterations": int(iterations),
            "energy": graph_outputs.summary(trace), "predictions_setting": TRANSDUCTIVE,
            "head": "soft class means (inductive)", **extra}


def make(config) -> Method:
    s = parse_method_args(Settings, config.method_args, "laplacian")

    def run(inputs: MethodInputs) -> MethodOutputs:
        n = int(to_host(inputs.mask).sum())
        graph_outputs.require_graph_pool(n, "laplacian")
        c = int(inputs.class_weights.shape[0])
        if s.variant == "slk" and n < c:  # k-means with more clusters than points
            raise ValueError(f"laplacian variant slk needs a pool of at least {c} images (one per "
                             f"cluster, C = {c}), got {n}")
        centered = graph_outputs.centers_with(s.center, s.prototypes)
        x, mean = graph_outputs.pool_features(inputs.x, inputs.mask, centered)
        scale = s.scale or float(inputs.logit_scale)
        nb = knn_graph(x, inputs.mask, min(s.knn, n), inputs.mesh, s.block)
        lam = s.lam
        if s.prototypes == "pseudo":
            protos = pseudo_prototypes(x, inputs.mask, inputs.class_weights, scale)
        else:
            protos = graph_outputs.class_prototypes(s.prototypes, x, inputs.mask, inputs.class_weights,
                                                    inputs.logit_scale, prior=inputs.prior_probs)
        if s.variant == "lshot":
            unary = (graph_bound.squared_distances(x, protos) if s.prototypes == "pseudo"
                     else text_unary(x, protos, scale))
            res = graph_bound.bound_update(unary, nb, lam, inputs.mask, max_iters=s.max_iters, tol=s.tol)
            y, extra = res.y, {}
            metrics = _metrics(s, centered, res.iterations, res.energies, extra)
        else:
            no_support = jnp.zeros_like(inputs.mask)
            edges = float(to_host(nb.w.sum())) if s.bandwidth == "edges" else 5.0 * n
            sigma2 = graph_bound.slk_bandwidth(x, nb, inputs.mask, edges)
            res = graph_slk.slk(x, inputs.mask, nb, protos, no_support,
                                jnp.zeros((x.shape[0], protos.shape[0]), x.dtype),
                                s.slk_lam, sigma2, prototype_step=s.slk_step, laplacian=s.slk_laplacian,
                                max_outer=s.slk_max_outer, tol=s.slk_tol, bound_iters=s.slk_bound_iters)
            y = res.y
            metrics = _metrics(s, centered, res.iterations, res.energies,
                               {"slk_step": s.slk_step, "empty_cluster_guard": bool(res.emptied),
                                "sigma2": float(sigma2)})
        probs = graph_outputs.host_rows(y, n)
        head = graph_outputs.soft_mean_head(x, y, inputs.mask, mean, inputs.logit_scale)
        return MethodOutputs(probs, graph_outputs.predict(probs), head, TRANSDUCTIVE, metrics)

    return Method("laplacian", DESCRIPTION, run, settings=s, uses_prior=True)
