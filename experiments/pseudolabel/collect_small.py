"""Per-run lines and per-round figures of small-pool runs (issue 20):
python experiments/pseudolabel/collect_small.py RUN_DIR...

For each run folder with a metrics.json: pool size, seed, floor, steps per round, centred zero-shot,
last-round accuracy, gain, method seconds, and per round (pseudo-label accuracy / pool accuracy).
"""
import json
import sys
from pathlib import Path

for d in map(Path, sys.argv[1:]):
    f = d / "metrics.json"
    if not f.is_file():
        print(f"{d}: no metrics.json (running or failed)")
        continue
    m = json.loads(f.read_text())
    acc, czs = 100 * m["accuracy"], 100 * m["centered_zero_shot_accuracy"]
    sched = m.get("schedule", {})
    steps = sched.get("steps") or [r.get("schedule", {}).get("steps") for r in m.get("per_round", [])]
    print(f"{d.name}: n={m.get('n_images', m.get('pool_size', '?'))} min_steps_per_epoch={sched.get('min_steps_per_epoch', m.get('stage3_schedule', {}).get('min_steps_per_epoch', 0))} "
          f"acc {acc:.2f} czs {czs:.2f} gain {acc - czs:+.2f} method {m['seconds']['method']:.0f}s steps {steps}")
    rounds = m.get("rounds") or []
    if rounds:
        print("   rounds pseudo/pool: " + "  ".join(
            f"{r.get('pseudo_label_accuracy', 0) * 100:.1f}/{(r.get('pool_accuracy') or 0) * 100:.1f}" for r in rounds))
