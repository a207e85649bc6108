"""Kernel kNN lists, cross-view hyperedges and the hypergraph operator of TMV-HLP (spec
label_propagation.md B, steps 1-3), all from tiled passes (adapt/knn.tile_stream): no N' x N' matrix.

Nodes are the rows of row-normalised view embeddings (N'p, r): pool rows, then the C prototypes at
rows [start, start + C), then padding (node_mask False). For unit rows |a - b|^2 = 2 - 2 a.b, so a
Gaussian kernel exp(-|a - b|^2 / m) ranks like the inner product.

A kept kNN matrix G (each row its top m after skipping rank 1, equal pool rows kept or dropped
together: `untied`; prototype rows top 9m) is stored as
`KeptLists`: instance-row lists (N'p, m) and prototype-row lists (C, 9m). Symmetrised, H = (G + G^T)/2.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from adapt.graph import sparse
from adapt.graph.knn import NO_NEIGHBOUR, merge_top_k, tile_stream


class KeptLists(NamedTuple):
    idx: jax.Array  # (N'p, m) int32, NO_NEIGHBOUR on rows that use the prototype lists or padding
    val: jax.Array  # (N'p, m) kept values (may be negative before clipping)
    proto_idx: jax.Array  # (C, 9m) int32
    proto_val: jax.Array  # (C, 9m)
    start: jax.Array  # () int32 node id of prototype 0


def kernel(s, median):
    return jnp.exp(-(2.0 - 2.0 * s) / median)


# --------------------------------------------------------------------- the three z-score passes
def _stats_init(static, rows, dtype):
    return jnp.zeros((rows,), dtype), jnp.zeros((rows,), dtype)


def _row_stats_tile(static, carry, s, q, k):
    g = jnp.where(k.ok[None, :], kernel(s, q.extra[:, None]), 0.0)
    return carry[0] + g.sum(1), carry[1] + (g * g).sum(1)


def _col_stats_tile(static, carry, s, q, k):
    median, mu, sd = k.extra
    z = jnp.where(k.ok[None, :], (kernel(s, median[None, :]) - mu[None, :]) / sd[None, :], 0.0)
    return carry[0] + z.sum(1), carry[1] + (z * z).sum(1)


def _top_init(static, rows, dtype):
    return jnp.full((rows, static[0]), -jnp.inf, dtype), jnp.full((rows, static[0]), NO_NEIGHBOUR, jnp.int32)


def _top_z_tile(static, carry, s, q, k):
    median, mu, sd = q.extra
    nu, tau = k.extra
    z = (kernel(s, median[:, None]) - mu[:, None]) / sd[:, None]
    z = (z - nu[None, :]) / tau[None, :]
    return merge_top_k(*carry, jnp.where(k.ok[None, :], z, -jnp.inf), k.ids, static[0])


def _mean_sd(total, total_sq, n):
    mean = total / n
    var = jnp.maximum(total_sq - n * mean * mean, 0.0) / (n - 1.0)
    return mean, jnp.sqrt(jnp.maximum(var, 1e-30))


@functools.partial(jax.jit, static_argnames=("m", "m_proto", "block", "mesh"))
def double_zscore_topk(xa, xb, mask, median, m, proto_rows, *, m_proto=None, block=1024, mesh=None):
    """Cross-view hyperedge lists: G(a, b) = exp(-|xa_a - xb_b|^2 / median), z-scored per row, then
    per column (ddof 1, over valid nodes); each row keeps its top m after rank 1, ties emptied
    (`untied`); prototype rows (proto_rows: (C,) node ids) keep m_proto (default 9m); entries beyond
    the valid nodes are NO_NEIGHBOUR. Returns (values (N'p, m), ids, proto values (C, 9m),
    proto ids)."""
    n = mask.sum().astype(xa.dtype)
    med = jnp.full((xa.shape[0],), median, xa.dtype)
    rs, rs2 = tile_stream(xa, xb, _row_stats_tile, _stats_init, query_extra=med, key_mask=mask,
                          block=block, mesh=mesh)
    mu, sd = _mean_sd(rs, rs2, n)
    cs, cs2 = tile_stream(xb, xa, _col_stats_tile, _stats_init, key_mask=mask,
                          key_extra=(med, mu, sd), block=block, mesh=mesh)
    nu, tau = _mean_sd(cs, cs2, n)
    fetch = lambda w: (min(w + 2, xb.shape[0]),)  # noqa: E731  (ranks 1 to w + 2, see `untied`)
    val, ids = tile_stream(xa, xb, _top_z_tile, _top_init, fetch(m), key_mask=mask,
                           query_extra=(med, mu, sd), key_extra=(nu, tau), block=block, mesh=mesh)
    pq = _proto_queries(proto_rows, mesh)
    m_proto = 9 * m if m_proto is None else m_proto
    pval, pids = tile_stream(xa[pq], xb, _top_z_tile, _top_init, fetch(m_proto), key_mask=mask,
                             query_extra=(med[pq], mu[pq], sd[pq]), key_extra=(nu, tau),
                             block=block, mesh=mesh)
    c = proto_rows.shape[0]
    return (*untied(val, ids, m, proto_rows[0]), *untied(pval[:c], pids[:c], m_proto, proto_rows[0]))


def untied(val, ids, width, start):
    """A row's list, best first (R, F), F <= width + 2 -> its ranks 2 to width + 1 (R, width), the
    official list after skipping rank 1, with the pool rows (ids < start, the first prototype id)
    whose value equals rank 1's or the first left-out one's (rank width + 2) emptied (NO_NEIGHBOUR,
    -inf). Equal pool rows (duplicate images) are then kept or dropped together, whatever their ids,
    so the lists do not depend on the pool order; prototypes keep the official rule (lower id
    first: their ids are the class order). Without ties this is the official list."""
    out = val[:, width + 1:width + 2] if val.shape[1] > width + 1 else jnp.full_like(val[:, :1], -jnp.inf)
    v, i = val[:, 1:width + 1], ids[:, 1:width + 1]
    dropped = ((v == val[:, :1]) | (v == out)) & (i < start) | jnp.isneginf(v)
    return jnp.where(dropped, -jnp.inf, v), jnp.where(dropped, NO_NEIGHBOUR, i)


def _proto_queries(proto_rows, mesh):
    """Prototype node ids padded (by repetition) to a multiple of the device count."""
    d = 1 if mesh is None else mesh.devices.size
    pad = (-proto_rows.shape[0]) % d
    return jnp.concatenate([proto_rows, jnp.repeat(proto_rows[:1], pad)]) if pad else proto_rows


@functools.partial(jax.jit, static_argnames=("start", "num_protos"))
def kept_lists(val, ids, pval, pids, mask, start, num_protos) -> KeptLists:
    """Instance rows keep (val, ids); rows of prototypes and padding are emptied (their kept row is
    (pval, pids)); entries pointing nowhere stay NO_NEIGHBOUR."""
    rows = jnp.arange(ids.shape[0])
    uses_list = mask & ((rows < start) | (rows >= start + num_protos))
    ok = uses_list[:, None] & (ids >= 0)
    pok = pids >= 0
    return KeptLists(jnp.where(ok, ids, NO_NEIGHBOUR), jnp.where(ok, val, 0.0),
                     jnp.where(pok, pids, NO_NEIGHBOUR), jnp.where(pok, pval, 0.0),
                     jnp.asarray(start, jnp.int32))


# ------------------------------------------------------------------------------ operators on H
class Edges(NamedTuple):
    """Flat directed edges src -> dst with weight w (E,); one gather and one scatter per product."""
    src: jax.Array
    dst: jax.Array
    w: jax.Array


@jax.jit
def to_edges(lists: KeptLists) -> Edges:
    """The kept lists as flat edges, memberships clipped at 0 (W >= 0 for the series solver)."""
    n, m = lists.idx.shape
    c, pm = lists.proto_idx.shape
    src = jnp.concatenate([jnp.repeat(jnp.arange(n, dtype=jnp.int32), m),
                           lists.start + jnp.repeat(jnp.arange(c, dtype=jnp.int32), pm)])
    idx = jnp.concatenate([lists.idx.ravel(), lists.proto_idx.ravel()])
    val = jnp.concatenate([lists.val.ravel(), lists.proto_val.ravel()])
    return Edges(src, jnp.maximum(idx, 0), jnp.where(idx >= 0, jnp.maximum(val, 0.0), 0.0))


def apply_sym(edges: Edges, u):
    """(G + G^T) u / 2 for u (n, C')."""
    n = u.shape[0]
    forward = jax.ops.segment_sum(edges.w[:, None] * u[edges.dst], edges.src, num_segments=n)
    backward = jax.ops.segment_sum(edges.w[:, None] * u[edges.src], edges.dst, num_segments=n)
    return 0.5 * (forward + backward)


def _reverse(lists: KeptLists, rows, idx):
    """For edges rows[r] -> idx[r, j]: (value of the reverse edge or 0, reverse edge listed)."""
    c = lists.proto_idx.shape[0]
    target = jnp.maximum(idx, 0)
    hit = lists.idx[target] == rows[:, None, None]  # (R, m, m_all)
    rev = jnp.sum(jnp.where(hit, lists.val[target], 0.0), axis=-1)
    listed = jnp.any(hit, axis=-1)
    p = jnp.clip(target - lists.start, 0, c - 1)
    phit = lists.proto_idx[p] == rows[:, None, None]  # (R, m, 9m)
    is_proto = (target >= lists.start) & (target < lists.start + c)
    rev = jnp.where(is_proto, jnp.sum(jnp.where(phit, lists.proto_val[p], 0.0), axis=-1), rev)
    listed = jnp.where(is_proto, jnp.any(phit, axis=-1), listed)
    return rev, listed & (idx >= 0)


@functools.partial(jax.jit, static_argnames=("official_delta",))
def hyperedge_stats(lists: KeptLists, official_delta=False):
    """delta (N'p,) hyperedge weights of the rows of H = (G+ + G+^T)/2 (G+ = G clipped at 0) and
    d_v (N'p,) = sum_e delta_e h(e, v)^2. official_delta: delta's numerator sums the unclipped row."""
    n, c = lists.idx.shape[0], lists.proto_idx.shape[0]
    prow = lists.start + jnp.arange(c, dtype=jnp.int32)
    parts = [(jnp.arange(n, dtype=jnp.int32), lists.idx, lists.val), (prow, lists.proto_idx, lists.proto_val)]
    count, row_sum, edges = jnp.zeros(n), jnp.zeros(n), []
    for rows, idx, val in parts:
        listed = idx >= 0
        rev, rev_listed = _reverse(lists, rows, idx)
        g, g_rev = jnp.maximum(val, 0.0), jnp.maximum(rev, 0.0)
        h = jnp.where(listed, 0.5 * (g + g_rev), 0.0)
        target = jnp.maximum(idx, 0)
        count = count.at[rows].add(jnp.sum(h > 0, axis=1))
        lonely = listed & ~rev_listed & (g > 0)  # pair (target, row) exists only through this edge
        count = count.at[target.ravel()].add(lonely.ravel().astype(count.dtype))
        raw = jnp.where(listed, val if official_delta else g, 0.0)
        row_sum = row_sum.at[rows].add(0.5 * raw.sum(1)).at[target.ravel()].add(0.5 * raw.ravel())
        edges.append((rows, target, h, jnp.where(listed & ~rev_listed, 0.5 * g, 0.0)))
    delta = jnp.where(count > 0, row_sum / jnp.where(count > 0, count, 1.0), 0.0)
    d_v = jnp.zeros(n)
    for rows, target, h, lonely_h in edges:
        d_v = d_v.at[target.ravel()].add((delta[rows][:, None] * h * h).ravel())
        d_v = d_v.at[rows].add(jnp.sum(delta[target] * lonely_h * lonely_h, axis=1))
    return delta, d_v


def stack(items):
    """Stacks equal-shaped pytrees (Edges of several views or pairs) along a new leading axis."""
    return jax.tree.map(lambda *a: jnp.stack(a), *items)


def apply_hypergraph(edges: Edges, delta, u, inv_sqrt_dv):
    """S_hyp u = D_v^-1/2 sum_p H_p diag(delta_p) H_p D_v^-1/2 u for stacked edges (P, E) and
    hyperedge weights delta (P, N'p)."""
    v = inv_sqrt_dv[:, None] * u
    per_pair = jax.vmap(lambda e, d: apply_sym(e, d[:, None] * apply_sym(e, v)))(edges, delta)
    return inv_sqrt_dv[:, None] * per_pair.sum(0)


def _normalized_operator(view_lists, view_coef, pair_lists, delta, d_v, hyper_share, n):
    """u -> S u with W = (1 - share) sum_i coef_i (K_i + K_i^T)/2 + share S_hyp and
    S = D^-1/2 W D^-1/2 (D = W 1, self-loops of S_hyp included)."""
    view_edges = stack([to_edges(v) for v in view_lists])
    pair_edges = stack([to_edges(p) for p in pair_lists])
    delta = jnp.stack(delta)
    inv_dv = sparse.inv_sqrt_degree(d_v)

    def apply_w(u):
        cw = jax.vmap(lambda e, c: c * apply_sym(e, u))(view_edges, view_coef).sum(0)
        return (1.0 - hyper_share) * cw + hyper_share * apply_hypergraph(pair_edges, delta, u, inv_dv)

    inv_d = sparse.inv_sqrt_degree(apply_w(jnp.ones((n, 1)))[:, 0])
    return lambda u: inv_d[:, None] * apply_w(inv_d[:, None] * u)


@functools.partial(jax.jit, static_argnames=("terms",))
def propagate(view_lists, view_coef, pair_lists, delta, d_v, b, alpha, hyper_share, *, terms):
    """Z = sum_t alpha^t S^t B (lists of KeptLists per view and per view pair, delta a list of
    (N'p,), d_v (N'p,) summed over the pairs). Returns (Z_T, max |Z_T - B - alpha S Z_T|), the
    residual read off one more series step."""
    apply_s = _normalized_operator(view_lists, view_coef, pair_lists, delta, d_v, hyper_share, b.shape[0])

    def step(_, carry):
        return carry[1], b + alpha * apply_s(carry[1])

    z_t, z_next = jax.lax.fori_loop(0, terms + 1, step, (b, b))
    return z_t, jnp.max(jnp.abs(z_next - z_t))


@jax.jit
def spectral_radius(view_lists, view_coef, pair_lists, delta, d_v, hyper_share, v0):
    """Power-iteration estimate of rho(S), for W that may hold negative entries (official_delta)."""
    apply_s = _normalized_operator(view_lists, view_coef, pair_lists, delta, d_v, hyper_share, v0.shape[0])
    return sparse.power_iteration(apply_s, v0, iters=100)
