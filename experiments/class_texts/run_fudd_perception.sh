#!/usr/bin/env bash
# FuDD and PerceptionCLIP (issue #25, part C): selection on held-out data, then every pool.
#   experiments/class_texts/run_fudd_perception.sh RUNS      (then collect_fudd_perception.py RUNS)
# Each run: python -m adapt.cli run configs/<method>.py:<preset> --workdir RUNS/<...> [--set ...]
set -euo pipefail
RUNS=${1:?usage: run_fudd_perception.sh RUNS}
run() {  # run WORKDIR CONFIG [--set ...]: skipped when WORKDIR/metrics.json exists
  local wd=$1; shift
  [ -f "$wd/metrics.json" ] && return 0
  echo "== $wd: $*"
  nice python -m adapt.cli run "$@" --workdir "$wd" --quiet > "$wd.log" 2>&1 || echo "FAILED $wd (see $wd.log)"
}
mkdir -p "$RUNS/select" "$RUNS/grid"
# 1. Selection, written before any test run: held-out pool = the first 10,000 Fashion-MNIST TRAIN
#    images, zero_shot, argmax accuracy against their labels; fudd_k from {2, 3, 5} (ties: smaller),
#    PerceptionCLIP mode from {infer, marginal} with the paper's ClassAttr inference (tau 1, all 5
#    built-in attribute families). The chosen values are then used on every pool below.
HELD="--set pool.split=train --set pool.limit=10000"
for k in 2 3 5; do
  run "$RUNS/select/fudd_k$k" configs/zero_shot.py:fashion_mnist $HELD --set decision.rule=fudd --set decision.fudd_k=$k
done
for mode in infer marginal; do
  run "$RUNS/select/context_$mode" configs/zero_shot.py:fashion_mnist $HELD --set prompts.context=$mode
done
pick() {  # pick PREFIX VALUES...: the value whose held-out run is most accurate (first on ties)
  python - "$RUNS/select" "$@" <<'PY'
import json, sys
root, prefix, values = sys.argv[1], sys.argv[2], sys.argv[3:]
accs = [json.load(open(f"{root}/{prefix}{v}/metrics.json"))["accuracy"] for v in values]
print(values[max(range(len(values)), key=lambda i: (accs[i], -i))])
PY
}
K=$(pick fudd_k 2 3 5); MODE=$(pick context_ infer marginal)
echo "selected on held-out: fudd_k=$K, prompts.context=$MODE"
# 2. Each technique alone on top of zero_shot and of ZLaP, four pools, one run each.
for preset in fashion_mnist fashion_mnist_inverted digits textile; do
  for method in zero_shot zlap; do
    run "$RUNS/grid/${method}_${preset}_plain" configs/$method.py:$preset
    run "$RUNS/grid/${method}_${preset}_fudd" configs/$method.py:$preset --set decision.rule=fudd --set decision.fudd_k=$K
    run "$RUNS/grid/${method}_${preset}_context" configs/$method.py:$preset --set prompts.context=$MODE
  done
done
# 3. What the offline model's WordNet grounding hides: FuDD descriptions encoded without the class name.
for preset in fashion_mnist fashion_mnist_inverted; do
  run "$RUNS/grid/zero_shot_${preset}_fudd_ungrounded" configs/zero_shot.py:$preset --set decision.rule=fudd \
    --set decision.fudd_k=$K --set decision.fudd_grounded=False
done
