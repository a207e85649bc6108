#!/usr/bin/env bash
# Every transductive method of the engine on Fashion-MNIST test (as given and inverted), offline
# default model, each method's default config, one run each; then the chains from a visual GRIP
# run (as given only: the GRIP run is on that pool).
# Usage: run.sh RUNS_DIR [GRIP_RUN_DIR]   (python -m adapt.cli: the checkout's code runs)
set -euo pipefail
RUNS=${1:-runs/transductive}
GRIP=${2:-}
for preset in fashion_mnist fashion_mnist_inverted; do
  for method in zlap laplacian hypergraph transclip stata inmap; do
    [ -f "$RUNS/$method/$preset/metrics.json" ] || \
      python -m adapt.cli run "configs/$method.py:$preset" --workdir "$RUNS/$method/$preset" --quiet
  done
done
if [ -n "$GRIP" ]; then
  for method in transclip zlap stata laplacian; do
    [ -f "$RUNS/chain_grip_$method/fashion_mnist/metrics.json" ] || \
      python -m adapt.cli run "configs/$method.py:fashion_mnist" --quiet \
        --workdir "$RUNS/chain_grip_$method/fashion_mnist" --set "init.from=$GRIP"
  done
fi
python experiments/transductive/collect.py "$RUNS" $GRIP
