"""Sinkhorn balancing of soft pseudo-labels over the pool (InMaP's `sinkhorn`, NeurIPS 2023).

P = softmax(M / tau) / n, then `iters` times: divide each column by its sum and by C (uniform class
marginal; with gamma > 0 the marginal q = (column sums of the first P)^gamma / sum instead), divide
each row by its sum and by n; finally P * n, so every real row is a distribution again. The
column sums run over the pool rows with `mesh.pool_sum` (correctly rounded, order-free), so the
result is the same on any number of devices and for any order of the pool; row sums are local.

Rows where `mask` is False (mesh padding) stay zero and do not count in n. A column whose sum is
exactly 0 (every image's softmax underflowed there) stays zero rather than becoming NaN, which is
what the official division would give.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from adapt.core.mesh import pool_sum


def _safe_divide(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), 0.0)


@functools.partial(jax.jit, static_argnames=("iters", "gamma"))
def sinkhorn(logits: jax.Array, mask: jax.Array, tau: float, iters: int,
             gamma: float = 0.0) -> jax.Array:
    """logits (Np, C), mask (Np,) -> balanced pseudo-labels (Np, C); rows on the simplex on real
    rows, zero on padding. iters = 0 gives the plain softmax(logits / tau)."""
    real = mask[:, None].astype(logits.dtype)
    n = jnp.maximum(real.sum(), 1.0)
    c = logits.shape[1]
    p = jax.nn.softmax(logits / tau, axis=1) * real / n
    q = pool_sum(p) ** gamma if gamma > 0 else None  # the class marginal (None: uniform)
    q = None if q is None else q / q.sum()

    def step(_, p):
        p = _safe_divide(p, pool_sum(p)[None, :])
        p = p / c if q is None else p * q[None, :]
        return _safe_divide(p, p.sum(axis=1, keepdims=True)) * real / n

    return lax.fori_loop(0, iters, step, p) * n
