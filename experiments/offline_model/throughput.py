"""Images/s of the jitted JAX EfficientNet-Lite0 vs the PyTorch reference, side by side.

Batch 64, 224 px, fp32, this machine's CPU. Variants are timed in interleaved rounds (one batch
each per round) so that load from other processes hits all of them alike; the median per variant
is reported. The PyTorch reference is the plain restatement in tests/test_offline_model.py.

  PYTHONPATH=. python experiments/offline_model/throughput.py [--rounds 7] [--grouped]
  XLA_FLAGS=... PYTHONPATH=. python experiments/offline_model/throughput.py   # try XLA flags
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np
import torch
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from test_offline_model import EFFNET, TorchEfficientNetLite0  # noqa: E402

from adapt.models.efficientnet import load_efficientnet_lite0  # noqa: E402
from adapt.models.torch_pickle import load_state_dict  # noqa: E402

BATCH = 64


def jax_runner(form: str, x: np.ndarray):
    model = load_efficientnet_lite0(load_state_dict(EFFNET), depthwise_form=form)
    graph, state = nnx.split(model)
    fn = jax.jit(lambda st, px: nnx.merge(graph, st).features(px))
    xj = jax.device_put(x)
    t0 = time.time()
    fn(state, xj).block_until_ready()
    print(f"jax/{form}: compile + first batch {time.time() - t0:.1f}s", flush=True)
    return lambda: fn(state, xj).block_until_ready()


def torch_runner(channels_last: bool, x: np.ndarray):
    model = TorchEfficientNetLite0().load_packaged()
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    if channels_last:
        model, xt = model.to(memory_format=torch.channels_last), xt.to(memory_format=torch.channels_last)

    def run():
        with torch.inference_mode():
            model(xt)
    run()
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--grouped", action="store_true",
                    help="also time XLA's grouped depthwise conv (slow)")
    args = ap.parse_args()
    x = np.random.default_rng(0).uniform(-1, 1, (BATCH, 224, 224, 3)).astype(np.float32)
    print(f"backend {jax.default_backend()}, {os.cpu_count()} cpus, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), jax {jax.__version__}, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    runners = {"jax (shifted depthwise)": jax_runner("shifted", x)}
    if args.grouped:
        runners["jax (grouped depthwise)"] = jax_runner("grouped", x)
    runners["torch (NCHW)"] = torch_runner(False, x)
    runners["torch (channels_last)"] = torch_runner(True, x)
    times = {k: [] for k in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    rate = {k: BATCH / float(np.median(v)) for k, v in times.items()}
    print("\n| variant | images/s (median of %d batches of %d) |\n|---|---|" % (args.rounds, BATCH))
    for k, r in rate.items():
        print(f"| {k} | {r:.1f} |")
    best_torch = max(v for k, v in rate.items() if k.startswith("torch"))
    print(f"\nratio jax (shifted) / best torch: {rate['jax (shifted depthwise)'] / best_torch:.2f}x")


if __name__ == "__main__":
    main()
