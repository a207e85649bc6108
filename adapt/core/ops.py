"""Shared embedding-level math (jit-able; pool rows sharded along the mesh's `pool` axis)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from adapt.core import mesh as mesh_lib

CENTRED_FLOOR = 1e-5  # |x - mu| below this (unit rows) is rounding of the mean, not a direction
pool_sum = mesh_lib.pool_sum  # the device-count-free sum over pool rows


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), eps)


@jax.jit
def zero_shot_logits(x: jax.Array, class_weights: jax.Array, scale: float) -> jax.Array:
    """s * X T^T: x (N, D), class_weights (C, D) -> (N, C)."""
    return scale * x @ class_weights.T


@jax.jit
def centered(x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Subtracts the mean of the real rows and renormalises: x (Np, D) -> (Np, D), mean (D,).

    Padding rows stay zero, and so do rows within CENTRED_FLOOR of the mean (a pool of identical
    images): their residual is float32 rounding, whose direction would be noise."""
    mu = mesh_lib.masked_mean(x, mask)
    residual = x - mu
    keep = (jnp.linalg.norm(residual, axis=-1) > CENTRED_FLOOR) & mask
    return jnp.where(keep[:, None], l2_normalize(residual), 0.0), mu
