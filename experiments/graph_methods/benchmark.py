"""Ours vs the NumPy/SciPy restatement, side by side in one run: time and peak memory.

    python experiments/graph_methods/benchmark.py [--n 50000] [--scaling 12500,25000] [--out DIR]

For ZLaP and LaplacianShot (text mode) it runs, one process each, our jitted implementation and the
restatement (tests/reference_graph.py) on the same synthetic pool (N x 512, 10 classes, k 10),
then our implementation at the smaller scaling sizes for the memory-vs-N curve. Writes
results/<methods>_<N>.json (or --out) and prints a Markdown table (README.md quotes it).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def one(impl, method, n, k, save):
    cmd = [sys.executable, str(HERE / "bench_one.py"), "--impl", impl, "--method", method, "--n", str(n),
           "--k", str(k), "--save", save]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=HERE.parents[1]).stdout
    row = json.loads(out.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--scaling", default="12500,25000")
    p.add_argument("--methods", default="zlap,laplacian")
    p.add_argument("--out", default="", help="JSON file; default results/<methods>_<N>.json")
    a = p.parse_args()
    out = Path(a.out or HERE / "results" / f"{a.methods.replace(',', '_')}_{a.n}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in a.methods.split(","):
            preds = {}
            for impl in ("ours", "reference"):
                path = f"{tmp}/{method}_{impl}.npy"
                rows.append(one(impl, method, a.n, a.k, path))
                preds[impl] = np.load(path)
            rows[-1]["agreement_with_ours"] = rows[-2]["agreement_with_ours"] = \
                round(float((preds["ours"] == preds["reference"]).mean()), 5)
            for n in [int(s) for s in a.scaling.split(",") if s]:
                rows.append(one("ours", method, n, a.k, f"{tmp}/scaling.npy"))
    out.write_text(json.dumps(rows, indent=1))
    print("\n| method | impl | N | seconds | peak RSS (MB) | accuracy | agreement |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['impl']} | {r['n']} | {r['seconds']} | {r['peak_rss_mb']} | "
              f"{r['accuracy']} | {r.get('agreement_with_ours', '')} |")
    for method in a.methods.split(","):
        ours = next(r for r in rows if r["method"] == method and r["impl"] == "ours" and r["n"] == a.n)
        ref = next(r for r in rows if r["method"] == method and r["impl"] == "reference")
        print(f"{method}: speed-up {ref['seconds'] / ours['seconds']:.2f}x, "
              f"memory ratio {ref['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x")


if __name__ == "__main__":
    main()
