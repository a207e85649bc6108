#!/usr/bin/env bash
# The one choice of this experiment, made on held-out data before the test runs (README "Rule"):
# prompts.zpe_top in {0 (softmax over all), 5, 10, 20} with the clip80 templates, zero_shot on the
# first 2,000 Fashion-MNIST train images (as given); the highest accuracy wins, ties to the smaller
# index in that list. Usage: choose_zpe_top.sh RUNS_DIR
set -euo pipefail
RUNS=${1:-runs/class_texts}
for top in 0 5 10 20; do
  out="$RUNS/choose/zpe_top_$top"
  [ -f "$out/metrics.json" ] || nice python -m adapt.cli run configs/zero_shot.py:fashion_mnist --quiet \
    --workdir "$out" --set pool.split=train --set pool.limit=2000 --set prompts.template_set=clip80 \
    --set prompts.weighting=zpe --set prompts.zpe_top=$top
done
for top in 0 5 10 20; do
  python -c "import json,sys; m=json.load(open(sys.argv[1])); print('zpe_top', sys.argv[2], 'accuracy', m['accuracy'])" \
    "$RUNS/choose/zpe_top_$top/metrics.json" $top
done
