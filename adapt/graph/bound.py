"""Laplacian-regularised assignment: the LaplacianShot bound updates and SLK's prototype steps
(spec laplacian.md A and B). Pure jit-able functions on padded pools with a row mask.

Bound update (parallel, closed form), W a directed kNN `Neighbours`:
    Y^0 = softmax(-A);   Y^{t+1} = softmax(-A + lam W Y^t)
stopping when t > 1 and |E_t - E_{t-1}| <= tol |E_{t-1}| with the official energy
    E_code(Y) = sum y log y + sum a y - lam sum (W Y) o Y.
Data-dependent stopping is a bounded while loop whose state freezes once converged: the same iterate
as the official Python loop, and the energy trace has NaN after the stop.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from adapt.core.mesh import pool_sum
from adapt.graph import sparse as graph


class BoundResult(NamedTuple):
    y: jax.Array  # (Np, C) assignments, rows on the simplex (padding rows: uniform-ish, ignore)
    energies: jax.Array  # (max_iters,) E_code after each executed update, NaN after the stop
    iterations: jax.Array  # () number of updates executed


def energy_code(y, unary, nb, lam, mask):
    """E_code(Y) over the real rows (mask (Np,))."""
    m = mask[:, None].astype(y.dtype)
    pair = graph.gather_sum(nb, y)
    return pool_sum(jnp.sum(m * (graph.entropy_xlogx(y) + unary * y - lam * pair * y), axis=1))


def _clamp(y, clamp_rows, clamp_to):
    if clamp_rows is None:
        return y
    return jnp.where(clamp_rows[:, None], clamp_to, y)


@functools.partial(jax.jit, static_argnames=("max_iters", "start_from_unary"))
def bound_update(unary, nb, lam, mask, y0=None, *, max_iters=20, tol=1e-6, clamp_rows=None,
                 clamp_to=None, start_from_unary=True):
    """LaplacianShot / SLK bound iterations. unary (Np, C); nb the kNN W; clamp_rows (Np,) bool rows
    held at clamp_to (Np, C) after every step (SLK supports), or None."""
    y = graph.masked_softmax(-unary) if start_from_unary else y0
    y = _clamp(y, clamp_rows, clamp_to)
    energies = jnp.full((max_iters,), jnp.nan, unary.dtype)
    state = (0, y, jnp.array(jnp.inf, unary.dtype), jnp.array(False), energies)

    def cond(s):
        return (s[0] < max_iters) & ~s[3]

    def body(s):
        t, y, old_e, _, energies = s
        y = jax.nn.softmax(-unary + lam * graph.gather_sum(nb, y), axis=1)
        y = _clamp(y, clamp_rows, clamp_to)
        e = energy_code(y, unary, nb, lam, mask)
        stop = (t > 1) & (jnp.abs(e - old_e) <= tol * jnp.abs(old_e))
        return t + 1, y, jnp.where(stop, old_e, e), stop, energies.at[t].set(e)

    t, y, _, _, energies = lax.while_loop(cond, body, state)
    return BoundResult(y, energies, t)


# ------------------------------------------------------------------------------ SLK prototypes
def squared_distances(x, protos):
    """|x_p - c_k|^2: x (N, D), protos (C, D) -> (N, C)."""
    return (jnp.sum(x * x, 1, keepdims=True) - 2.0 * x @ protos.T
            + jnp.sum(protos * protos, 1)[None, :])


def _class_sums(weights, x):
    """sum_n weights_nc x_n: (C, D), each class by `pool_sum` (the same on any device count)."""
    return lax.map(lambda w_c: pool_sum(w_c[:, None] * x), weights.T)


def hard_means(x, labels, weights, num_classes, fallback):
    """Mean of each cluster's members (weights (N,) zero on padding); empty -> fallback (C, D)."""
    onehot = jax.nn.one_hot(labels, num_classes, dtype=x.dtype) * weights[:, None]
    count = onehot.sum(0)
    means = _class_sums(onehot, x) / jnp.where(count > 0, count, 1.0)[:, None]
    return jnp.where((count > 0)[:, None], means, fallback)


def soft_means(x, z, weights):
    """sum_p z_pk x_p / sum_p z_pk over the real rows."""
    zw = z * weights[:, None]
    return _class_sums(zw, x) / jnp.maximum(pool_sum(zw), 1e-30)[:, None]


@functools.partial(jax.jit, static_argnames=("max_steps",))
def mean_shift(x, labels, weights, protos, sigma2, *, max_steps=1000, tol=1e-5):
    """Mean-shift of each prototype over its cluster's members with a Gaussian kernel
    exp(-|c - x|^2 / (2 sigma^2)), per cluster until max|c1 - c0| < tol max|c0| (official MS)."""
    members = (jax.nn.one_hot(labels, protos.shape[0], dtype=x.dtype) * weights[:, None]).T

    def shift(c):
        k = members * jnp.exp(-squared_distances(x, c).T / (2.0 * sigma2))  # (C, N)
        return (k @ x) / jnp.maximum(k.sum(1), 1e-30)[:, None]

    def cond(s):
        return (s[0] < max_steps) & ~jnp.all(s[2])

    def body(s):
        t, c, done = s
        c1 = shift(c)
        stop = jnp.max(jnp.abs(c1 - c), axis=1) < tol * jnp.max(jnp.abs(c), axis=1)
        # the official loop returns c1 at its stop, and keeps iterating from c1 otherwise
        return t + 1, jnp.where(done[:, None], c, c1), done | stop

    _, c, _ = lax.while_loop(cond, body, (0, protos, jnp.zeros(protos.shape[0], bool)))
    return c


@jax.jit
def slk_bandwidth(x, nb, mask, normalizer):
    """sigma^2 = sum_pq W_pq |x_p - x_q|^2 / normalizer (official: 5 N; ours: the edge count)."""
    diff = jnp.zeros(x.shape[0], x.dtype)
    for j in range(nb.idx.shape[1]):
        d = jnp.sum((x - jnp.take(x, nb.idx[:, j], axis=0)) ** 2, axis=1)
        diff = diff + nb.w[:, j] * d
    return jnp.sum(jnp.where(mask, diff, 0.0)) / normalizer
