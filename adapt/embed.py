"""Embed a pool once: batched, padded, jit-compiled, sharded over the pool axis, cached on disk.

The cache lives in `<cache_root>/embeddings/<key>/`, where the key hashes everything that fixes the
result: model id and weights hash, preprocessing, the pool's fingerprint (file list with sizes and
mtimes, or content hashes), dtype and the view names. Work is cut into chunks of pool indices; each
chunk is written atomically (temp file + rename), so an interrupted job resumes at the first missing
chunk and never reads a partial one. A different key is a different folder: stale caches are never read.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import inspect
import json
import os
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from adapt import mesh as mesh_lib
from adapt.data.base import BadImage, Pool
from adapt.preprocess import to_pixels

CACHE_FORMAT = 1


@dataclasses.dataclass
class Embedded:
    """The pool in embedding space. Rows follow `kept`, the decodable pool items in pool order."""

    embeddings: np.ndarray  # (M, D) float32, rows L2-normalised
    views: dict[str, np.ndarray]  # extra per-image views, each (M, d)
    kept: np.ndarray  # (M,) int64 pool indices
    skipped: list[tuple[str, str]]  # (item id, reason)
    cache_dir: Path
    chunks_reused: int = 0
    chunks_computed: int = 0


CPU_CHUNK = 8


def default_cache_root() -> Path:
    return Path(os.environ.get("ADAPT_CACHE", Path.home() / ".cache" / "adapt"))


def cache_key(model, pool: Pool, dtype: str = "float32") -> str:
    parts = dict(
        format=CACHE_FORMAT, model=model.model_id, weights=model.weights_hash,
        preprocess=model.preprocess.to_json(), pool=pool.fingerprint(), dtype=dtype,
        views=hasattr(model, "image_views"),
    )
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def make_encoder(model, mesh) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A jitted function: pixels (B, H, W, 3), B divisible by the mesh size -> dict of (B, d) arrays.

    The key "embedding" holds `encode_images`; models with `image_views` add their views.
    """
    graphdef, state = nnx.split(model)
    state = mesh_lib.replicate(state, mesh)
    has_views = hasattr(model, "image_views")

    # One CPU device: CLIP towers run the batch as a lax.map over slices of 8 images (same numbers,
    # 13-26% more images/s on CPU: experiments/embed_throughput). Not across devices: the map
    # would run the shards one after another.
    chunked = (mesh.devices.size == 1 and jax.default_backend() == "cpu"
               and "chunk" in inspect.signature(model.encode_images).parameters)

    def forward(state, pixels):
        m = nnx.merge(graphdef, state)
        chunk = CPU_CHUNK if chunked and pixels.shape[0] % CPU_CHUNK == 0 else None
        out = {"embedding": m.encode_images(pixels, chunk=chunk) if chunk else m.encode_images(pixels)}
        if has_views:
            out.update(m.image_views(pixels))
        return out

    rows = mesh_lib.pool_sharding(mesh)
    fn = jax.jit(forward, in_shardings=(mesh_lib.replicated(mesh), rows), out_shardings=rows)

    def encode(pixels: np.ndarray) -> dict[str, np.ndarray]:
        out = fn(state, jax.device_put(pixels, rows))
        return {k: np.asarray(v, np.float32) for k, v in out.items()}

    return encode


def _decode(pool: Pool, i: int, pre):
    try:
        return to_pixels(pool.load(i), pre)
    except BadImage as e:
        return str(e)
    except Exception as e:  # a decoder bug must not stop the job; the reason is reported
        return f"{type(e).__name__}: {e}"


def _embed_chunk(indices, pool, model, encode, batch, executor, bar):
    """Decodes and encodes pool items `indices`; returns the arrays of one cache chunk."""
    pre = model.preprocess
    outs: dict[str, list[np.ndarray]] = {}
    kept, skipped_ids, skipped_reasons = [], [], []
    batches = [indices[s:s + batch] for s in range(0, len(indices), batch)]
    pending = [executor.submit(_decode, pool, int(i), pre) for i in batches[0]] if batches else []
    for b, idx in enumerate(batches):
        results = [f.result() for f in pending]
        if b + 1 < len(batches):  # decode the next batch while this one runs on the devices
            pending = [executor.submit(_decode, pool, int(i), pre) for i in batches[b + 1]]
        good = [(i, r) for i, r in zip(idx, results) if not isinstance(r, str)]
        for i, r in zip(idx, results):
            if isinstance(r, str):
                skipped_ids.append(pool.item_id(int(i)))
                skipped_reasons.append(r)
        if good:
            pixels = np.zeros((batch, pre.image_size, pre.image_size, 3), np.float32)
            pixels[: len(good)] = np.stack([r for _, r in good])
            for k, v in encode(pixels).items():
                outs.setdefault(k, []).append(v[: len(good)])
            kept += [int(i) for i, _ in good]
        bar.update(len(idx))
    arrays = {f"out__{k}": np.concatenate(v) for k, v in outs.items()}
    arrays.update(kept=np.asarray(kept, np.int64), skipped_ids=np.asarray(skipped_ids, dtype=str),
                  skipped_reasons=np.asarray(skipped_reasons, dtype=str))
    return arrays


def _write_atomic(path: Path, arrays: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def embed_pool(model, pool: Pool, mesh, *, cache_root: Path | None = None, batch_size: int = 64,
               chunk_size: int = 1024, workers: int = 4, progress: bool = True,
               on_chunk: Callable[[int], None] | None = None) -> Embedded:
    """Embeds every decodable item of `pool` with `model`, reusing finished cache chunks."""
    n = len(pool)
    if n == 0:
        raise ValueError("the pool is empty")
    cache_dir = Path(cache_root or default_cache_root()) / "embeddings" / cache_key(model, pool)
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta = dict(model=model.model_id, weights=model.weights_hash, pool=pool.source, n=n,
                chunk_size=chunk_size, preprocess=json.loads(model.preprocess.to_json()))
    (cache_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    batch = mesh_lib.padded_size(batch_size, mesh)
    n_chunks = -(-n // chunk_size)
    encode = None
    chunks, reused, computed = [], 0, 0
    bar = tqdm(total=n, unit="img", desc="embed", disable=not progress, smoothing=0.1)
    with cf.ThreadPoolExecutor(max(1, workers)) as executor:
        for c in range(n_chunks):
            path = cache_dir / f"chunk_{c:05d}_of_{n_chunks:05d}_size_{chunk_size}.npz"
            indices = np.arange(c * chunk_size, min(n, (c + 1) * chunk_size))
            if path.exists():
                with np.load(path) as z:
                    arrays = {k: z[k] for k in z.files}
                if len(arrays["kept"]) + len(arrays["skipped_ids"]) == len(indices):
                    chunks.append(arrays)
                    reused += 1
                    bar.update(len(indices))
                    continue
            encode = encode or make_encoder(model, mesh)
            arrays = _embed_chunk(indices, pool, model, encode, batch, executor, bar)
            _write_atomic(path, arrays)
            chunks.append(arrays)
            computed += 1
            if on_chunk is not None:
                on_chunk(c)
    bar.close()
    keys = sorted({k for a in chunks for k in a if k.startswith("out__")})
    outs = {k[5:]: np.concatenate([a[k] for a in chunks if k in a]) for k in keys}
    kept = np.concatenate([a["kept"] for a in chunks])
    skipped = [(str(i), str(r)) for a in chunks for i, r in zip(a["skipped_ids"], a["skipped_reasons"])]
    if len(kept) == 0:
        raise ValueError(f"no image of the pool could be decoded ({len(skipped)} skipped); "
                         f"first reasons: {skipped[:3]}")
    embeddings = outs.pop("embedding")
    return Embedded(embeddings, outs, kept, skipped, cache_dir, reused, computed)
