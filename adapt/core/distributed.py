"""Multi-process runs on JAX's own runtime (`jax.distributed`); no distributed layer of ours.

Each process decodes and embeds its own contiguous slice of the pool, pads it to the common slice
length, and the slices become one global array sharded over every device of every process
(`jax.make_array_from_process_local_data`). Host-side results are gathered with
`multihost_utils.process_allgather`. Only process 0 writes shared files. The embedding of each
process's slice is adapt.features.setup.embed_slices (core knows no model).

If a process dies, the coordination service stops the others once heartbeats are missed
(`heartbeat_timeout_seconds`), so a job never hangs; artifacts are written last and atomically,
so nothing partial is left behind.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from adapt.core import mesh as mesh_lib

HEARTBEAT_SECONDS = 10


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Starts the multi-controller runtime from arguments or the usual environment (TPU, SLURM,
    JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID). CPU collectives use gloo."""
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    env = os.environ
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, heartbeat_timeout_seconds=HEARTBEAT_SECONDS)


def is_multiprocess() -> bool:
    return jax.process_count() > 1


def is_writer() -> bool:
    """Process 0 writes the artifact, report and shared caches."""
    return jax.process_index() == 0


def process_slice(n: int, index: int | None = None, count: int | None = None) -> tuple[int, int]:
    """The contiguous range [start, end) of n pool items that process `index` decodes and embeds."""
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
    per = -(-n // count)
    return min(n, index * per), min(n, (index + 1) * per)


def global_rows(local: np.ndarray, mesh, length: int) -> jax.Array:
    """Pads this process's rows (L, ...) to `length` and joins every process's rows into one global
    array (P * length, ...) sharded along `pool`; `length` must be the same on every process."""
    pad = np.zeros((length - local.shape[0], *local.shape[1:]), local.dtype)
    rows = np.concatenate([local, pad])
    shape = (length * jax.process_count(), *local.shape[1:])
    return jax.make_array_from_process_local_data(mesh_lib.pool_sharding(mesh), rows, shape)


def max_over_processes(value: int) -> int:
    return int(np.max(multihost_utils.process_allgather(np.asarray([value], np.int64))))


def to_host(x) -> np.ndarray:
    """A (possibly global, not fully addressable) array as one NumPy array on every process."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def allgather_strings(items: list[str], width: int = 512) -> list[list[str]]:
    """Every process's list of strings, by process (for skipped-file reports)."""
    n = max_over_processes(len(items))
    buf = np.zeros((max(n, 1), width), np.uint8)
    for i, s in enumerate(items):
        b = s.encode()[:width]
        buf[i, :len(b)] = np.frombuffer(b, np.uint8)
    counts = multihost_utils.process_allgather(np.asarray([len(items)], np.int64))
    every = multihost_utils.process_allgather(buf)
    return [[bytes(r).rstrip(b"\0").decode(errors="replace") for r in every[p][: int(counts[p][0])]]
            for p in range(len(every))]


def local_mesh():
    """A mesh over this process's own devices (embedding is process-local)."""
    devices = np.asarray(jax.local_devices())
    return jax.sharding.Mesh(devices, (mesh_lib.POOL,), axis_types=(jax.sharding.AxisType.Auto,))
