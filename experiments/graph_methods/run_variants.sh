#!/usr/bin/env bash
# The three held-out candidates of README section 1c on both pools (as given, inverted).
# Usage: run_variants.sh RUNS_DIR [--set key=value ...]; the --set arguments go to every run.
set -euo pipefail
RUNS=$1
shift
for preset in fashion_mnist fashion_mnist_inverted; do
  adapt run configs/zlap.py:$preset --workdir "$RUNS/zlap_rectified/$preset" \
    --set method_args.classifier=rectified --set method_args.k=10 --set method_args.gamma=3.0 \
    --set method_args.scale_sim=True "$@"
  adapt run configs/laplacian.py:$preset --workdir "$RUNS/laplacian_rectified/$preset" \
    --set method_args.prototypes=rectified "$@"
  adapt run configs/hypergraph.py:$preset --workdir "$RUNS/hypergraph_p20/$preset" \
    --set method_args.propagations=20 "$@"
done
python experiments/graph_methods/collect.py "$RUNS"
