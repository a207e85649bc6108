"""Markdown rows of LaFTer runs: each stage's pool accuracy next to the same run's zero-shot references.

  python experiments/lafter/summarise.py runs/lafter_fm runs/lafter_fm_inv
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def row(workdir: Path) -> str:
    m = json.loads((workdir / "metrics.json").read_text())
    stage = {r["round"]: r for r in m["rounds"]}
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    gain = lambda v: f"{100 * (v - m['centered_zero_shot_accuracy']):+.1f}"  # noqa: E731
    return " | ".join([workdir.name, m.get("pool", {}).get("name", "") if isinstance(m.get("pool"), dict) else "",
                       pct(m["zero_shot_accuracy"]), pct(m["centered_zero_shot_accuracy"]),
                       pct(stage[1]["pool_accuracy"]), gain(stage[1]["pool_accuracy"]),
                       pct(stage[2]["pool_accuracy"]), pct(m["accuracy"]), gain(m["accuracy"])])


def main(paths) -> None:
    print("| run | pool | zero-shot | centred zero-shot | 1 text (teacher) | 1 vs centred | 2 tuned "
          "| reported (artifact) | reported vs centred |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in paths:
        print(f"| {row(Path(p))} |")


if __name__ == "__main__":
    main(sys.argv[1:])
