"""Writing time and size of report.html on a large synthetic pool (no model, no embedding).

    python experiments/report/bench_report.py --n 100000 --classes 10 --out /tmp/report_bench

An `ArrayPool` of N random 28x28 images, fake probabilities (N, C) (softmax of seeded normal
logits) and a fake centred zero-shot prediction that differs on 10% of the rows, so the
transductive "what moved" section is drawn too. Prints one JSON line: seconds, report.html bytes,
thumbnails made and their bytes.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from adapt.data import ArrayPool
from adapt.output import html as report_html


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--out", default="/tmp/report_bench")
    args = p.parse_args()
    n, c = args.n, args.classes
    rng = np.random.default_rng(0)
    pool = ArrayPool(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), name="synthetic")
    logits = rng.normal(size=(n, c)).astype(np.float32) * 3
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    pred = probs.argmax(1)
    centred = pred.copy()
    moved = rng.random(n) < 0.1
    centred[moved] = rng.integers(0, c, int(moved.sum()))
    metrics = dict(method="synthetic", setting="transductive", model="none", n_images=n, n_embedded=n,
                   n_skipped=0, accuracy=None, zero_shot_accuracy=None, centered_zero_shot_accuracy=None)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    report_html.write(out_dir, pool=pool, kept=np.arange(n), out=SimpleNamespace(probs=probs, predictions=pred),
                      baselines={"centered": centred}, labels=None, class_names=[f"class {k}" for k in range(c)],
                      metrics=metrics, skipped=[], plots=[])
    seconds = time.perf_counter() - t
    thumbs = list((out_dir / "thumbs").iterdir())
    print(json.dumps(dict(n=n, classes=c, seconds=round(seconds, 3),
                          html_bytes=(out_dir / "report.html").stat().st_size, thumbnails=len(thumbs),
                          thumbnail_bytes=sum(f.stat().st_size for f in thumbs))))


if __name__ == "__main__":
    main()
