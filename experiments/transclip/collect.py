"""The table of experiments/transclip/README.md from the runs of run_fashion.sh:
python experiments/transclip/collect.py OUT"""
import json
import sys
from pathlib import Path

print("| method | pool | features | zero-shot (model) | zero-shot (cosine) | centred zero-shot | method | head | s |")
print("|---|---|---|---|---|---|---|---|---|")
for run in sorted(Path(sys.argv[1]).glob("*/metrics.json")):
    m = json.loads(run.read_text())
    name = run.parent.name
    pool = "inverted" if "inverted" in name else "as given"
    feats = "CL2N-centred" if m["centered"] else "raw (official)"
    print(f"| {m['method']} | {pool} | {feats} | {100 * m['zero_shot_accuracy']:.2f} | "
          f"{100 * m['cosine_zero_shot_accuracy']:.2f} | "
          f"{100 * m['centered_zero_shot_accuracy']:.2f} | **{100 * m['accuracy']:.2f}** | "
          f"{100 * m['head_accuracy']:.2f} | {m['seconds'].get('method', float('nan')):.0f} |")
