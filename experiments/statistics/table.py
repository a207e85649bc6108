"""Prints the tables of README.md from sweep.py's output (one JSON line per variant).

  python experiments/statistics/table.py fm.jsonl digits.jsonl
"""
import json
import sys


def pct(v):
    return "-" if v is None else f"{100 * v:.2f}"


def main(files):
    for path in files:
        rows = [json.loads(line) for line in open(path)]
        by = {(r["method"], tuple(r["overrides"])): r for r in rows}
        base = by.get(("zero_shot_baselines", ()), {})
        pool = rows[0]["pool"]

        def acc(method, *overrides):
            return pct(by.get((method, tuple(overrides)), {}).get("accuracy"))

        print(f"\n{pool}: no labels\n\n| method | accuracy |\n|---|---|")
        print(f"| zero-shot (cosine) | {pct(base.get('cosine'))} |")
        if "class_map" in base:
            print(f"| zero-shot (ImageNet class map, the engine's default head) | {pct(base['class_map'])} |")
        print(f"| centred zero-shot | {pct(base.get('centered'))} |")
        print(f"| TransCLIP-ZS | {acc('transclip')} |")
        print(f"| GDA-EM | {acc('gda')} |")
        print(f"\n{pool}: labels per class\n\n| labels per class | few-shot prototypes | TEEN (text bases) "
              "| TEEN (pool bases) | GDA |\n|---|---|---|---|---|")
        for k in (1, 2, 4):
            n = f"method_args.labels_per_class={k}"
            print(f"| {k} | {acc('teen', 'method_args.base=text', 'method_args.lam=1.0', n)} "
                  f"| {acc('teen', 'method_args.base=text', 'method_args.lam=0.5', n)} "
                  f"| {acc('teen', 'method_args.base=pool', 'method_args.lam=0.5', n)} "
                  f"| {acc('gda', 'method_args.setting=ssl', n)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
