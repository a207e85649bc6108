"""Exact k-nearest neighbours by inner product, tiled, with a running top-k (memory O(N*k)).

`tile_stream` is the one loop every all-pairs pass uses: query rows are sharded over the mesh's
`pool` axis; each device walks its rows in blocks and, for each, folds a function over the
(block, block) tiles of inner products with all keys (gathered once onto every device, e.g.
200k x 512 fp32 = 400 MB). The (Nq, Nk) matrix is never formed.

`blocked_knn` folds a running top-k over the tiles. Ties go to the lower key index: `lax.top_k`
keeps the earlier position among equal values, and the running list (earlier keys) always sits
before the new tile in a merge.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from adapt.core import mesh as mesh_lib

NO_NEIGHBOUR = -1  # index returned where fewer than k valid keys exist (its value is -inf)


class TileSide(NamedTuple):
    """One side of a tile: global row ids (b,), validity (b,), and per-row extras (pytree of (b, ...))."""
    ids: jax.Array
    ok: jax.Array
    extra: object


def _pad_rows(x, multiple, value=0):
    pad = (-x.shape[0]) % multiple
    if pad == 0:
        return x
    return jnp.concatenate([x, jnp.full((pad, *x.shape[1:]), value, x.dtype)], axis=0)


def _blocks(x, size, value=0):
    x = _pad_rows(x, size, value)
    return x.reshape(-1, size, *x.shape[1:])


def _local_stream(queries, q_ok, q_extra, keys, k_ok, k_extra, first_row, *, tile_fn, init_fn,
                  static, q_block, k_block):
    n = queries.shape[0]
    q = _blocks(queries, q_block)
    qid = (first_row + jnp.arange(q.shape[0] * q_block, dtype=jnp.int32)).reshape(-1, q_block)
    qok = _blocks(q_ok, q_block, False)
    qex = jax.tree.map(lambda a: _blocks(a, q_block), q_extra)
    kx = _blocks(keys, k_block)
    kid = jnp.arange(kx.shape[0] * k_block, dtype=jnp.int32).reshape(-1, k_block)
    kok = _blocks(k_ok, k_block, False)
    kex = jax.tree.map(lambda a: _blocks(a, k_block), k_extra)

    def query_block(args):
        qx, qside = args[0], TileSide(*args[1:])

        def fold(carry, tile):
            kt, kside = tile[0], TileSide(*tile[1:])
            s = lax.dot_general(qx, kt, (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST)
            return tile_fn(static, carry, s, qside, kside), None

        out, _ = lax.scan(fold, init_fn(static, q_block, queries.dtype), (kx, kid, kok, kex))
        return out

    out = lax.map(query_block, (q, qid, qok, qex))
    return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n], out)


@functools.partial(jax.jit, static_argnames=("tile_fn", "init_fn", "static", "block", "mesh"))
def _stream_jit(queries, q_ok, q_extra, keys, k_ok, k_extra, *, tile_fn, init_fn, static, block, mesh):
    q_ok = jnp.ones(queries.shape[0], bool) if q_ok is None else q_ok
    k_ok = jnp.ones(keys.shape[0], bool) if k_ok is None else k_ok
    q_block = min(block, queries.shape[0] // mesh.devices.size)
    local = functools.partial(_local_stream, tile_fn=tile_fn, init_fn=init_fn, static=static,
                              q_block=q_block, k_block=min(block, keys.shape[0]))

    def per_device(q, qo, qe, kx, ko, ke):
        first = lax.axis_index(mesh_lib.POOL).astype(jnp.int32) * q.shape[0]
        return local(q, qo, qe, kx, ko, ke, first)

    row, rep = P(mesh_lib.POOL), P()
    spec_q = jax.tree.map(lambda _: row, q_extra)
    spec_k = jax.tree.map(lambda _: rep, k_extra)
    return jax.shard_map(per_device, mesh=mesh, in_specs=(row, row, spec_q, rep, rep, spec_k),
                         out_specs=row, check_vma=False)(queries, q_ok, q_extra, keys, k_ok, k_extra)


def tile_stream(queries, keys, tile_fn: Callable, init_fn: Callable, static=(), *, query_mask=None,
                key_mask=None, query_extra=(), key_extra=(), block=1024, mesh=None):
    """Folds tile_fn(static, carry, scores (qb, kb), q: TileSide, k: TileSide) -> carry over every
    key block for every query block; init_fn(static, qb, dtype) gives the carry, a pytree of (qb, ...)
    arrays. queries (Nq, D) with Nq divisible by the device count; keys (Nk, D).
    Returns the final carry of every query row, pytree of (Nq, ...)."""
    if mesh is None:
        mesh = mesh_lib.make_mesh(1)
    if queries.shape[0] % mesh.devices.size:
        raise ValueError(f"{queries.shape[0]} query rows do not split over {mesh.devices.size} devices;"
                         " pad them with adapt.core.mesh.shard_rows")
    return _stream_jit(queries, query_mask, query_extra, keys, key_mask, key_extra,
                       tile_fn=tile_fn, init_fn=init_fn, static=static, block=int(block), mesh=mesh)


def merge_top_k(vals, ids, s, kid, k):
    """Running top-k (b, k) merged with a tile (b, kb) of scores at key ids kid (kb,)."""
    cat_v = jnp.concatenate([vals, s], axis=1)
    cat_i = jnp.concatenate([ids, jnp.broadcast_to(kid, s.shape)], axis=1)
    top_v, pos = lax.top_k(cat_v, k)
    return top_v, jnp.take_along_axis(cat_i, pos, axis=1)


def _knn_init(static, rows, dtype):
    k = static[0]
    return jnp.full((rows, k), -jnp.inf, dtype), jnp.full((rows, k), NO_NEIGHBOUR, jnp.int32)


def _knn_tile(static, carry, s, q, kside):
    k, exclude_self = static
    bad = ~kside.ok[None, :]
    if exclude_self:
        bad = bad | (kside.ids[None, :] == q.ids[:, None])
    return merge_top_k(*carry, jnp.where(bad, -jnp.inf, s), kside.ids, k)


@functools.partial(jax.jit, static_argnames=("k", "exclude_self", "block"))
def _symmetric_knn(x, mask, *, k, exclude_self, block):
    """Self-kNN on one device with half the products: each tile X_i X_j^T (i <= j) updates the
    running top-k of row block i and, transposed, of row block j. Column blocks reach every row
    block in ascending order, so ties still go to the lower index."""
    xb, ok = _blocks(x, block), _blocks(mask, block, False)
    nb = xb.shape[0]
    ids = jnp.arange(nb * block, dtype=jnp.int32).reshape(nb, block)
    pi, pj = np.triu_indices(nb)  # row-major: i ascending, then j ascending

    def masked(s, rows, cols):
        bad = ~ok[cols][None, :]
        if exclude_self:
            bad = bad | (ids[cols][None, :] == ids[rows][:, None])
        return jnp.where(bad, -jnp.inf, s)

    def step(carry, ij):
        vals, idx = carry
        i, j = ij
        s = lax.dot_general(xb[i], xb[j], (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST)
        v, t = merge_top_k(vals[i], idx[i], masked(s, i, j), ids[j], k)
        vals, idx = vals.at[i].set(v), idx.at[i].set(t)
        v, t = merge_top_k(vals[j], idx[j], masked(s.T, j, i), ids[i], k)
        diagonal = i == j  # the diagonal tile was merged once already
        vals = vals.at[j].set(jnp.where(diagonal, vals[j], v))
        idx = idx.at[j].set(jnp.where(diagonal, idx[j], t))
        return (vals, idx), None

    init = (jnp.full((nb, block, k), -jnp.inf, x.dtype), jnp.full((nb, block, k), NO_NEIGHBOUR, jnp.int32))
    (vals, idx), _ = lax.scan(step, init, (jnp.asarray(pi, jnp.int32), jnp.asarray(pj, jnp.int32)))
    return vals.reshape(-1, k)[: x.shape[0]], idx.reshape(-1, k)[: x.shape[0]]


def blocked_knn(queries, keys, k: int, exclude_self: bool = False, block: int = 1024, *,
                key_mask=None, mesh=None, symmetric=None):
    """The k largest inner products of each query row among the key rows.

    queries (Nq, D): sharded along `pool` (Nq divisible by the device count), or any array.
    keys (Nk, D); key_mask (Nk,) bool, False rows are never returned (padding).
    exclude_self: query row i never returns key i (queries and keys are the same pool).
    block: rows per query tile and per key tile (memory per device: block^2 + block*k floats).
    symmetric: use the half-product self-kNN (one device, queries is keys); None = when possible.
    Returns (values (Nq, k), indices (Nq, k) int32), values descending, ties to the lower index;
    where fewer than k valid keys exist the tail is (-inf, NO_NEIGHBOUR).
    """
    if not 1 <= k <= keys.shape[0]:
        raise ValueError(f"k={k} must lie in [1, {keys.shape[0]}] (the number of keys)")
    one_device = mesh is None or mesh.devices.size == 1
    if symmetric is None:
        symmetric = queries is keys and one_device
    if symmetric:
        if not one_device:
            raise ValueError("the symmetric self-kNN runs on one device")
        mask = jnp.ones(keys.shape[0], bool) if key_mask is None else key_mask
        vals, ids = _symmetric_knn(keys, mask, k=int(k), exclude_self=bool(exclude_self),
                                   block=int(min(block, keys.shape[0])))
    else:
        vals, ids = tile_stream(queries, keys, _knn_tile, _knn_init, (int(k), bool(exclude_self)),
                                key_mask=key_mask, block=block, mesh=mesh)
    return vals, jnp.where(jnp.isneginf(vals), NO_NEIGHBOUR, ids)


def euclidean_knn(queries, keys, k: int, exclude_self: bool = False, block: int = 1024, *,
                  key_mask=None, mesh=None):
    """The k nearest keys in Euclidean distance, for rows that are not unit-norm.

    Uses q' = [q, 1], key' = [2 key, -|key|^2], so q'.key' = |q|^2 - |q - key|^2 ranks keys like
    -|q - key|. Returns (squared distances (Nq, k) ascending, indices (Nq, k) int32)."""
    q, kx = jnp.asarray(queries), jnp.asarray(keys)
    q_aug = jnp.concatenate([q, jnp.ones((q.shape[0], 1), q.dtype)], axis=1)
    k_aug = jnp.concatenate([2.0 * kx, -jnp.sum(kx * kx, axis=1, keepdims=True)], axis=1)
    score, idx = blocked_knn(q_aug, k_aug, k, exclude_self, block, key_mask=key_mask, mesh=mesh)
    return jnp.sum(q * q, axis=1, keepdims=True) - score, idx
