"""What every job kind shares before it knows a model: the stage timer and the runlocal pool size."""
from __future__ import annotations

import contextlib
import time

RUNLOCAL_LIMIT = 256  # pool items of a `runlocal=True` job whose config sets no pool.limit


class Timer:
    """Wall-clock seconds per named stage of a job (a stage entered twice adds up)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        t = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t


def pool_config(config):
    """The config's pool block; with `runlocal` and no limit of its own, a copy limited to
    RUNLOCAL_LIMIT items (the config itself is left as it is)."""
    if not config.runlocal or config.pool.limit:
        return config.pool
    limited = config.pool.copy_and_resolve_references()
    limited.limit = RUNLOCAL_LIMIT
    return limited
