"""Device mesh, pool sharding and padding masks.

Every job runs on a mesh with one axis, `pool`: the N pool rows are sharded along it and everything
else (parameters, class embeddings) is replicated. On a laptop the mesh has one device; on a pod it
spans all of them. Randomness is drawn for the global (padded) shape and then sharded, so results do
not depend on the number of devices.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

POOL = "pool"


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh over the first `num_devices` devices (all of them by default)."""
    devices = jax.devices()
    n = len(devices) if not num_devices else num_devices
    if n > len(devices):
        raise ValueError(f"asked for {n} devices, only {len(devices)} are available")
    return Mesh(np.asarray(devices[:n]), (POOL,), axis_types=(jax.sharding.AxisType.Auto,))


def pool_sharding(mesh: Mesh) -> NamedSharding:
    """Rows split over the pool axis."""
    return NamedSharding(mesh, P(POOL))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def padded_size(n: int, mesh: Mesh, multiple: int = 1) -> int:
    """Smallest size >= n divisible by the device count (times `multiple`)."""
    m = mesh.devices.size * multiple
    return max(m, -(-n // m) * m)


def shard_rows(x: np.ndarray, mesh: Mesh, multiple: int = 1) -> tuple[jax.Array, jax.Array]:
    """Pads `x` (N, ...) with zero rows to a size the mesh divides and shards it along `pool`.

    Returns the sharded array (Np, ...) and a boolean mask (Np,) that is True on real rows.
    """
    n = x.shape[0]
    n_pad = padded_size(n, mesh, multiple)
    x = np.asarray(x)
    if n_pad != n:
        x = np.concatenate([x, np.zeros((n_pad - n, *x.shape[1:]), x.dtype)], axis=0)
    mask = np.arange(n_pad) < n
    sharding = pool_sharding(mesh)
    return jax.device_put(x, sharding), jax.device_put(mask, sharding)


def replicate(x, mesh: Mesh):
    return jax.device_put(x, replicated(mesh))


def _two_sum(a, b):
    """(a + b rounded, its exact rounding error) (Knuth's TwoSum)."""
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


def pool_sum(x: jax.Array) -> jax.Array:
    """Sum over axis 0 of x (N, ...), correctly rounded to float32 (up to N eps^2 of a rounding
    boundary): a pairwise tree of double-float (hi, lo) pairs. The result does not depend on the
    order of the rows, so it is the same on any number of devices (a plain sum of sharded rows is
    reduced per shard first, and its rounding changes with the device count)."""
    n = x.shape[0]
    size = 1 << max(0, (n - 1).bit_length())
    hi = jnp.concatenate([x, jnp.zeros((size - n, *x.shape[1:]), x.dtype)]) if size > n else x
    lo = jnp.zeros_like(hi)
    while hi.shape[0] > 1:
        h, l_ = hi.reshape(-1, 2, *hi.shape[1:]), lo.reshape(-1, 2, *lo.shape[1:])
        s, err = _two_sum(h[:, 0], h[:, 1])
        tail = l_[:, 0] + l_[:, 1] + err
        hi = s + tail
        lo = tail - (hi - s)
    return hi[0]


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over real rows of x (Np, D) -> (D,), the same on any number of devices (the sum is
    `ops.pool_sum`, correctly rounded whatever the row order)."""
    w = mask.astype(x.dtype)
    return pool_sum(w[:, None] * x) / jnp.maximum(w.sum(), 1.0)
