"""Embed a pool once: batched, padded, jit-compiled, sharded over the pool axis, cached on disk.

The cache lives in `<cache_root>/embeddings/<key>/`, where the key hashes everything that fixes the
result: model id and weights hash, preprocessing, the pool's fingerprint (file list with sizes and
mtimes, or content hashes), dtype and the view names, and for a model carrying tuned parameters
(a chained run, `init.from`) their hash `model.tuned_hash`. Work is cut into chunks of pool indices; each
chunk is written atomically (temp file + rename), so an interrupted job resumes at the first missing
chunk and never reads a partial one. A different key is a different folder: stale caches are never read.
A chunk also stores each item's content digest (BLAKE2b of the bytes decoded, for file pools) and is
reused only if the files still hash the same (an image replaced with its size and mtime kept is
caught); a chunk that cannot be loaded is recomputed; a chunk in which a file could not be read
(permissions, I/O) is used for this run but not written, so the read is tried again next time.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import inspect
import json
import operator
import os
import sys
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from adapt.core import mesh as mesh_lib
from adapt.data.base import BadImage, Pool, Unreadable
from adapt.models.preprocess import to_pixels

CACHE_FORMAT = 2  # 2: per-item content digests, chunks with a failed read not written


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
    if getattr(model, "tuned_hash", ""):  # only then: keys of untuned models stay as they were
        parts["tuned"] = model.tuned_hash
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
    """Item i -> (pixels or the reason it was skipped, content digest, whether it was readable)."""
    try:
        img, digest = pool.load_with_digest(i)
        return to_pixels(img, pre), digest, True
    except Unreadable as e:
        return str(e), "", False
    except BadImage as e:
        return str(e), e.digest, True
    except Exception as e:  # a decoder bug must not stop the job; the reason is reported
        return f"{type(e).__name__}: {e}", "", True


def _embed_chunk(indices, pool, model, encode, batch, executor, bar):
    """Decodes and encodes pool items `indices`; returns the arrays of one cache chunk and whether
    every item could be read (a chunk with a failed read is not cached: the read may pass later)."""
    pre = model.preprocess
    outs: dict[str, list[np.ndarray]] = {}
    kept, skipped_ids, skipped_reasons, digests, all_read = [], [], [], [], True
    batches = [indices[s:s + batch] for s in range(0, len(indices), batch)]
    pending = [executor.submit(_decode, pool, int(i), pre) for i in batches[0]] if batches else []
    for b, idx in enumerate(batches):
        results = [f.result() for f in pending]
        if b + 1 < len(batches):  # decode the next batch while this one runs on the devices
            pending = [executor.submit(_decode, pool, int(i), pre) for i in batches[b + 1]]
        good = [(i, r) for i, (r, _, _) in zip(idx, results) if not isinstance(r, str)]
        for i, (r, digest, readable) in zip(idx, results):
            digests.append(digest)
            all_read &= readable
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
                  skipped_reasons=np.asarray(skipped_reasons, dtype=str),
                  digests=np.asarray(digests, dtype="<U32"))
    return arrays, all_read


def _current_digest(pool: Pool, i: int) -> str | None:
    try:
        return pool.digest(i)
    except BadImage:
        return None


def _reusable_chunk(path: Path, indices: np.ndarray, pool: Pool, executor) -> dict | None:
    """The arrays of a finished chunk, or None when it is missing, unreadable (truncated, corrupt)
    or any item's bytes changed since (content digest; in-memory pools: fingerprint only)."""
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        complete = len(arrays["kept"]) + len(arrays["skipped_ids"]) == len(indices) == len(arrays["digests"])
    except Exception as e:  # noqa: BLE001  (BadZipFile, EOFError, KeyError, ...: recompute)
        print(f"warning: cache chunk {path} is unreadable ({type(e).__name__}): recomputing it",
              file=sys.stderr)
        return None
    if not complete:
        return None
    stored = [str(d) for d in arrays["digests"]]
    if any(stored):
        now = list(executor.map(lambda i: _current_digest(pool, int(i)), indices))
        if now != stored:
            return None
    return arrays


def check_settings(batch_size, chunk_size, workers=1) -> None:
    """Raises ValueError (one line naming the key) for a batch, chunk or worker count below 1."""
    for key, value in (("batch_size", batch_size), ("chunk_size", chunk_size), ("workers", workers)):
        try:
            whole = operator.index(value) if not isinstance(value, bool) else 0
        except TypeError:
            whole = 0
        if whole < 1:
            raise ValueError(f"embed.{key} must be a whole number of at least 1, got {value!r}; "
                             f"set it with --set embed.{key}=N")


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
    check_settings(batch_size, chunk_size, workers)
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
            arrays = _reusable_chunk(path, indices, pool, executor)
            if arrays is not None:
                chunks.append(arrays)
                reused += 1
                bar.update(len(indices))
                continue
            encode = encode or make_encoder(model, mesh)
            arrays, all_read = _embed_chunk(indices, pool, model, encode, batch, executor, bar)
            if all_read:
                _write_atomic(path, arrays)
            else:
                path.unlink(missing_ok=True)
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
