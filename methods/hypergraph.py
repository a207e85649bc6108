"""Transductive multi-view hypergraph label propagation, TMV-HLP style (spec label_propagation.md B).

Paper: Fu, Hospedales, Xiang, Gong, "Transductive Multi-view Zero-Shot Learning", TPAMI 2015
(official Matlab code: yanweifu/embedding_zero-shot-learning on GitHub).

Views of the pool, from what the model offers: the (centred) image embedding with the class text
embeddings as prototypes (or, `prototypes="rectified"`, their soft pool means,
`graph_outputs.rectified_prototypes`); every extra image view of the model (the offline default's
"imagenet_probs", with its class map as prototypes when the model has one, else the average of the
other views' projected prototypes); and, on request or when the model has no extra view, a
semantic "text" view (each image's cosines to the class embeddings; prototype: the class
embedding's own cosines). Prototypes are refined once on the pool (top-T self-training, T =
`refine_count`), the views are embedded jointly by multi-view CCA (lambda^4 weighting), and the C
prototypes join the pool as nodes. The graph fuses per-view Gaussian kNN graphs (weighted by view
agreement) with the hypergraph of cross-view kNN hyperedges (double z-scored), and propagation
F = (1 - alpha)(I - alpha S)^-1 Y ranks the classes. `propagations` = P applies it P times, as the
official loop does (20 times), or at most P times under a label-free `stop` rule
(adapt/graph/stopping.py); we keep that iterate, never the best one by accuracy (an oracle).

Ties (issue 19), deviations from the official code: exactly tied nodes (duplicate images; on small
pools a refined prototype equal to its one pool row, or two prototypes refined on the same rows)
must tie bitwise, so the CCA moments are float64 sums on the host and a prototype's mean is an
order-free sum taken after the projection (adapt/graph/cca.py); and a kNN list skips rank 1 as the
official one does but also drops the pool rows tied with rank 1 or with the first left-out entry
(`graph_hyper.untied`), where the official stable sort would pick by pool index (tied prototypes
keep the official rule: their ids are the class order). Results are then the same on any device
count and in any pool order; without ties the lists are the official ones.
Pools under MIN_POOL_ROWS rows are padded to it (masked rows)."""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from adapt.core import mesh as mesh_lib
from adapt.core.distributed import to_host
from adapt.core.method import TRANSDUCTIVE, Method, MethodInputs, MethodOutputs
from adapt.core.settings import check_at_least, check_choice, parse_method_args
from adapt.graph import cca as graph_cca
from adapt.graph import hyper as graph_hyper
from adapt.graph import outputs as graph_outputs
from adapt.graph import sparse as graph
from adapt.graph import stopping
from adapt.graph.knn import blocked_knn

DESCRIPTION = "TMV-HLP-style multi-view hypergraph label propagation (P propagations or a stopping rule)"
HYPER_SHARE = 0.75  # W = 0.25 cW + 0.75 S_hyp
MIN_POOL_ROWS = 256  # smaller pools are padded (masked rows) to this: one compilation per mesh for all


@dataclasses.dataclass(frozen=True)
class Settings:
    """method_args of hypergraph; values and their meaning: configs/hypergraph.py."""

    views: tuple[str, ...]
    prototypes: str
    view_priors: tuple[float, ...]
    k: int
    alpha: float
    propagations: int
    stop: str
    tol: float
    refine_top: int
    cca_floor: float
    hyper_share: float
    official_delta: bool
    center: bool
    block: int

    def __post_init__(self):
        check_choice("prototypes", self.prototypes, graph_outputs.PROTOTYPE_SOURCES)
        check_at_least("propagations", self.propagations, 1)
        check_choice("stop", self.stop, stopping.RULES)


def refine_count(refine_top: int, n: int, c: int) -> int:
    """T of the prototype refinement: min(refine_top, max(1, N // C)). The official T = 500 comes
    from AwA (N = 6,180, C = 10: 618 images per class) and is unchanged there and on Fashion-MNIST
    (N // C = 1,000); on pools with fewer than T images per class a plain min(T, N) would make
    every prototype the pool mean (a deviation, declared: never more rows than one class's share)."""
    return min(refine_top, max(1, n // c))


def embed_nodes(views, protos, mask, mesh, *, refine_top=500, cca_floor=1e-4):
    """views: list of (Np, d_i) pool views; protos: list of (C, d_i) or None. Returns the node
    embeddings (V, N'p, r) row-normalised (pool rows, then C prototypes, then padding), node_mask,
    the prototype start row and CCA info."""
    np_rows, c = views[0].shape[0], next(p for p in protos if p is not None).shape[0]
    count = jnp.asarray(refine_count(int(refine_top), int(to_host(mask).sum()), c), jnp.int32)
    top = min(int(refine_top), np_rows)  # static: the same compilation for every pool of this shape
    rows = [None if p is None else graph_cca.refine_rows(v, mask, jnp.asarray(p), top=top)
            for v, p in zip(views, protos)]
    means, projs, lam, *_ = graph_cca.multiview_cca(views, mask, cca_floor)
    pad = mesh_lib.padded_size(np_rows + c, mesh) - np_rows - c
    nodes = graph_cca.project_nodes(tuple(views), tuple(rows), count,
                                    tuple(jnp.asarray(m, jnp.float32) for m in means),
                                    tuple(jnp.asarray(w) for w in projs), mask, pad=pad, mesh=mesh)
    node_mask = np.concatenate([to_host(mask), np.ones(c, bool), np.zeros(pad, bool)])
    nodes = jax.device_put(nodes, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, mesh_lib.POOL)))
    node_mask = jax.device_put(node_mask, mesh_lib.pool_sharding(mesh))
    return nodes, node_mask, np_rows, {"cca_dims": int(lam.size), "cca_top_eigenvalue": float(lam[0])}


def list_widths(k: int, nodes: int) -> tuple[int, int]:
    """(instance, prototype) kNN list widths: k and 9k, capped at nodes - 1 (nodes: the node rows,
    padding included, a shape) so that pools smaller than 9k + 1 nodes keep every node (the official
    code assumes N' > 9k); the entries beyond the valid nodes are NO_NEIGHBOUR (empty)."""
    return min(k, nodes - 1), min(9 * k, nodes - 1)


@functools.partial(jax.jit, static_argnames=("k", "k_proto", "start", "c", "mesh", "block"))
def view_kernel_lists(x, node_mask, median, k, k_proto, start, c, mesh, block):
    """Per-view Gaussian kNN lists: each row's top k after skipping rank 1 (itself), prototypes
    k_proto (9k, `list_widths`); equal pool rows kept or dropped together (graph_hyper.untied)."""
    fetch = lambda w: min(w + 2, x.shape[0])  # noqa: E731
    s, ids = graph_hyper.untied(*blocked_knn(x, x, fetch(k), block=block, key_mask=node_mask, mesh=mesh), k, start)
    pq = graph_hyper._proto_queries(start + jnp.arange(c, dtype=jnp.int32), mesh)
    pv, pi = blocked_knn(x[pq], x, fetch(k_proto), block=block, key_mask=node_mask, mesh=mesh)
    ps, pids = graph_hyper.untied(pv[:c], pi[:c], k_proto, start)
    val, pval = graph_hyper.kernel(s, median), graph_hyper.kernel(ps, median)
    return graph_hyper.kept_lists(val, ids, pval, pids, node_mask, start, c)


def tmv_hlp(views, protos, mask, mesh, *, k=10, alpha=0.35, tol=1e-6, refine_top=500,
            cca_floor=1e-4, priors=None, hyper_share=HYPER_SHARE, official_delta=False, block=1024,
            median_exact_limit=2000, median_samples=200_000, seed=0, propagations=1, stop="fixed",
            keep_steps=False):
    """Scores of the pool rows after P steps of (1 - alpha)(I - alpha S)^-1: P = `propagations`, or
    the step a label-free `stop` rule keeps (adapt.graph.stopping; then at most `propagations`).
    Returns (Z (Np, C) >= 0 from one-hot prototype sources, F (Np, C) = the official rows of
    ((1 - alpha)(I - alpha S)^-1)^P [0; 2I - 1], info with the kept step's residual, the per-step
    mean entropy and changed predictions, and with keep_steps the per-step predictions (P', N))."""
    if int(propagations) < 1:
        raise ValueError(f"propagations must be >= 1, got {propagations}")
    nodes, node_mask, start, info = embed_nodes(views, protos, mask, mesh, refine_top=refine_top,
                                                cca_floor=cca_floor)
    n_views, c = nodes.shape[0], next(p for p in protos if p is not None).shape[0]
    med = functools.partial(graph_cca.pair_median, mask=node_mask, exact_limit=median_exact_limit,
                            samples=median_samples, seed=seed)
    k, k_proto = list_widths(int(k), int(nodes.shape[1]))
    view_lists = [view_kernel_lists(nodes[i], node_mask, med(nodes[i], nodes[i], same_view=True),
                                    k, k_proto, start, c, mesh, block) for i in range(n_views)]
    pg = graph_cca.view_agreement_weights(nodes, node_mask)
    prior = jnp.ones(n_views) if priors is None else jnp.asarray(priors, jnp.float32)
    proto_rows = start + jnp.arange(c, dtype=jnp.int32)
    pairs = []
    for i in range(n_views):
        for j in range(n_views):
            if i == j:
                continue
            m = med(nodes[i], nodes[j], same_view=False)
            lists = graph_hyper.kept_lists(*graph_hyper.double_zscore_topk(
                nodes[i], nodes[j], node_mask, m, k, proto_rows, m_proto=k_proto, block=block, mesh=mesh),
                node_mask, start, c)
            pairs.append((lists, *graph_hyper.hyperedge_stats(lists, official_delta=official_delta)))
    b = jnp.zeros((nodes.shape[1], c)).at[proto_rows, jnp.arange(c)].set(1.0)
    terms = graph.series_terms(alpha, tol)
    operator = (view_lists, prior * pg, [p[0] for p in pairs], [p[1] for p in pairs], sum(p[2] for p in pairs))
    if official_delta:  # negative hyperedge weights can make W indefinite: check the series converges
        v0 = jax.random.uniform(jax.random.key(seed), (b.shape[0], 1)) * node_mask[:, None]
        rho = float(graph_hyper.spectral_radius(*operator, hyper_share, v0))
        info["spectral_radius"] = rho
        if alpha * rho >= 1.0:
            raise ValueError(f"alpha * rho(S) = {alpha * rho:.3f} >= 1: the series diverges "
                             "(official_delta gives negative hyperedge weights); use official_delta=False")
    def step(z):  # F <- (1 - alpha)(I - alpha S)^-1 F, linear in the sources
        z, residual = graph_hyper.propagate(*operator, z, alpha, hyper_share, terms=terms)
        return (1.0 - alpha) * z, residual
    z, residual, record = stopping.repeat(step, b, int(to_host(mask).sum()), stop, int(propagations), keep_steps)
    z_pool = z[:start]
    f = 2.0 * z_pool - z_pool.sum(1, keepdims=True)
    exact = int(to_host(node_mask).sum()) <= median_exact_limit
    info.update(propagations_kept=record.pop("kept"), propagations_computed=record.pop("computed"),
                step_entropy=record.pop("entropy"), step_changed=record.pop("changed"), **record,
                series_terms=terms, residual_max_abs=float(residual),
                kernel_medians="exact" if exact else f"sampled: {median_samples} pairs, seed {seed}",
                view_weights=[float(a) for a in to_host(pg)], hyperedge_pairs=len(pairs))
    return z_pool, f, info


def _views(inputs, x, selected, prototypes="text"):
    """The named views and their prototypes (see the module docstring). "auto": the embedding and
    every extra image view of the model (the published two-view setting on the offline default),
    plus the text view when that leaves fewer than two; "all": those and the text view."""
    texts, t = inputs.class_texts, inputs.class_weights
    extra = [name for name in inputs.views if name != "embedding"]
    if "auto" in selected:
        wanted = ["embedding", *extra] + ([] if extra else ["text"])
    elif "all" in selected:
        wanted = ["embedding", *extra, "text"]
    else:
        wanted = list(selected)
    views, protos = [], []
    for name in wanted:
        if name == "embedding":
            views.append(x)
            protos.append(graph_outputs.class_prototypes(prototypes, x, inputs.mask, t, inputs.logit_scale))
        elif name == "text":
            views.append(x @ t.T), protos.append(t @ t.T)
        elif name in inputs.views:
            own = texts.view_weights if getattr(texts, "view", None) == name else None
            views.append(inputs.views[name]), protos.append(None if own is None else jnp.asarray(own))
        else:
            raise ValueError(f"hypergraph: unknown view {name!r}; this model offers "
                             f"{['embedding', *extra, 'text']}")
    if len(views) < 2:
        raise ValueError("hypergraph needs at least two views")
    return wanted, views, protos


def pool_scores(s: Settings, inputs: MethodInputs, keep_steps=False):
    """The method's computation up to the scores: (view names, centred?, x (Np, D), pool mean,
    Z, F, info) (see `tmv_hlp`; keep_steps adds the per-step predictions, for experiments)."""
    graph_outputs.require_graph_pool(int(to_host(inputs.mask).sum()), "hypergraph")
    centered = graph_outputs.centers_with(s.center, s.prototypes)
    x, mean = graph_outputs.pool_features(inputs.x, inputs.mask, centered)
    names, views, protos = _views(inputs, x, list(s.views), s.prototypes)
    priors = list(s.view_priors) or None
    if priors is not None and len(priors) != len(views):
        raise ValueError(f"method_args.view_priors has {len(priors)} entries for views {names}")
    z, f, info = tmv_hlp(views, protos, inputs.mask, inputs.mesh, k=s.k, alpha=s.alpha, tol=s.tol,
                         refine_top=s.refine_top, cca_floor=s.cca_floor, priors=priors,
                         hyper_share=s.hyper_share, official_delta=s.official_delta, block=s.block,
                         seed=inputs.seed, propagations=s.propagations, stop=s.stop, keep_steps=keep_steps)
    return names, centered, x, mean, z, f, info


def make(config) -> Method:
    s = parse_method_args(Settings, config.method_args, "hypergraph")

    def run(inputs: MethodInputs) -> MethodOutputs:
        inputs = graph_outputs.padded_inputs(inputs, MIN_POOL_ROWS)
        n = int(to_host(inputs.mask).sum())
        names, centered, x, mean, z, f, info = pool_scores(s, inputs)
        probs_dev = graph_outputs.row_normalize(z)
        probs = graph_outputs.host_rows(probs_dev, n)
        head = graph_outputs.soft_mean_head(x, probs_dev, inputs.mask, mean, inputs.logit_scale)
        pred = graph_outputs.predict(graph_outputs.host_rows(f, n))
        metrics = {"views": names, "prototypes": s.prototypes, "k": s.k, "alpha": s.alpha, "iterations": 1,
                   "propagations": s.propagations, "stop": s.stop, "centered": centered, **info,
                   "predictions_setting": TRANSDUCTIVE, "head": "soft class means (inductive)"}
        return MethodOutputs(probs, pred, head, TRANSDUCTIVE, metrics)

    return Method("hypergraph", DESCRIPTION, run, settings=s)
