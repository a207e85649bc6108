"""The setup every job kind shares: the pool (runlocal-limited), the mesh, the frozen model, the
embedding options, and the pool's embeddings on one process or many.

`embed_job_pool` gives the pool rows every job computes on: real rows first, padded to the mesh and
sharded along `pool`; on many processes each process embeds its own slice (`embed_slices`).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from adapt import models
from adapt.core import distributed
from adapt.core import mesh as mesh_lib
from adapt.core.job import pool_config
from adapt.core.method import EmbedOptions
from adapt.data import open_pool
from adapt.data.arrays import SubsetPool
from adapt.features.embed import check_settings, embed_pool


class PoolRows(NamedTuple):
    """The embedded pool. kept: (N,) pool item of each real row; skipped: [(item, reason)], the
    pool's prescan first; x: (Np, D) unit rows; mask: (Np,) True on real rows; views: every image
    view (Np, d) by name, "embedding" (= x) first."""

    kept: np.ndarray
    skipped: list
    x: jax.Array
    mask: jax.Array
    views: dict[str, Any]


class JobStart(NamedTuple):
    """What every job starts from: embedding options, the pool, the mesh, the frozen model, and
    whatever the job's own `check(pool)` returned (e.g. its classes)."""

    embed: EmbedOptions
    pool: Any
    mesh: Any
    model: Any
    checked: Any


def start_job(config, timer, check: Callable[[Any], Any] = lambda pool: None) -> JobStart:
    """The stages every job begins with, timed: "setup" (options, pool, `check(pool)`, mesh: all that
    can fail on bad input, before any compute) then "load_model"."""
    with timer.stage("setup"):
        embed = embed_options(config)
        pool = open_job_pool(config)
        checked = check(pool)
        mesh = job_mesh(config)
    with timer.stage("load_model"):
        model = load_job_model(config)
    return JobStart(embed, pool, mesh, model, checked)


def open_job_pool(config):
    """The config's pool, limited to RUNLOCAL_LIMIT items under `runlocal` (adapt.core.job)."""
    return open_pool(pool_config(config))


def job_mesh(config):
    return mesh_lib.make_mesh(config.embed.num_devices or None)


def load_job_model(config):
    """The frozen model the config names (looked up on `adapt.models` at call time)."""
    return models.load_model(config.model.kind, config.model.path, config.model.grounding,
                             config.model.get("arch", ""))


def embed_options(config) -> EmbedOptions:
    """The config's embedding options, checked (a ValueError names a bad one)."""
    e = config.embed
    check_settings(e.batch_size, e.chunk_size, e.workers)
    return EmbedOptions(e.cache_dir or None, e.batch_size, e.chunk_size, e.workers)


def n_pool_items(pool) -> int:
    """Items of the pool, those its prescan skipped included."""
    return len(pool) + len(getattr(pool, "prescan_skipped", []))


def embed_job_pool(model, pool, mesh, embed: EmbedOptions, progress: bool = True) -> PoolRows:
    """Embeds the pool (through the cache) on this process, or each process its slice."""
    kw = dict(cache_root=embed.cache_root, batch_size=embed.batch_size, chunk_size=embed.chunk_size,
              workers=embed.workers, progress=progress)
    if distributed.is_multiprocess():  # each process embeds its slice; rows joined globally
        start, end = distributed.process_slice(len(pool))
        print(f"process {jax.process_index()}/{jax.process_count()}: embedding pool items "
              f"[{start}, {end}) of {len(pool)}", flush=True)
        kept, skipped, x, mask, views = embed_slices(model, pool, mesh, **kw)
    else:
        emb = embed_pool(model, pool, mesh, **kw)
        kept, skipped = emb.kept, emb.skipped
        x, mask = mesh_lib.shard_rows(emb.embeddings, mesh)
        views = {k: mesh_lib.shard_rows(v, mesh)[0] for k, v in emb.views.items()}
    skipped = list(getattr(pool, "prescan_skipped", [])) + list(skipped)
    return PoolRows(np.asarray(kept), skipped, x, mask, {"embedding": x} | views)


def embed_slices(model, pool, mesh, **embed_kwargs):
    """Each process embeds its slice of `pool`; returns the global pool rows, real rows first.

    Returns (kept (M,) pool indices, skipped [(id, reason)], x (Np, D), mask (Np,), views) where the
    arrays are global, sharded along `pool` over every device of every process.
    """
    start, end = distributed.process_slice(len(pool))
    emb = embed_pool(model, SubsetPool(pool, np.arange(start, end)), distributed.local_mesh(), **embed_kwargs)
    n_local = len(jax.local_devices())
    length = -(-distributed.max_over_processes(len(emb.kept)) // n_local) * n_local
    mask = distributed.to_host(distributed.global_rows(np.ones(len(emb.kept), bool), mesh, length))
    order = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
    take = jax.jit(lambda a: a[order], out_shardings=mesh_lib.pool_sharding(mesh))
    kept = distributed.to_host(distributed.global_rows(start + emb.kept, mesh, length))[mask]
    x = take(distributed.global_rows(emb.embeddings, mesh, length))
    views = {k: take(distributed.global_rows(v, mesh, length)) for k, v in emb.views.items()}
    real = jax.device_put(np.arange(len(order)) < len(kept), mesh_lib.pool_sharding(mesh))
    ids = distributed.allgather_strings([i for i, _ in emb.skipped])
    reasons = distributed.allgather_strings([r for _, r in emb.skipped])
    skipped = [(i, r) for pi, pr in zip(ids, reasons) for i, r in zip(pi, pr)]
    return kept, skipped, x, real, views
