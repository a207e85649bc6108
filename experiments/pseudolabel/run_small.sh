#!/usr/bin/env bash
# One visual GRIP run on a Fashion-MNIST subsample with the offline defaults (issue 20).
# usage: run_small.sh OUT_DIR SPLIT LIMIT POOL_SEED SEED MIN_STEPS [extra --set ...]
set -euo pipefail
out=$1 split=$2 limit=$3 pool_seed=$4 seed=$5 min_steps_per_epoch=$6; shift 6
nice -n 5 python -m adapt.cli run configs/pseudolabel.py:fashion_mnist --workdir "$out" --quiet \
  --set seed="$seed" --set pool.split="$split" --set pool.limit="$limit" --set pool.seed="$pool_seed" \
  --set method_args.min_steps_per_epoch="$min_steps_per_epoch" "$@" > "$out.log" 2>&1
