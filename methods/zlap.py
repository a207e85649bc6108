"""ZLaP: label propagation over a kNN graph of pool images and class nodes (spec label_propagation.md A).

Paper: Stojnic, Kalantidis, Tolias, "Label Propagation for Zero-shot Classification with
Vision-Language Models", CVPR 2024 (official code: vladan-stojnic/ZLaP on GitHub).

Nodes: the C classes and the N pool images. Image i links to its k - 1 nearest images (weight
max(cos, 0), self excluded) and to its min(k, C) nearest classes (weight max(cos, 0)^gamma); class
nodes have no out-edges. W = A + A^T, S = D^-1/2 W D^-1/2, and the scores are Z = (I - alpha S)^-1 E_C
(E_C: one-hot columns on the class nodes), solved for all classes at once by a truncated Neumann
series (default) or per-column conjugate gradients. Transductive score of image i for class c:
Z[image i, c]. Inductive score of a new image x: Z_all^T y_x (y_x: its kNN weights to the pool and
its class weights), so one solve serves every new point (`inductive_scores`).

Class nodes (`classifier`): "text", the class embeddings; or "rectified", image-space proxies from
one soft-assignment step of the pool on the class embeddings (`graph_outputs.rectified_prototypes`;
the spec's proxy-classifier setting, used with k 10, gamma 3 and min-max scaling).
The deployable head is the soft class means of the (centred) pool under the propagated scores.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from adapt.core.distributed import to_host
from adapt.core.method import TRANSDUCTIVE, Method, MethodInputs, MethodOutputs
from adapt.core.settings import check_at_least, check_choice, parse_method_args
from adapt.graph import outputs as graph_outputs
from adapt.graph import sparse as graph
from adapt.graph.knn import blocked_knn

DESCRIPTION = "ZLaP: label propagation over a kNN graph of pool images and class nodes"
log = logging.getLogger(__name__)
SOLVERS = ("series", "cg")


@dataclasses.dataclass(frozen=True)
class Settings:
    """method_args of zlap; values and their meaning: configs/zlap.py."""

    classifier: str
    k: int
    gamma: float
    alpha: float
    scale_sim: bool
    tol: float
    solver: str
    center: bool
    block: int

    def __post_init__(self):
        check_at_least("k", self.k, 2, " (the node itself counts as one neighbour)")
        check_choice("solver", self.solver, SOLVERS)
        check_choice("classifier", self.classifier, graph_outputs.PROTOTYPE_SOURCES)


class ZlapGraph(NamedTuple):
    images: graph.Neighbours  # image -> image edges (Np, k-1), node ids are pool rows
    classes: jax.Array  # (Np, C) image -> class edge weights (min(k, C) non-zeros per real row)
    inv_sqrt_image: jax.Array  # (Np,) D^-1/2 on image nodes
    inv_sqrt_class: jax.Array  # (C,) D^-1/2 on class nodes
    class_degree: jax.Array  # (C,) degree of each class node (0: isolated)
    sim_range: jax.Array  # (2,) min and max of kept similarities (proxy scaling), else (0, 1)


class ZlapState(NamedTuple):
    """Everything inductive scoring needs: the pool, its graph settings and Z_all = L^-1[:, :C]."""
    pool: jax.Array  # (Np, D) features the graph was built on
    mask: jax.Array  # (Np,)
    classifier: jax.Array  # (C, D)
    z_image: jax.Array  # (Np, C)
    z_class: jax.Array  # (C, C)
    sim_range: jax.Array
    k: int
    gamma: float
    scale_sim: bool


def _edge_weights(sim, keep, sim_range, scale_sim, power):
    if scale_sim:
        sim = (sim - sim_range[0]) / (sim_range[1] - sim_range[0])
    w = jnp.maximum(sim, 0.0) ** power
    return jnp.where(keep, w, 0.0)


def class_edges(x, classifier, k, row_mask):
    """Top min(k, C) classes of each row: (ids (N, kt), similarities (N, kt), keep (N, kt))."""
    kt = min(k, classifier.shape[0])
    sim, ids = lax.top_k(x @ classifier.T, kt)
    return ids, sim, jnp.broadcast_to(row_mask[:, None], sim.shape)


@functools.partial(jax.jit, static_argnames=("k", "gamma", "scale_sim"))
def _assemble(x, mask, classifier, knn_idx, knn_sim, *, k, gamma, scale_sim):
    n, c = x.shape[0], classifier.shape[0]
    img_keep = mask[:, None] & (knn_idx >= 0)
    cls_ids, cls_sim, cls_keep = class_edges(x, classifier, k, mask)
    self_sim = jnp.sum(x * x, axis=1, keepdims=True)  # the official kNN keeps the self edge here
    kept = [jnp.where(img_keep, knn_sim, jnp.nan), jnp.where(cls_keep, cls_sim, jnp.nan),
            jnp.where(mask[:, None], self_sim, jnp.nan)]
    lo = jnp.min(jnp.stack([jnp.nanmin(a) for a in kept]))
    hi = jnp.max(jnp.stack([jnp.nanmax(a) for a in kept]))
    sim_range = jnp.stack([lo, hi]) if scale_sim else jnp.array([0.0, 1.0], x.dtype)
    images = graph.from_knn(knn_idx, _edge_weights(knn_sim, img_keep, sim_range, scale_sim, 1.0), mask)
    w_cls = _edge_weights(cls_sim, cls_keep, sim_range, scale_sim, gamma)
    classes = jnp.zeros((n, c), x.dtype).at[jnp.arange(n)[:, None], cls_ids].add(w_cls)
    d_img = images.w.sum(1) + graph.in_degree(images, n) + classes.sum(1)
    d_cls = classes.sum(0)
    return ZlapGraph(images, classes, graph.inv_sqrt_degree(d_img), graph.inv_sqrt_degree(d_cls),
                     d_cls, sim_range)


def apply_s(g: ZlapGraph, z):
    """S z for z = (z_image (Np, C'), z_class (C, C'))."""
    z_img, z_cls = z
    u_img = g.inv_sqrt_image[:, None] * z_img
    u_cls = g.inv_sqrt_class[:, None] * z_cls
    out_img = (graph.gather_sum(g.images, u_img) + graph.scatter_sum(g.images, u_img, u_img.shape[0])
               + g.classes @ u_cls)
    out_cls = g.classes.T @ u_img
    return g.inv_sqrt_image[:, None] * out_img, g.inv_sqrt_class[:, None] * out_cls


@functools.partial(jax.jit, static_argnames=("alpha", "terms", "solver", "tol", "max_iters"))
def solve(g: ZlapGraph, *, alpha, terms, solver="series", tol=1e-6, max_iters=50):
    """Z = (I - alpha S)^-1 E_C -> (z_image (Np, C), z_class (C, C), info dict of arrays)."""
    c = g.classes.shape[1]
    b = (jnp.zeros_like(g.classes), jnp.eye(c, dtype=g.classes.dtype))
    if solver == "series":
        z = graph.propagate_series(lambda v: apply_s(g, v), b, alpha, terms)
        iters = jnp.full((c,), terms, jnp.int32)
    else:
        def apply_l(v):
            return jax.tree.map(lambda a, sa: a - alpha * sa, v, apply_s(g, v))
        z, iters, _ = graph.conjugate_gradient(apply_l, b, tol=tol, max_iters=max_iters)
    sz = apply_s(g, z)
    residual = jnp.max(jnp.stack([jnp.max(jnp.abs(zz - bb - alpha * s_))
                                  for zz, bb, s_ in zip(z, b, sz)]))
    return z[0], z[1], {"iterations": iters, "residual": residual}


def transductive(x, mask, classifier, *, k=5, gamma=5.0, alpha=0.3, tol=1e-6, solver="series",
                 scale_sim=False, mesh=None, block=1024):
    """Builds the graph and solves it: returns (ZlapState, ZlapGraph, info)."""
    knn_sim, knn_idx = blocked_knn(x, x, k - 1, exclude_self=True, block=block, key_mask=mask,
                                   mesh=mesh)
    g = _assemble(x, mask, classifier, knn_idx, knn_sim, k=k, gamma=float(gamma), scale_sim=scale_sim)
    terms = graph.series_terms(alpha, tol)
    z_img, z_cls, info = solve(g, alpha=float(alpha), terms=terms, solver=solver, tol=tol)
    state = ZlapState(x, mask, classifier, z_img, z_cls, g.sim_range, k, float(gamma), scale_sim)
    return state, g, dict(info, terms=terms)


def sparsify_top1(z: jax.Array) -> jax.Array:
    """Keeps the largest entry of each row of Z_all (the official sparse inductive variant)."""
    top = jnp.argmax(z, axis=1)
    return jnp.where(jnp.arange(z.shape[1])[None, :] == top[:, None], z, 0.0)


def inductive_scores(state: ZlapState, x_new, sparse=False, mesh=None, block=1024):
    """Scores (M, C) of new images x_new (M, D) (already in the pool's feature space), not added
    to the graph: Z_all^T y_x with y_x the k image neighbours (no self exclusion) and the class
    edges of x, weighted exactly as the pool's edges. Any M: the rows are padded to a multiple
    of the device count for the kNN and the padding dropped."""
    m = x_new.shape[0]
    devices = 1 if mesh is None else mesh.devices.size
    x_new = jnp.pad(jnp.asarray(x_new), ((0, (-m) % devices), (0, 0)))  # rows split over the mesh
    sim, idx = blocked_knn(x_new, state.pool, state.k, block=block, key_mask=state.mask, mesh=mesh)
    sim, idx, x_new = sim[:m], idx[:m], x_new[:m]
    keep = idx >= 0
    w_img = _edge_weights(sim, keep, state.sim_range, state.scale_sim, 1.0)
    cls_ids, cls_sim, cls_keep = class_edges(x_new, state.classifier, state.k,
                                             jnp.ones(x_new.shape[0], bool))
    w_cls = _edge_weights(cls_sim, cls_keep, state.sim_range, state.scale_sim, state.gamma)
    z_img, z_cls = state.z_image, state.z_class
    if sparse:
        z_img, z_cls = sparsify_top1(z_img), sparsify_top1(z_cls)
    nb = graph.from_knn(idx, w_img)
    return graph.gather_sum(nb, z_img) + graph.gather_sum(graph.Neighbours(cls_ids, w_cls), z_cls)


def make(config) -> Method:
    s = parse_method_args(Settings, config.method_args, "zlap")
    k, gamma, alpha = s.k, s.gamma, s.alpha

    def run(inputs: MethodInputs) -> MethodOutputs:
        n = int(to_host(inputs.mask).sum())
        graph_outputs.require_graph_pool(n, "zlap")
        centered = graph_outputs.centers_with(s.center, s.classifier)
        x, mean = graph_outputs.pool_features(inputs.x, inputs.mask, centered)
        classifier = graph_outputs.class_prototypes(s.classifier, x, inputs.mask, inputs.class_weights,
                                                    inputs.logit_scale, prior=inputs.prior_probs)
        state, g, info = transductive(x, inputs.mask, classifier, k=min(k, n), gamma=gamma,
                                      alpha=alpha, tol=s.tol, solver=s.solver, scale_sim=s.scale_sim,
                                      mesh=inputs.mesh, block=s.block)
        probs_dev = graph_outputs.row_normalize(state.z_image)
        probs = graph_outputs.host_rows(probs_dev, n)
        isolated = [int(c) for c in np.flatnonzero(to_host(g.class_degree) <= 0)]
        if isolated:
            log.warning("ZLaP: class nodes %s have no incoming image edge and cannot be predicted",
                        isolated)
        head = graph_outputs.soft_mean_head(x, probs_dev, inputs.mask, mean, inputs.logit_scale)
        iters = to_host(info["iterations"])
        metrics = {
            "classifier": s.classifier,
            "graph": {"k": min(k, n), "gamma": gamma, "alpha": alpha, "centered": centered,
                      "image_edges": int(to_host(jnp.sum(g.images.w > 0))),
                      "class_edges": int(to_host(jnp.sum(g.classes > 0)))},
            "solver": s.solver, "series_terms": info["terms"],
            "iterations": int(iters.max()), "residual_max_abs": float(info["residual"]),
            "truncation_bound": alpha ** (info["terms"] + 1) / (1 - alpha) if s.solver == "series" else None,
            "isolated_classes": isolated,
            "predictions_setting": TRANSDUCTIVE, "head": "soft class means (inductive)",
        }
        return MethodOutputs(probs, graph_outputs.predict(probs), head, TRANSDUCTIVE, metrics)

    return Method("zlap", DESCRIPTION, run, settings=s, uses_prior=True)
