"""Wall time of one job as 1 process vs 2 local processes (JAX multi-controller, gloo on CPU).

Each run uses a fresh embedding cache, so the embedding is measured too. Both runs must agree on
every prediction.

  python experiments/multiprocess/timing.py --limit 512 --out experiments/multiprocess/results.json
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time


def _argv(workdir, cache, limit, config):
    return [sys.executable, "-m", "adapt.cli", "run", config, "--workdir", workdir, "--quiet",
            "--set", f"pool.limit={limit}", "--set", f"embed.cache_dir={cache}"]


def _rows(workdir):
    return [(r["path"], r["predicted_class"]) for r in csv.DictReader(open(f"{workdir}/predictions.csv"))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/zero_shot.py:digits")
    ap.add_argument("--limit", type=int, default=512)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    t = time.perf_counter()
    subprocess.run(_argv(f"{tmp}/one", f"{tmp}/c1", args.limit, args.config), env=env, check=True)
    one = time.perf_counter() - t
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    t = time.perf_counter()
    procs = [subprocess.Popen(_argv(f"{tmp}/two", f"{tmp}/c2/{i}", args.limit, args.config) + [
        "--distributed", "--coordinator", f"localhost:{port}", "--num-processes", "2",
        "--process-id", str(i)], env=env) for i in range(2)]
    assert [p.wait() for p in procs] == [0, 0]
    two = time.perf_counter() - t
    same = _rows(f"{tmp}/one") == _rows(f"{tmp}/two")
    seconds = {k: json.load(open(f"{tmp}/{k}/metrics.json"))["seconds"] for k in ("one", "two")}
    result = dict(config=args.config, images=args.limit, cores=os.cpu_count(),
                  wall_s_1_process=round(one, 1), wall_s_2_processes=round(two, 1),
                  ratio_2_over_1=round(two / one, 2), same_predictions=same, stage_seconds=seconds)
    print(json.dumps(result, indent=1))
    if args.out:
        json.dump(result, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
