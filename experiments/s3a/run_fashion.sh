#!/usr/bin/env bash
# The Fashion-MNIST runs of experiments/s3a/README.md, then the table. Usage: run_fashion.sh [RUNS_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/s3a}
adapt run configs/s3a.py:fashion_mnist --workdir "$out/fm_estimate" --quiet
adapt run configs/s3a.py:fashion_mnist --workdir "$out/fm_k10" --quiet --set method_args.k=10
adapt run configs/s3a.py:fashion_mnist_inverted --workdir "$out/fm_inverted_estimate" --quiet
python experiments/s3a/collect.py "$out"/fm_estimate "$out"/fm_k10 "$out"/fm_inverted_estimate
