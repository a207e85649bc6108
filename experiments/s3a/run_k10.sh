#!/bin/bash
# Issue 28 runs: S3A with K = 10 given and the 1-template vocabulary classifier, from the repo root.
#   bash experiments/s3a/run_k10.sh OUT_DIR PRESET [--set KEY=VALUE ...]
# e.g. bash experiments/s3a/run_k10.sh runs/s28/selC fashion_mnist --set pool.split=train \
#        --set pool.limit=1000 --set pool.seed=1      (then python experiments/s3a/collect.py runs/s28/selC)
set -e
out=$1; preset=$2; shift 2
nice -n 5 python -m adapt.cli run "configs/s3a.py:$preset" --workdir "$out" \
  --set method_args.k=10 --set "prompts.templates=['a photo of a {}.']" "$@"
