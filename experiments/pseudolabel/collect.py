"""Table of pseudolabel runs: python experiments/pseudolabel/collect.py RUNS_DIR

Groups runs/<prompt>_<strategy>_s<seed>/metrics.json by (prompt, strategy); mean and std over
seeds of the last-round accuracy, the centred zero-shot of the same runs, and the gain.
"""
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/pseudolabel")
groups = defaultdict(list)
for f in sorted(root.glob("*_s*/metrics.json")):
    m = json.loads(f.read_text())
    groups[(m["prompt"], m["strategy"])].append(m)
print("| prompt | strategy | seeds | epochs | batch | accuracy (mean ± std) | centred zero-shot | gain | head | method s |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (p, s), ms in sorted(groups.items()):
    acc = np.array([m["accuracy"] for m in ms]) * 100
    czs = np.array([m["centered_zero_shot_accuracy"] for m in ms]) * 100
    head = np.array([m["head_accuracy"] for m in ms]) * 100
    secs = np.mean([m["seconds"]["method"] for m in ms])
    print(f"| {p} | {s} | {len(ms)} | {ms[0]['epochs']} | {ms[0]['batch_size']} | {acc.mean():.2f} ± {acc.std():.2f} "
          f"| {czs.mean():.2f} | {acc.mean() - czs.mean():+.2f} | {head.mean():.2f} | {secs:.0f} |")
