"""Mutual scoring (MuSc's MSM) of a pool of patch sets, blocked, symmetric and sharded over the pool.

For unit patch features Z (N, P, C) the score of patch p of image i is the mean of the K smallest
nearest-patch distances to the other images:

    m_ij(p) = max_q <z_ip, z_jq>,   d_ij(p) = sqrt(max(0, 2 - 2 m_ij(p))),
    a_i(p)  = mean of d_ij(p) over the ranks [k_min, k_max) of the ascending list over j != i.

Schedules (all exact; they differ in FLOPs and memory):
  "symmetric" (default): one (b*P, b*P) similarity tile per pair of image blocks gives both the row
      maxima (block I scored by block J) and the column maxima (J scored by I): half the matmuls of
      the all-pairs loop. Images are sharded over the mesh's `pool` axis; device blocks meet on a
      ring (`ppermute`), each unordered pair of devices once, and the column maxima travel back to
      their owner. Working memory is the tile, fixed by `block`, whatever N; the only N^2 object
      is the table of m_ij(p), (N/D, P, N) per device (D devices; P times smaller than one image's
      distance matrix in the official loop), reduced by `top_k` `block` rows at a time.
  "stream": memory linear in N. Each device scores its images in chunks of `block` rows against
      the whole (all-gathered) pool, one direction only (twice the matmuls), and reduces every chunk
      before the next: memory (block, P, N) + (N, P, C).
  "auto": symmetric while its table fits `table_mb` per device, else stream.
  "same_position": patch p is compared only with patch p of the other images (aligned objects).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from adapt.core.mesh import POOL

SCHEDULES = ("symmetric", "stream", "auto", "same_position")
PRECISIONS = ("float32", "bfloat16")


def rank_window(n: int, frac: float, frac_min: float = 0.0, rounding: str = "floor_min1") -> tuple[int, int]:
    """(k_min, k_max): the ranks of the ascending distance list over the n - 1 other images.

    rounding: "floor" (the official code: k = int(frac * (n - 1)); k_max = 0 is an error here
    instead of NaN), "floor_min1" (default: at least one rank), "ceil" (the maintainer's fix).
    """
    if n < 2:
        raise ValueError(f"mutual scoring needs at least 2 images, got {n}")
    m = n - 1
    rnd = {"floor": math.floor, "floor_min1": math.floor, "ceil": math.ceil}.get(rounding)
    if rnd is None:
        raise ValueError(f"rounding must be floor, floor_min1 or ceil, not {rounding!r}")
    lo, hi = (int(rnd(f * m)) if f < 1 else int(f) for f in (frac_min, frac))
    lo, hi = min(lo, hi), max(lo, hi)
    hi = min(hi, m)
    if rounding != "floor":
        hi = max(hi, lo + 1)
    if hi <= lo:
        raise ValueError(f"the rank window [{lo}, {hi}) of {m} other images is empty "
                         f"(frac={frac}, frac_min={frac_min}, rounding={rounding})")
    return lo, hi


def default_tile_mb() -> float:
    """Tile budget: cache-sized on CPU (measured: 784 x 784 tiles beat 3920 x 3920 ones there),
    large on accelerators, where bigger matmuls keep the device busy."""
    return 8.0 if jax.default_backend() == "cpu" else 256.0


def auto_block(p: int, tile_mb: float = 0.0) -> int:
    """Images per block so that one (b*P, b*P) fp32 tile stays under `tile_mb` (0 = default)."""
    return max(1, int(math.sqrt((tile_mb or default_tile_mb()) * 2**20 / 4) // p))


def layout(n: int, devices: int, block: int) -> tuple[int, int]:
    """(block, padded N): block is cut to the images per device; padded N = devices * k * block."""
    per_device = -(-n // devices)
    b = max(1, min(block, per_device))
    n_loc = -(-per_device // b) * b
    return b, devices * n_loc


def _tile(za, zc, dtype):
    """za (b_a, P, C), zc (b_c, P, C) -> row maxima (b_a, P, b_c) [i, p, j] = max_q <z_ip, z_jq>
    and column maxima (b_c, P, b_a) [j, q, i] = max_p <z_ip, z_jq>."""
    b, p, c = za.shape
    s = jnp.dot(za.reshape(b * p, c).astype(dtype), zc.reshape(-1, c).astype(dtype).T,
                preferred_element_type=jnp.float32, precision=lax.Precision.HIGHEST)
    s = s.reshape(b, p, zc.shape[0], p)
    return s.max(axis=3), s.max(axis=1).transpose(1, 2, 0)


def _pairs(m: int, upper: bool) -> tuple[jax.Array, jax.Array]:
    a, c = np.triu_indices(m) if upper else np.divmod(np.arange(m * m), m)
    return jnp.asarray(a, jnp.int32), jnp.asarray(c, jnp.int32)


def _block_pairs(z_rows, z_cols, buf, col0, send, b, dtype, diagonal):
    """Fills buf (n, P, Np)[:, :, col0 + ...] with the row maxima of every pair of blocks.

    diagonal: z_rows is z_cols; only pairs a <= c are computed, both directions go into buf.
    Otherwise the column maxima go into send (n_cols, P, n_rows), for the owner of z_cols.
    """
    m = z_rows.shape[0] // b
    aa, cc = _pairs(m, upper=diagonal)

    def body(t, carry):
        buf, send = carry
        a, c = aa[t], cc[t]
        za = lax.dynamic_slice_in_dim(z_rows, a * b, b)
        zc = lax.dynamic_slice_in_dim(z_cols, c * b, b)
        row, col = _tile(za, zc, dtype)
        buf = lax.dynamic_update_slice(buf, row, (a * b, 0, col0 + c * b))
        if diagonal:
            buf = lax.dynamic_update_slice(buf, col, (c * b, 0, col0 + a * b))
        else:
            send = lax.dynamic_update_slice(send, col, (c * b, 0, a * b))
        return buf, send

    return lax.fori_loop(0, aa.shape[0], body, (buf, send))


def _reduce(sims, row0, n_real, lo, hi, chunk):
    """sims (n, P, Np) max-similarities of the rows row0.. -> (n, P) interval-mean distances.

    Reduced `chunk` rows at a time, so the masked copy that `top_k` needs stays small.
    """
    n, p, n_pad = sims.shape
    cols = jnp.arange(n_pad)

    def one(k):
        part = lax.dynamic_slice_in_dim(sims, k * chunk, chunk)
        rows = row0 + k * chunk + jnp.arange(chunk)
        bad = (rows[:, None] == cols[None, :]) | (cols[None, :] >= n_real)  # self and padding
        part = jnp.where(bad[:, None, :], -jnp.inf, part)
        best = lax.top_k(part, hi)[0][..., lo:]  # (chunk, P, hi - lo), descending similarity
        return jnp.sqrt(jnp.maximum(0.0, 2.0 - 2.0 * best)).mean(-1)

    return lax.map(one, jnp.arange(n // chunk)).reshape(n, p)


def _symmetric_local(z, *, n_real, lo, hi, b, dtype, devices):
    d = lax.axis_index(POOL)
    n, p, _ = z.shape
    n_pad = n * devices
    buf = jnp.full((n, p, n_pad), -jnp.inf, jnp.float32)
    buf, _ = _block_pairs(z, z, buf, d * n, None, b, dtype, diagonal=True)
    visit = z
    for s in range(1, devices // 2 + 1):
        # Device d receives the block of device d + 1 each step: after s steps it holds block d + s.
        visit = lax.ppermute(visit, POOL, [((i + 1) % devices, i) for i in range(devices)])
        send = jnp.zeros((n, p, n), jnp.float32)
        buf, send = _block_pairs(z, visit, buf, ((d + s) % devices) * n, send, b, dtype,
                                 diagonal=False)
        if 2 * s < devices:  # the column maxima go to their owner, device d + s
            recv = lax.ppermute(send, POOL, [(i, (i + s) % devices) for i in range(devices)])
            buf = lax.dynamic_update_slice(buf, recv, (0, 0, ((d - s) % devices) * n))
        # 2 s == devices: the partner computes the other direction itself.
    return _reduce(buf, d * n, n_real, lo, hi, b)


def _stream_local(z, *, n_real, lo, hi, b, dtype, devices):
    d = lax.axis_index(POOL)
    n, p, _ = z.shape
    zall = lax.all_gather(z, POOL, tiled=True) if devices > 1 else z  # (Np, P, C)
    m_rows, m_cols = n // b, zall.shape[0] // b

    def score_chunk(a):
        za = lax.dynamic_slice_in_dim(z, a * b, b)

        def body(c, buf):
            zc = lax.dynamic_slice_in_dim(zall, c * b, b)
            row, _ = _tile(za, zc, dtype)
            return lax.dynamic_update_slice(buf, row, (0, 0, c * b))

        buf = jnp.full((b, p, zall.shape[0]), -jnp.inf, jnp.float32)
        buf = lax.fori_loop(0, m_cols, body, buf)
        return _reduce(buf, d * n + a * b, n_real, lo, hi, b)

    return lax.map(score_chunk, jnp.arange(m_rows)).reshape(n, p)


def _same_position_local(z, *, n_real, lo, hi, b, dtype, devices):
    d = lax.axis_index(POOL)
    zall = lax.all_gather(z, POOL, tiled=True)
    sims = jnp.einsum("ipc,jpc->ipj", z.astype(dtype), zall.astype(dtype),
                      preferred_element_type=jnp.float32, precision=lax.Precision.HIGHEST)
    return _reduce(sims, d * z.shape[0], n_real, lo, hi, b)


_LOCAL = {"symmetric": _symmetric_local, "stream": _stream_local, "same_position": _same_position_local}


def choose_schedule(schedule: str, n_pad: int, p: int, devices: int, table_mb: float) -> str:
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, not {schedule!r}")
    if schedule != "auto":
        return schedule
    table = n_pad // devices * n_pad * p * 4 / 2**20
    return "symmetric" if table <= table_mb else "stream"


def mutual_scores(z: jax.Array, n_real: int, mesh, *, lo: int, hi: int, block: int,
                  schedule: str = "symmetric", precision: str = "float32") -> jax.Array:
    """z (Np, P, C) unit patch features, sharded over `pool`, Np = devices * k * block (see
    `layout`); rows >= n_real are padding. Returns (Np, P) patch scores (padding rows: garbage).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    devices = mesh.devices.size
    if schedule not in _LOCAL:
        raise ValueError(f"schedule must be one of {tuple(_LOCAL)} here, not {schedule!r}")
    if z.shape[0] % (devices * block):
        raise ValueError(f"{z.shape[0]} rows do not split into {devices} devices x blocks of {block}")
    return _compiled(mesh, n_real, lo, hi, block, schedule, precision)(z)


@functools.lru_cache(maxsize=64)
def _compiled(mesh, n_real, lo, hi, block, schedule, precision):
    """The jitted, shard-mapped kernel for one static configuration (compiled once per shape)."""
    dtype = jnp.bfloat16 if precision == "bfloat16" else jnp.float32
    local = functools.partial(_LOCAL[schedule], n_real=n_real, lo=lo, hi=hi, b=block, dtype=dtype,
                              devices=mesh.devices.size)
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P(POOL), out_specs=P(POOL),
                                 check_vma=False))
