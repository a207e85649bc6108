"""Our MSM against the NumPy restatement of the official all-pairs loop, side by side in one run.

Same inputs for both: N images, a G x G patch grid, L layers of C channels (random unit patch
features, seeded). Times exclude our one-off compilation (reported separately). Memory: our
compiled program's temporary buffers (XLA memory analysis) against the official loop's peak NumPy
allocation (tracemalloc over two iterations: every iteration allocates the same), per N.

  python experiments/musc/bench_msm.py                       # N=100, 28x28, 3 layers, C=40
  python experiments/musc/bench_msm.py --channels 768 --n 40 --layers 1
  python experiments/musc/bench_msm.py --gpu-category        # seconds per 200-image category, 37x37
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from adapt.anomaly import msm  # noqa: E402
from adapt.core import mesh as mesh_lib  # noqa: E402
from tests import reference_musc as ref  # noqa: E402


def unit_features(rng, n, p, c):
    z = rng.normal(size=(n, p, c)).astype(np.float32)
    return z / np.linalg.norm(z, axis=-1, keepdims=True)


def ours(z, mesh, schedule, precision, tile_mb):
    """Returns (compiled function on the padded, sharded input, the input, n)."""
    n, p, _ = z.shape
    lo, hi = msm.rank_window(n, 0.3)
    b, n_pad = msm.layout(n, mesh.devices.size, msm.auto_block(p, tile_mb))
    x = np.zeros((n_pad, *z.shape[1:]), np.float32)
    x[:n] = z
    xs, _ = mesh_lib.shard_rows(x, mesh)
    fn = msm._compiled(mesh, n, lo, hi, b, schedule, precision)
    return fn, xs


def temp_mb(fn, xs) -> float:
    mem = fn.lower(xs).compile().memory_analysis()
    return None if mem is None else mem.temp_size_in_bytes / 2**20


def official_peak_mb(z) -> float:
    tracemalloc.start()
    ref.official_msm(z, rows=[0, 1])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--grid", type=int, default=28)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--channels", type=int, default=40)
    ap.add_argument("--tile-mb", type=float, default=0.0)
    ap.add_argument("--memory-ns", default="50,100,200,400")
    ap.add_argument("--skip-official", action="store_true")
    ap.add_argument("--gpu-category", action="store_true",
                    help="time 200 images at 37x37 x 1024 channels x 4 layers x 3 degrees (ours only)")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    mesh = mesh_lib.make_mesh()
    rng = np.random.default_rng(0)
    info = dict(backend=jax.default_backend(), devices=mesh.devices.size, cpu=platform.processor(),
                date=time.strftime("%Y-%m-%d"))
    if a.gpu_category:
        return gpu_category(mesh, rng, a, info)
    p = a.grid * a.grid
    layers = [unit_features(rng, a.n, p, a.channels) for _ in range(a.layers)]
    result = dict(info, n=a.n, grid=a.grid, layers=a.layers, channels=a.channels, rows=[])
    want = None
    if not a.skip_official:
        t = time.perf_counter()
        want = [ref.official_msm(z) for z in layers]
        t_off = time.perf_counter() - t
        result["rows"].append(dict(impl="official loop, NumPy fp32", seconds=t_off))
        print(f"official: {t_off:.1f}s", flush=True)
    for schedule, precision in (("symmetric", "float32"), ("stream", "float32"), ("symmetric", "bfloat16")):
        fns = [ours(z, mesh, schedule, precision, a.tile_mb) for z in layers]
        t = time.perf_counter()
        for fn, xs in fns[:1]:
            fn(xs).block_until_ready()
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        got = [np.asarray(fn(xs))[: a.n] for fn, xs in fns]
        sec = time.perf_counter() - t
        row = dict(impl=f"ours {schedule} {precision}", seconds=sec, first_call_seconds=compile_s)
        if want is not None:
            row["max_abs_diff"] = float(max(np.abs(g - w).max() for g, w in zip(got, want)))
            row["speedup"] = result["rows"][0]["seconds"] / sec
        result["rows"].append(row)
        print(json.dumps(row), flush=True)
    mem = []
    for n in [int(v) for v in a.memory_ns.split(",") if v]:
        z = unit_features(rng, n, p, a.channels)
        row = dict(n=n, official_mb=None if a.skip_official else official_peak_mb(z))
        for schedule in ("symmetric", "stream"):
            row[f"ours_{schedule}_mb"] = temp_mb(*ours(z, mesh, schedule, "float32", a.tile_mb))
        mem.append(row)
        print(json.dumps(row), flush=True)
    result["memory"] = mem
    print_table(result)
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))


def gpu_category(mesh, rng, a, info, n=200, grid=37, c=1024):
    """One MSM set of n images x grid^2 patches x c channels, timed; x12 for the default 4 layers
    x 3 degrees (LNAMD and the rest are negligible next to it)."""
    p = grid * grid
    fn_rows = []
    z = unit_features(rng, n, p, c)
    for precision in ("float32", "bfloat16"):
        fn, xs = ours(z, mesh, "symmetric", precision, a.tile_mb)
        fn(xs).block_until_ready()
        t = time.perf_counter()
        fn(xs).block_until_ready()
        one = time.perf_counter() - t
        fn_rows.append(dict(precision=precision, n=n, patches=p, channels=c, seconds_one_set=one,
                            seconds_12_sets=12 * one))
        print(json.dumps(dict(info, **fn_rows[-1])), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(dict(info, rows=fn_rows), indent=1))


def print_table(r):
    print(f"\nN={r['n']}, {r['grid']}x{r['grid']} patches, {r['layers']} layers, C={r['channels']}, "
          f"{r['backend']} x{r['devices']}")
    print("| implementation | seconds | speed-up | max abs diff |\n|---|---|---|---|")
    for row in r["rows"]:
        sp = f"{row['speedup']:.1f}x" if "speedup" in row else ""
        diff = f"{row['max_abs_diff']:.1e}" if "max_abs_diff" in row else ""
        print(f"| {row['impl']} | {row['seconds']:.1f} | {sp} | {diff} |")
    print("\n| N | official peak MB | ours symmetric temp MB | ours stream temp MB |\n|---|---|---|---|")
    for m in r["memory"]:
        off = "" if m["official_mb"] is None else f"{m['official_mb']:.0f}"
        print(f"| {m['n']} | {off} | {m['ours_symmetric_mb']:.1f} | {m['ours_stream_mb']:.1f} |")


if __name__ == "__main__":
    main()
