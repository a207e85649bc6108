"""Images/s of our jitted OpenCLIP and MetaCLIP 2 image towers vs their PyTorch references, CPU, one run.

    python experiments/towers/throughput_openclip.py [--batch 32] [--reps 3] [--chunk 8]

Contestants per model, on the same random ViT-B-32 weights and the same batch of random 224 px pixels:
  openclip:  ours = `load_openclip(file, "ViT-B-32")` (a safetensors file written from the torch model),
             torch = open_clip's own `CLIP.encode_image(normalize=True)` (open_clip_torch 3.3.0).
  metaclip2: ours = `load_metaclip2(folder)` (a `save_pretrained` folder),
             torch = transformers' `MetaClip2Model.get_image_features` + L2 normalisation.
Ours is timed as `encode_images` jitted ("jax") and with `chunk` ("jax_chunked", a lax.map over slices).
Warm-up (JAX compile, first torch call) is excluded; the timed repetitions alternate between the
contestants so that load from other processes hits all alike; process CPU seconds are recorded too.
Writes results_openclip.json next to this file (or --out).
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
from timing import time_alternating  # noqa: E402  (this script's folder)


def build(name: str, tmp: Path):
    """(our model, torch callable pixels -> unit embeddings) for "openclip" or "metaclip2"."""
    import torch
    from safetensors.numpy import save_file

    from adapt.models.metaclip2 import load_metaclip2
    from adapt.models.openclip import load_openclip
    from tests.clip_fixtures import TEXT_B, VIT_B32
    from tests.test_metaclip2 import write_metaclip2
    from tests.test_openclip import torch_openclip

    if name == "openclip":
        ref = torch_openclip("ViT-B-32", seed=0)
        save_file({k: v.numpy() for k, v in ref.state_dict().items()}, tmp / "b32.safetensors")
        return load_openclip(tmp / "b32.safetensors", "ViT-B-32"), lambda px: ref.encode_image(px, normalize=True).numpy()
    folder, hf = write_metaclip2(tmp / "metaclip2", VIT_B32, TEXT_B, 512, seed=0)

    def run(px):
        z = hf.get_image_features(pixel_values=px)
        z = getattr(z, "pooler_output", z)
        return (z / z.norm(dim=-1, keepdim=True)).numpy()
    return load_metaclip2(folder), run


def bench(name: str, args, threads: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from flax import nnx

    with tempfile.TemporaryDirectory() as tmp:
        model, torch_fn = build(name, Path(tmp))
    pixels = np.random.default_rng(0).normal(size=(args.batch, 224, 224, 3)).astype(np.float32)
    px_torch = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    graphdef, state = nnx.split(model)
    plain = jax.jit(lambda s, x: nnx.merge(graphdef, s).encode_images(x))
    chunked = jax.jit(lambda s, x: nnx.merge(graphdef, s).encode_images(x, chunk=args.chunk))
    x = jnp.asarray(pixels)
    runs = {"jax": lambda: np.asarray(jax.block_until_ready(plain(state, x))),
            "jax_chunked": lambda: np.asarray(jax.block_until_ready(chunked(state, x)))}

    def run_torch():
        with torch.inference_mode():
            return torch_fn(px_torch)
    runs["torch"] = run_torch
    t0 = time.perf_counter()
    ours = runs["jax"]()
    compile_s = time.perf_counter() - t0
    ref = run_torch()
    max_diff = {"jax": float(np.abs(ours - ref).max()), "jax_chunked": float(np.abs(runs["jax_chunked"]() - ref).max())}
    return {"jax_first_call_s (compile + 1 run)": compile_s, "max_abs_diff_normalised_embeddings": max_diff,
            **time_alternating(runs, args.reps, args.batch)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--models", default="openclip,metaclip2")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results_openclip.json")))
    args = ap.parse_args()
    import jax
    import torch

    threads = os.cpu_count()
    torch.set_num_threads(threads)
    res = {"question": "images/s of our jitted OpenCLIP / MetaCLIP 2 ViT-B-32 image towers vs their PyTorch "
                       "references on this CPU", "date": datetime.date.today().isoformat(),
           "batch": args.batch, "reps": args.reps, "chunk": args.chunk, "image_size": 224, "torch_threads": threads,
           "load_average_1min_at_start": os.getloadavg()[0]}
    for name in args.models.split(","):
        res[name] = bench(name, args, threads)
    res.update(versions={"jax": jax.__version__, "torch": torch.__version__, "python": platform.python_version()},
               cpu=platform.processor() or platform.machine(), cores=threads,
               load_average_1min_at_end=os.getloadavg()[0])
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
