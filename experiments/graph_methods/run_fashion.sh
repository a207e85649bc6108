#!/usr/bin/env bash
# Every graph method on Fashion-MNIST test (as given and inverted) with the offline default model,
# default hyperparameters, then the reported variants.
# Usage: run_fashion.sh [RUNS_DIR [--set key=value ...]]; the --set arguments go to every run
# (e.g. `--set pool.split=train --set pool.limit=10000` for the held-out validation pool).
set -euo pipefail
RUNS=${1:-runs/graph_methods}
shift || true
for preset in fashion_mnist fashion_mnist_inverted; do
  for method in zlap laplacian hypergraph; do
    adapt run configs/$method.py:$preset --workdir "$RUNS/$method/$preset" "$@"
  done
  adapt run configs/laplacian.py:$preset --workdir "$RUNS/slk/$preset" --set method_args.variant=slk "$@"
  adapt run configs/hypergraph.py:$preset --workdir "$RUNS/hypergraph_all_views/$preset" \
    --set method_args.views=all "$@"
  adapt run configs/hypergraph.py:$preset --workdir "$RUNS/hypergraph_text/$preset" \
    --set method_args.prototypes=text "$@"
  adapt run configs/laplacian.py:$preset --workdir "$RUNS/rectified_nearest/$preset" --set method_args.lam=0.0 "$@"
done
python experiments/graph_methods/collect.py "$RUNS"
