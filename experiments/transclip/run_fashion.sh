#!/usr/bin/env bash
# TransCLIP-ZS and StatA on Fashion-MNIST test (as given and inverted), the default (center=True)
# and the official raw features (center=False); one run each. Usage: run_fashion.sh OUT [--set ...]
set -euo pipefail
out=${1:?usage: run_fashion.sh OUT [--set key=value ...]}; shift
for method in transclip stata; do
  for preset in fashion_mnist fashion_mnist_inverted; do
    for center in True False; do
      python -m adapt.cli run "$method:$preset" --workdir "$out/${method}_${preset}_center$center" \
        --set method_args.center=$center "$@"
    done
  done
done
