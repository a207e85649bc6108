"""Shared embedding-level math (jit-able; pool rows sharded along the mesh's `pool` axis)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from adapt import mesh as mesh_lib


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), eps)


@jax.jit
def zero_shot_logits(x: jax.Array, class_weights: jax.Array, scale: float) -> jax.Array:
    """s * X T^T: x (N, D), class_weights (C, D) -> (N, C)."""
    return scale * x @ class_weights.T


@jax.jit
def centered(x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Subtracts the mean of the real rows and renormalises: x (Np, D) -> (Np, D), mean (D,).

    Padding rows stay zero."""
    mu = mesh_lib.masked_mean(x, mask)
    out = l2_normalize(x - mu) * mask[:, None].astype(x.dtype)
    return out, mu
