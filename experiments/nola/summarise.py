"""Markdown table of NoLA runs: each stage's pool accuracy next to the zero-shot references.

  python experiments/nola/summarise.py runs/nola_fm runs/nola_fm_own_stage
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def row(workdir: Path) -> str:
    m = json.loads((workdir / "metrics.json").read_text())
    stage = {r["round"]: r for r in m["rounds"]}
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    tower = f"{m['second_tower']['name']} ({m['second_tower']['dim']}-d)"
    gain = m["accuracy"] - m["centered_zero_shot_accuracy"]
    return " | ".join([workdir.name, tower, pct(m["zero_shot_accuracy"]), pct(m["centered_zero_shot_accuracy"]),
                       pct(stage[1]["pool_accuracy"]), pct(stage[1]["pseudo_label_accuracy"]),
                       pct(stage[2]["pool_accuracy"]), pct(stage[3]["pool_accuracy"]), pct(m["accuracy"]),
                       f"{100 * gain:+.1f}"])


def main(paths) -> None:
    print("| run | second tower | zero-shot | centred zero-shot | 1 CDE | CDE subset D_k | 2 labeller "
          "| 3 tuned | reported (artifact) | vs centred |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p in paths:
        print(f"| {row(Path(p))} |")


if __name__ == "__main__":
    main(sys.argv[1:])
