#!/usr/bin/env bash
# Pseudolabel prompt tuning on Fashion-MNIST test (10,000 images), offline default model, UL.
# usage: experiments/pseudolabel/run_grid.sh RUNS_DIR "PROMPTS" "STRATEGIES" "SEEDS" [extra --set ...]
# Each run: runs/<prompt>_<strategy>_s<seed>; collect.py makes the table.
set -euo pipefail
out=${1:-runs/pseudolabel}; prompts=${2:-"visual textual multimodal"}
strategies=${3:-"fpl ifpl grip"}; seeds=${4:-"0 1 2"}; shift $(( $# < 4 ? $# : 4 )) || true
mkdir -p "$out"
for p in $prompts; do for s in $strategies; do for seed in $seeds; do
  dir="$out/${p}_${s}_s${seed}"
  [ -f "$dir/metrics.json" ] && continue
  extra=()
  # visual: LoRA rank 16 on the head conv; FPL / IFPL 20 epochs, GRIP (up to the whole pool per
  # round) batch 64, 10 epochs, LR scaled linearly by 4. textual / multimodal: every step runs MiniLM
  # forward + backward on the C prompts (~0.3 s here), so FPL / IFPL keep batch 16 with 20 epochs
  # and GRIP uses batch 128, 10 epochs, LR scaled linearly by 8 (the spec's declared deviation).
  case $p in
    visual) if [ $s = grip ]; then
         extra=(--set method_args.lora_rank=16 --set method_args.epochs=10 --set method_args.batch_size=64 --set method_args.lr=0.4)
       else extra=(--set method_args.lora_rank=16 --set method_args.epochs=20); fi ;;
    *) if [ $s = grip ]; then
         extra=(--set method_args.epochs=10 --set method_args.batch_size=128 --set method_args.lr=$([ $p = textual ] && echo 0.8 || echo 0.08))
       else extra=(--set method_args.epochs=20); fi ;;
  esac
  adapt run configs/pseudolabel.py:fashion_mnist --workdir "$dir" --quiet --set seed=$seed \
    --set method_args.prompt=$p --set method_args.strategy=$s --set method_args.warmup_epochs=1 \
    "${extra[@]}" "$@" > "$dir.log" 2>&1 || echo "FAILED $dir"
done; done; done
