"""Tables of experiments/class_texts/README.md from the run folders of run.sh.

Usage: python experiments/class_texts/collect.py RUNS_DIR
Reads RUNS/<pool>/<method>/<variant>/metrics.json; prints, per technique, accuracy (%) of the row it
is added to, with it, and the difference, for zero_shot and zlap on each pool.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

POOLS = ("fashion_mnist", "fashion_mnist_inverted", "digits", "textures")
METHODS = ("zero_shot", "zlap")
# technique -> (the row it is added to, the row with it)
COMPARISONS = {
    "CLIP-80 templates, uniform (vs the single template)": ("base", "clip80"),
    "ZPE softmax over CLIP-80 (vs CLIP-80 uniform)": ("clip80", "zpe"),
    "ZPE top-n over CLIP-80 (vs CLIP-80 uniform)": ("clip80", "zpe_top"),
    "ZPE softmax over CLIP-80 (vs the single template)": ("base", "zpe"),
    "REAL-Prompt, most frequent synonym": ("base", "real_frequent"),
    "REAL-Prompt, synonym ensemble": ("base", "real_ensemble"),
    "Loki, WordNet metric (auto)": ("base", "loki"),
    "Loki, text metric (self-derived from the class embeddings)": ("base", "loki_text"),
}


def read(runs: Path, pool: str, method: str, variant: str) -> dict | None:
    path = runs / pool / method / variant / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def table(runs: Path, before: str, after: str) -> list[str]:
    lines = ["| pool | zero_shot | + it | change | zlap | + it | change |", "|---|---|---|---|---|---|---|"]
    for pool in POOLS:
        cells = [pool]
        for method in METHODS:
            a, b = read(runs, pool, method, before), read(runs, pool, method, after)
            va, vb = (a or {}).get("accuracy"), (b or {}).get("accuracy")
            diff = "-" if va is None or vb is None else f"{100 * (vb - va):+.2f}"
            cells += [pct(va), pct(vb), diff]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def notes(runs: Path) -> list[str]:
    """What each option did on each pool (names used, ZPE's effective template count, Loki's metric)."""
    out = []
    for pool in POOLS:
        for variant in ("zpe", "zpe_top", "real_frequent", "real_ensemble", "loki"):
            m = read(runs, pool, "zero_shot", variant)
            if m is None:
                continue
            rec = m.get("class_texts") or {}
            if variant.startswith("zpe"):
                out.append(f"- {pool} {variant}: effective templates {rec.get('zpe_effective_templates')}, "
                           f"best {rec.get('zpe_best', [])[:3]}")
            elif variant.startswith("real"):
                out.append(f"- {pool} {variant}: names used {rec.get('names_used')}")
            else:
                d = m.get("decision", {})
                out.append(f"- {pool} loki: metric {d.get('metric')}, predictions changed {d.get('changed')}")
    return out


def main(argv=None) -> int:
    runs = Path((argv or sys.argv[1:] or ["runs/class_texts"])[0])
    for title, (before, after) in COMPARISONS.items():
        print(f"\n### {title}\n")
        print("\n".join(table(runs, before, after)))
    print("\n### What the options did (zero_shot runs)\n")
    print("\n".join(notes(runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
