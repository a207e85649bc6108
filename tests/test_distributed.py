"""Two local CPU processes (4 forced devices each, gloo collectives) give the single-process answer."""
import csv
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.clip_fixtures import write_tiny_clip
from tests.test_engine import _write_pool

# LaplacianShot only: its run crosses processes in the embedding, the kNN graph and the bound updates,
# so it covers what a zero-shot run would (the embedding) and more; each two-process run costs tens of
# seconds of start-up and compilation.
METHODS = ["laplacian"]


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _argv(config, tmp_path, workdir, model):
    return [sys.executable, "-m", "adapt.cli", "run", config, "--workdir", str(workdir), "--quiet",
            "--set", f"pool.path={tmp_path / 'pool'}", "--set", f"model.path={model}",
            "--set", "embed.batch_size=4"]


def _env(devices):
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                PYTHONUNBUFFERED="1")


def _launch(config, tmp_path, workdir, model, cache):
    port = _free_port()
    procs = []
    for pid in range(2):
        argv = _argv(config, tmp_path, workdir, model) + [
            "--set", f"embed.cache_dir={cache}/p{pid}", "--distributed",
            "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(pid)]
        procs.append(subprocess.Popen(argv, env=_env(4), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    return procs


def _rows(workdir):
    return [(r["path"], r["predicted_class"]) for r in csv.DictReader(open(workdir / "predictions.csv"))]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    _write_pool(tmp / "pool", n_per_class=7)
    return tmp, write_tiny_clip(tmp / "clip")


@pytest.mark.parametrize("method", METHODS)
def test_two_processes_match_one(setup, method):
    tmp, model = setup
    config = f"configs/{method}.py"
    single = tmp / f"single_{method}"
    subprocess.run(_argv(config, tmp, single, model) + ["--set", f"embed.cache_dir={tmp}/c1"],
                   env=_env(8), check=True, capture_output=True, timeout=300)
    multi = tmp / f"multi_{method}"
    procs = _launch(config, tmp, multi, model, tmp / "c2")
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert "embedding pool items [0, 12) of 23" in logs[0] and "[12, 23) of 23" in logs[1]
    assert _rows(multi) == _rows(single)
    assert (multi / "classifier" / "meta.json").is_file()


def test_a_killed_process_stops_the_other_without_an_artifact(setup):
    tmp, model = setup
    workdir = tmp / "killed"
    procs = _launch("configs/zero_shot.py", tmp, workdir, model, tmp / "c3")
    # Kill process 1 as soon as it has joined the job (it prints its slice once connected).
    for line in procs[1].stdout:
        if "embedding pool items" in line:
            break
    procs[1].send_signal(signal.SIGKILL)
    start = time.monotonic()
    out = procs[0].communicate(timeout=120)[0]
    elapsed = time.monotonic() - start
    assert procs[0].returncode != 0
    assert elapsed < 90
    assert "task" in out.lower() or "heartbeat" in out.lower() or "error" in out.lower()
    assert not (workdir / "classifier").exists() and not (workdir / "metrics.json").exists()
