"""Fill the embedding caches of a subsample pool from the caches of its full pool (no CNN pass).

python experiments/pseudolabel/seed_subset_cache.py --split test --limit 1000 --seed 0

A subsample (`pool.limit`, `pool.seed`) has its own cache key, so a run on it would embed its images
again (three CNN passes for visual GRIP with LoRA: embeddings, head pre-activations, block outputs;
about 25 min for 3,000 images on this loaded 2-core machine). Each image's arrays do not depend on
the other images of its batch, so the subsample's rows are the full pool's rows at the subsample's
indices: this script copies them into the chunk files the engine would have written (same keys,
item-relative `kept`, the full pool's content digests, which the engine re-checks on reuse).
Only caches of the full pool that are complete are used; a missing one is left for the run to compute.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from adapt.data import make_pool_config, open_pool
from adapt.features.embed import _write_atomic, cache_key, default_cache_root
from adapt.models import load_model
from adapt.tuning.offline_head import HeadInputs


def full_rows(cache_dir: Path, n: int) -> dict | None:
    """The full pool's cached arrays by pool index, or None when the cache is incomplete."""
    chunks = sorted(cache_dir.glob("chunk_*.npz"))
    if not chunks:
        return None
    n_chunks = int(chunks[0].name.split("_of_")[1].split("_")[0])
    if len(chunks) != n_chunks:
        return None
    parts = [dict(np.load(c)) for c in chunks]
    if any(len(p["skipped_ids"]) for p in parts):
        raise SystemExit(f"{cache_dir}: the full pool skipped items; seed by hand")
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k.startswith("out__")}
    out["digests"] = np.concatenate([p["digests"] for p in parts])
    assert np.array_equal(np.concatenate([p["kept"] for p in parts]), np.arange(n))
    return out


def seed(adapter, full_pool, sub_pool, indices: np.ndarray, root: Path, chunk_size: int = 1024) -> str:
    src = root / "embeddings" / cache_key(adapter, full_pool)
    rows = full_rows(src, len(full_pool))
    if rows is None:
        return f"{adapter.model_id}: full cache {src.name} incomplete, not seeded"
    dst = root / "embeddings" / cache_key(adapter, sub_pool)
    dst.mkdir(parents=True, exist_ok=True)
    meta = dict(model=adapter.model_id, weights=adapter.weights_hash, pool=sub_pool.source, n=len(sub_pool),
                chunk_size=chunk_size, preprocess=json.loads(adapter.preprocess.to_json()),
                seeded_from=src.name)
    (dst / "meta.json").write_text(json.dumps(meta, indent=1))
    n_chunks = -(-len(sub_pool) // chunk_size)
    for c in range(n_chunks):
        local = np.arange(c * chunk_size, min(len(sub_pool), (c + 1) * chunk_size))
        arrays = {k: v[indices[local]] for k, v in rows.items() if k.startswith("out__")}
        arrays.update(kept=local.astype(np.int64), skipped_ids=np.zeros(0, dtype="<U1"),
                      skipped_reasons=np.zeros(0, dtype="<U1"), digests=rows["digests"][indices[local]])
        _write_atomic(dst / f"chunk_{c:05d}_of_{n_chunks:05d}_size_{chunk_size}.npz", arrays)
    return f"{adapter.model_id}: seeded {dst.name} ({len(sub_pool)} rows) from {src.name}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    full = open_pool(make_pool_config(kind="fashion_mnist", split=a.split))
    sub = open_pool(make_pool_config(kind="fashion_mnist", split=a.split, limit=a.limit, seed=a.seed))
    indices = np.asarray(sub.indices)
    model = load_model()
    root = default_cache_root()
    for adapter in (model, HeadInputs(model, "preactivation"), HeadInputs(model, "block_output")):
        print(seed(adapter, full, sub, indices, root))


if __name__ == "__main__":
    main()
