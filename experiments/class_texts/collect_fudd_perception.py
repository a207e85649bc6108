"""Table of the FuDD / PerceptionCLIP runs: python experiments/class_texts/collect_fudd_perception.py RUNS"""
import json
import sys
from pathlib import Path


def acc(path):
    f = Path(path) / "metrics.json"
    if not f.is_file():
        return None, None
    m = json.loads(f.read_text())
    return m.get("accuracy"), m.get("accuracy_before_decision")


def pct(v):
    return "-" if v is None else f"{100 * v:.2f}"


def main(runs):
    runs = Path(runs)
    print("| held-out run (FM train 10k, zero_shot) | accuracy | before decision |\n|---|---|---|")
    for d in sorted((runs / "select").glob("*/")):
        a, b = acc(d)
        print(f"| {d.name} | {pct(a)} | {pct(b)} |")
    print()
    print("| pool | method | plain | + FuDD | + PerceptionCLIP |\n|---|---|---|---|---|")
    for preset in ("fashion_mnist", "fashion_mnist_inverted", "digits", "textile"):
        for method in ("zero_shot", "zlap"):
            cells = [pct(acc(runs / "grid" / f"{method}_{preset}_{v}")[0]) for v in ("plain", "fudd", "context")]
            print(f"| {preset} | {method} | " + " | ".join(cells) + " |")
    for d in sorted((runs / "grid").glob("*ungrounded/")):
        print(f"\n{d.name}: {pct(acc(d)[0])}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/class_texts")
