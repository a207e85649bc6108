"""Reads the metrics.json of run_fashion.sh's runs and prints the Markdown table of the README.

    python experiments/graph_methods/collect.py RUNS_DIR     (RUNS_DIR/<variant>/<preset>/metrics.json)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def pct(x):
    return "-" if x is None else f"{100 * x:.2f}"


def main(root: str) -> None:
    rows = []
    for path in sorted(Path(root).glob("*/*/metrics.json")):
        m = json.loads(path.read_text())
        variant, preset = path.parent.parent.name, path.parent.name
        gain = None if m["accuracy"] is None else m["accuracy"] - m["centered_zero_shot_accuracy"]
        rows.append((variant, preset, pct(m["zero_shot_accuracy"]), pct(m["centered_zero_shot_accuracy"]),
                     pct(m["accuracy"]), f"{100 * gain:+.2f}" if gain is not None else "-",
                     pct(m["head_accuracy"]), f"{m['seconds']['method']:.0f}"))
    print("| variant | pool | zero-shot (inductive) | centred zero-shot | method (transductive) | gain | head (inductive) | method s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/graph_methods")
