#!/bin/bash
# The five runs whose outputs must not change when the code is reorganised (issue 18):
#   experiments/house/same_outputs.sh OUT        (from the repository root of the checkout to test)
# then compare two checkouts' OUT folders:
#   for m in zero_shot laplacian zlap hypergraph; do cmp A/$m/predictions.csv B/$m/predictions.csv; done
#   cmp A/musc/scores.csv B/musc/scores.csv
set -e
out=$1; mkdir -p "$out"
for m in zero_shot laplacian zlap hypergraph; do
  python -m adapt.cli run configs/$m.py:fashion_mnist --workdir "$out/$m" --quiet
done
python -m adapt.cli run configs/musc.py:defects,Trouser --workdir "$out/musc" --quiet
