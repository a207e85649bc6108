"""Images/s of our jitted CLIP ViT-B/16 image tower vs transformers' PyTorch CLIP vision tower, CPU.

    python experiments/embed_throughput/bench.py [--batch 64] [--reps 3] [--precision default]

Timed: `encode_images` jitted as is ("jax"), the same with `chunk=8` ("jax_chunked": the batch of
64 as a lax.map over 8 slices), and transformers' `get_image_features` + normalisation ("torch").
All run the same random ViT-B/16 weights (written once with save_pretrained, loaded by each side)
on the same batch of random 224 px pixels. Warm-up (JAX compile, first torch call) is excluded;
the timed repetitions alternate between them so that load from other processes hits both alike.
Writes results.json next to this file (or --out). XLA_FLAGS from the environment are recorded.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--precision", default="default", choices=["default", "high", "highest"])
    ap.add_argument("--chunk", type=int, default=8, help="also time encode_images(chunk=...); 0: skip")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from flax import nnx

    from adapt.models.clip import load_clip
    from tests.clip_fixtures import TEXT_B, VIT_B16, copy_tokenizer, hf_clip

    jax.config.update("jax_default_matmul_precision", args.precision)
    threads = os.cpu_count()
    torch.set_num_threads(threads)

    with tempfile.TemporaryDirectory() as tmp:
        hf = hf_clip(VIT_B16, TEXT_B, 512, seed=0)
        hf.save_pretrained(tmp)
        copy_tokenizer(tmp)
        model = load_clip(tmp)
    pixels = np.random.default_rng(0).normal(size=(args.batch, 224, 224, 3)).astype(np.float32)
    px_torch = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()

    graphdef, state = nnx.split(model)
    jax_fn = jax.jit(lambda s, x: nnx.merge(graphdef, s).encode_images(x))
    jax_chunked = jax.jit(lambda s, x: nnx.merge(graphdef, s).encode_images(x, chunk=args.chunk))
    x = jnp.asarray(pixels)

    def run_jax():
        return np.asarray(jax.block_until_ready(jax_fn(state, x)))

    def run_jax_chunked():
        return np.asarray(jax.block_until_ready(jax_chunked(state, x)))

    def run_torch():
        with torch.inference_mode():
            z = hf.get_image_features(pixel_values=px_torch)
            z = getattr(z, "pooler_output", z)
            return (z / z.norm(dim=-1, keepdim=True)).numpy()

    runs = {"jax": run_jax, "torch": run_torch}
    if args.chunk:
        runs["jax_chunked"] = run_jax_chunked
    t0 = time.perf_counter()
    ours = run_jax()
    compile_s = time.perf_counter() - t0
    ref = run_torch()
    max_diff = {"jax": float(np.abs(ours - ref).max())}
    if args.chunk:
        max_diff["jax_chunked"] = float(np.abs(run_jax_chunked() - ref).max())
    times = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    for _ in range(args.reps):
        for name, fn in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)

    def summary(name):
        ts = times[name]
        best, med = min(ts), float(np.median(ts))
        return {"seconds": ts, "images_per_s_median": args.batch / med, "images_per_s_best": args.batch / best,
                # CPU seconds of this process per image, all threads: less sensitive to other load.
                "cpu_s_per_image_median": float(np.median(cpu[name])) / args.batch}

    res = {
        "question": "images/s of the jitted JAX CLIP ViT-B/16 image tower vs transformers' PyTorch one on this CPU",
        "date": datetime.date.today().isoformat(),
        "batch": args.batch, "reps": args.reps, "image_size": 224, "model": "ViT-B/16 (random weights)",
        "jax_matmul_precision": args.precision, "torch_threads": threads,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_first_call_s (compile + 1 run)": compile_s,
        "max_abs_diff_normalised_embeddings": max_diff,
        "chunk": args.chunk, **{name: summary(name) for name in runs},
        "versions": {"jax": jax.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "cpu": platform.processor() or platform.machine(), "cores": threads,
        "load_average_1min_at_end": os.getloadavg()[0],
    }
    for name in runs:
        if name != "torch":
            res[f"ratio_{name}_over_torch_images_per_s"] = (
                res[name]["images_per_s_median"] / res["torch"]["images_per_s_median"])
            res[f"ratio_{name}_over_torch_cpu_efficiency"] = (
                res["torch"]["cpu_s_per_image_median"] / res[name]["cpu_s_per_image_median"])
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
