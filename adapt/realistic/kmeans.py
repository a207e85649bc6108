"""K-means on the mesh: k-means++ seeding, Lloyd iterations, several restarts, best inertia kept.

Rows x (Np, D) are sharded along the mesh's `pool` axis with the padding mask of
`adapt.core.mesh.shard_rows`; padding rows never count. Every step is one jit-compiled program: distances
(Np, K), the one-hot sums (K, D) all-reduced over the pool axis, and a `lax.while_loop` until the
squared centre shift is at most tol x the mean per-feature variance (scikit-learn's rule) or
max_iter.

Randomness does not depend on the device count: k-means++ draws each centre by the Gumbel-max trick
(argmax of log d^2 + g_i, exactly proportional to d^2), with g_i a function of the restart key, the
draw number and the global row index i only; restart r uses fold_in(key, r). Restarts run one after
another (memory of one run); the best is the first whose inertia is within 1e-6 (relative) of the
lowest, so float noise from a different reduction order cannot pick another restart. Cluster ids are
then renumbered by first appearance in row order, so equal partitions get equal labels.

An empty cluster keeps its previous centre (scikit-learn moves it to a far point instead).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from adapt.core import mesh as mesh_lib
from adapt.core.distributed import to_host

TIE_RTOL = 1e-6


class KMeansResult(NamedTuple):
    centers: jax.Array  # (K, D)
    labels: jax.Array  # (Np,) int32 cluster of each row (0 on padding rows)
    inertia: float  # sum over real rows of the squared distance to their centre
    iterations: int  # Lloyd iterations of the kept restart
    restart: int  # index of the kept restart
    inertias: list  # inertia of every restart


def sq_distances(x: jax.Array, centers: jax.Array) -> jax.Array:
    """Squared Euclidean distances (N, K) of rows x (N, D) to centers (K, D), clipped at 0."""
    xx = jnp.sum(x * x, axis=1, keepdims=True)
    cc = jnp.sum(centers * centers, axis=1)
    return jnp.maximum(xx - 2.0 * x @ centers.T + cc[None, :], 0.0)


def row_gumbel(key: jax.Array, n: int, mesh=None) -> jax.Array:
    """(n,) Gumbel noise where entry i depends only on (key, i): the same for any padding or
    device count."""
    rows = jnp.arange(n, dtype=jnp.uint32)
    if mesh is not None:
        rows = lax.with_sharding_constraint(rows, NamedSharding(mesh, P(mesh_lib.POOL)))
    return jax.vmap(lambda i: jax.random.gumbel(jax.random.fold_in(key, i)))(rows)


@functools.partial(jax.jit, static_argnames=("k", "mesh"))
def kmeans_plus_plus(x, mask, key, *, k: int, mesh=None) -> jax.Array:
    """k-means++ seeding: the first centre uniform over real rows, each next one drawn with
    probability proportional to d^2 (squared distance to the nearest chosen centre). -> (k, D)."""
    n = x.shape[0]
    uniform = jnp.where(mask, 0.0, -jnp.inf)
    first = jnp.argmax(uniform + row_gumbel(jax.random.fold_in(key, 0), n, mesh))
    c0 = x[first]
    centers = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(c0)
    d2 = jnp.sum(jnp.square(x - c0), axis=1)

    def draw(j, carry):
        centers, d2 = carry
        logw = jnp.where(mask & (d2 > 0), jnp.log(jnp.where(d2 > 0, d2, 1.0)), -jnp.inf)
        logw = jnp.where(jnp.any(jnp.isfinite(logw)), logw, uniform)  # fewer distinct rows than k
        c = x[jnp.argmax(logw + row_gumbel(jax.random.fold_in(key, j), n, mesh))]
        return centers.at[j].set(c), jnp.minimum(d2, jnp.sum(jnp.square(x - c), axis=1))

    centers, _ = lax.fori_loop(1, k, draw, (centers, d2))
    return centers


def _assign(x, centers):
    d2 = sq_distances(x, centers)
    labels = jnp.argmin(d2, axis=1).astype(jnp.int32)
    return labels, jnp.take_along_axis(d2, labels[:, None], axis=1)[:, 0]


def _renumber(labels, centers, mask):
    """Cluster ids by first appearance in row order (empty clusters last, in id order)."""
    k, n = centers.shape[0], labels.shape[0]
    rows = jnp.where(mask, jnp.arange(n), n)
    first = jax.ops.segment_min(rows, labels, num_segments=k)
    order = jnp.argsort(first * k + jnp.arange(k))  # stable on ties (empty clusters)
    new_id = jnp.zeros(k, jnp.int32).at[order].set(jnp.arange(k, dtype=jnp.int32))
    return jnp.where(mask, new_id[labels], 0), centers[order]


@functools.partial(jax.jit, static_argnames=("max_iter",))
def lloyd(x, mask, centers, tol, *, max_iter: int):
    """Lloyd iterations from `centers` (K, D) -> (centers, labels (Np,), inertia, iterations).

    Stops when sum ||c_new - c||^2 <= tol * mean per-feature variance of the real rows."""
    w = mask.astype(x.dtype)
    n_real = jnp.maximum(w.sum(), 1.0)
    mean = (w @ x) / n_real
    tol_abs = tol * jnp.mean((w @ jnp.square(x)) / n_real - jnp.square(mean))
    k = centers.shape[0]

    def step(state):
        it, c, _ = state
        labels, _ = _assign(x, c)
        onehot = jax.nn.one_hot(labels, k, dtype=x.dtype) * w[:, None]
        counts = onehot.sum(0)
        new = jnp.where(counts[:, None] > 0, (onehot.T @ x) / jnp.maximum(counts, 1.0)[:, None], c)
        return it + 1, new, jnp.sum(jnp.square(new - c))

    def go_on(state):
        it, _, shift = state
        return (it < max_iter) & (shift > tol_abs)

    it, c, _ = lax.while_loop(go_on, step, (jnp.int32(0), centers, jnp.asarray(jnp.inf, x.dtype)))
    labels, d2 = _assign(x, c)
    labels, c = _renumber(labels, c, mask)
    return c, labels, jnp.sum(d2 * w), it


def kmeans(x, mask, k: int, key, *, n_init: int = 17, max_iter: int = 1000, tol: float = 1e-4,
           mesh=None) -> KMeansResult:
    """K-means of the real rows of x (Np, D) into k clusters; n_init restarts, best inertia kept."""
    n_real = int(to_host(mask).sum())
    if not 1 <= k <= n_real:
        raise ValueError(f"k-means needs 1 <= k <= the number of rows ({n_real}), got k={k}")
    if n_init < 1:
        raise ValueError(f"n_init must be >= 1, got {n_init}")
    runs = []
    for r in range(n_init):
        seeds = kmeans_plus_plus(x, mask, jax.random.fold_in(key, r), k=int(k), mesh=mesh)
        runs.append(lloyd(x, mask, seeds, float(tol), max_iter=int(max_iter)))
    inertias = [float(to_host(run[2])) for run in runs]
    best = min(inertias)
    r = next(i for i, v in enumerate(inertias) if v <= best * (1 + TIE_RTOL) + 1e-30)
    c, labels, inertia, it = runs[r]
    return KMeansResult(c, labels, inertias[r], int(to_host(it)), r, inertias)
