"""The table of experiments/transductive/README.md from the runs of run.sh:
python experiments/transductive/collect.py RUNS [GRIP_RUN_DIR]"""
import json
import sys
from pathlib import Path


def pct(v):
    return "-" if v is None else f"{100 * v:.2f}"


def row(name, pool, m):
    gain = 100 * (m["accuracy"] - m["centered_zero_shot_accuracy"])
    secs = m.get("seconds", {}).get("method", float("nan"))
    print(f"| {name} | {pool} | {pct(m.get('cosine_zero_shot_accuracy'))} | "
          f"{pct(m['centered_zero_shot_accuracy'])} | **{pct(m['accuracy'])}** | {gain:+.2f} | "
          f"{pct(m.get('head_accuracy'))} | {secs:.0f} |")


print("| method | pool | cosine zero-shot | centred zero-shot | method | gain over centred | head | method s |")
print("|---|---|---|---|---|---|---|---|")
runs = Path(sys.argv[1])
for pool in ("fashion_mnist", "fashion_mnist_inverted"):
    for method in ("zlap", "laplacian", "hypergraph", "transclip", "stata", "inmap"):
        f = runs / method / pool / "metrics.json"
        if f.is_file():
            row(method, "as given" if pool == "fashion_mnist" else "inverted", json.loads(f.read_text()))
if len(sys.argv) > 2:
    row("visual GRIP (seed 0)", "as given", json.loads((Path(sys.argv[2]) / "metrics.json").read_text()))
for f in sorted(runs.glob("chain_grip_*/fashion_mnist/metrics.json")):
    m = json.loads(f.read_text())
    row(f"visual GRIP -> {m['method']}", "as given", m)
