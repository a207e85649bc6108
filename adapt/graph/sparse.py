"""Sparse neighbour operators and propagation solvers (jit-able; never an N x N matrix).

A directed sparse matrix A is stored as padded neighbour rows: `Neighbours(idx (R, m), w (R, m))`,
row r pointing at nodes idx[r, j] with weight w[r, j] (weight 0 on unused slots). Products:
  A u   = gather_sum(nb, u)          (R, C)      a gather per slot, no scatter
  A^T u = scatter_sum(nb, u, n)      (n, C)      one scatter-add per slot
  (A + A^T) u                        symmetric W from a kNN list, as ZLaP and TMV-HLP build it.
Solvers take a linear map on a pytree of (rows, C) blocks, so graphs with several node kinds (pool
images, class nodes, prototypes) need no concatenation.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

tmap = jax.tree.map


class Neighbours(NamedTuple):
    idx: jax.Array  # (R, m) int32 node ids, in [0, n)
    w: jax.Array  # (R, m) weights, 0 on unused slots


def from_knn(idx: jax.Array, w: jax.Array, row_mask: jax.Array | None = None) -> Neighbours:
    """Neighbour rows from a kNN result: (R, m) ids (negative = none) and weights (R, m).

    Missing neighbours and rows outside row_mask (R,) get weight 0 (their id is clamped to 0)."""
    ok = idx >= 0
    if row_mask is not None:
        ok = ok & row_mask[:, None]
    return Neighbours(jnp.where(ok, idx, 0).astype(jnp.int32), jnp.where(ok, w, 0.0))


def gather_sum(nb: Neighbours, u: jax.Array) -> jax.Array:
    """(A u): u (n, C) -> (R, C), sum_j w[r, j] u[idx[r, j]] (a scan over the m slots)."""

    def slot(out, j):
        return out + nb.w[:, j, None] * jnp.take(u, nb.idx[:, j], axis=0), None

    out = jnp.zeros((nb.idx.shape[0], u.shape[1]), u.dtype)
    return lax.scan(slot, out, jnp.arange(nb.idx.shape[1]))[0]


def scatter_sum(nb: Neighbours, u: jax.Array, n: int) -> jax.Array:
    """(A^T u): u (R, C) -> (n, C), row idx[r, j] receives w[r, j] u[r] (a scan over the m slots)."""

    def slot(out, j):
        return out.at[nb.idx[:, j]].add(nb.w[:, j, None] * u), None

    return lax.scan(slot, jnp.zeros((n, u.shape[1]), u.dtype), jnp.arange(nb.idx.shape[1]))[0]


def in_degree(nb: Neighbours, n: int) -> jax.Array:
    """Column sums of A: (n,)."""
    return jax.ops.segment_sum(nb.w.ravel(), nb.idx.ravel(), num_segments=n)


def inv_sqrt_degree(d: jax.Array) -> jax.Array:
    """D^{-1/2} with zero degrees read as 1 (isolated nodes stay isolated)."""
    return lax.rsqrt(jnp.where(d > 0, d, 1.0))


def masked_softmax(logits: jax.Array, mask: jax.Array | None = None, axis: int = -1) -> jax.Array:
    """Softmax over the entries where mask is True (broadcast against logits); others get 0."""
    if mask is None:
        return jax.nn.softmax(logits, axis=axis)
    z = jnp.where(mask, logits, -jnp.inf)
    z = z - jnp.max(jnp.where(mask, z, -jnp.finfo(logits.dtype).max), axis=axis, keepdims=True)
    e = jnp.where(mask, jnp.exp(z), 0.0)
    return e / jnp.maximum(e.sum(axis=axis, keepdims=True), jnp.finfo(logits.dtype).tiny)


def entropy_xlogx(y: jax.Array) -> jax.Array:
    """Elementwise y log y with 0 log 0 = 0 (the official codes clip y at 1e-20 inside the log)."""
    return y * jnp.log(jnp.maximum(y, 1e-20))


# ---------------------------------------------------------------- solvers for (I - alpha S) Z = B
def series_terms(alpha: float, tol: float) -> int:
    """Smallest T with alpha^(T+1) / (1 - alpha) <= tol: the Neumann series bound for rho(S) <= 1."""
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
    if alpha == 0.0:
        return 0
    return max(0, math.ceil(math.log(tol * (1.0 - alpha)) / math.log(alpha)) - 1)


def propagate_series(apply_s: Callable, b, alpha: float, terms: int):
    """Z_T = sum_{t=0..T} alpha^t S^t B in Horner form (T products of S); b is a pytree of (n_i, C)."""

    def step(_, z):
        return tmap(lambda bb, sz: bb + alpha * sz, b, apply_s(z))

    return lax.fori_loop(0, terms, step, b)


def _col_dot(a, b) -> jax.Array:
    """Per-column inner products of two pytrees of (n_i, C) blocks -> (C,)."""
    return sum(jnp.sum(x * y, axis=0) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def conjugate_gradient(apply_a: Callable, b, tol: float = 1e-6, max_iters: int = 50):
    """Solves A Z = B column by column for SPD A (each column its own step sizes and stopping).

    A column stops once ||r_c|| <= tol ||b_c|| (SciPy's rule) and is frozen from then on; the loop
    runs at most max_iters steps and leaves early when every column has stopped.
    Returns (Z, iterations per column (C,) int32, final relative residual per column (C,))."""
    b_norm = jnp.sqrt(_col_dot(b, b))
    target = tol * b_norm
    z0 = tmap(jnp.zeros_like, b)
    rr0 = _col_dot(b, b)
    state = (0, z0, b, b, rr0, jnp.sqrt(rr0) <= target, jnp.zeros_like(b_norm, jnp.int32))

    def cond(s):
        return (s[0] < max_iters) & ~jnp.all(s[5])

    def body(s):
        t, z, r, p, rr, done, iters = s
        ap = apply_a(p)
        step = jnp.where(done, 0.0, rr / jnp.where(done, 1.0, _col_dot(p, ap)))
        z = tmap(lambda zz, pp: zz + step * pp, z, p)
        r = tmap(lambda rr_, aa: rr_ - step * aa, r, ap)
        rr_new = _col_dot(r, r)
        beta = jnp.where(done, 0.0, rr_new / jnp.where(rr > 0, rr, 1.0))
        p = tmap(lambda rr_, pp: jnp.where(done, pp, rr_ + beta * pp), r, p)
        iters = iters + (~done).astype(jnp.int32)
        done = done | (jnp.sqrt(rr_new) <= target)
        return t + 1, z, r, p, rr_new, done, iters

    _, z, r, _, _, _, iters = lax.while_loop(cond, body, state)
    rel = jnp.sqrt(_col_dot(r, r)) / jnp.where(b_norm > 0, b_norm, 1.0)
    return z, iters, rel


def power_iteration(apply_s: Callable, v0, iters: int = 50) -> jax.Array:
    """Estimate of the spectral radius of a symmetric S from the Rayleigh quotient after `iters`
    normalised products; v0 a pytree of (n_i, 1) blocks."""

    def norm(v):
        return jnp.sqrt(_col_dot(v, v))[0]

    def step(_, v):
        sv = apply_s(v)
        return tmap(lambda a: a / jnp.maximum(norm(sv), 1e-30), sv)

    v = lax.fori_loop(0, iters, step, tmap(lambda a: a / norm(v0), v0))
    return jnp.abs(_col_dot(v, apply_s(v))[0])
