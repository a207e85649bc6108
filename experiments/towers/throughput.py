"""Image-tower throughput, ours (JAX, jitted) vs the PyTorch reference (transformers), side by side.

    nice python experiments/towers/throughput.py                       # SigLIP and SigLIP 2, ViT-B/16
    nice python experiments/towers/throughput.py --batch 8 --rounds 5 --threads 2

Towers at their real shapes with random weights (N(0, 0.02), LayerNorm scales 1 + N(0, 0.02)):
SigLIP base patch16 224 (`SiglipVisionModel`, 196 patches) and SigLIP 2 base patch16 NaFlex
(`Siglip2VisionModel`, 256 patches = a 256 px square image). Ours is filled through the loader's own
tensor mapping (`adapt.models.siglip_load.vision_pure_dict`), so the script also prints the largest
difference of the L2-normalised embeddings (a real-shape parity check). Each round times one batch
with each framework in turn (alternating, after one warm-up call each, compile excluded); the table
gives the median images/s over rounds. Results and the machine: experiments/towers/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from adapt.models import siglip_load
from adapt.models.siglip_towers import SiglipVisionTower

BASE = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
TOWERS = {"siglip-base-p16-224": ("siglip", dict(BASE, image_size=224, patch_size=16)),
          "siglip2-base-p16-256patches": ("siglip2", dict(BASE, num_patches=256, patch_size=16))}


def reference(kind: str, vision: dict, seed: int = 0):
    """A random transformers vision tower (eval), seeded, built on the meta device then filled."""
    from transformers import Siglip2VisionConfig, Siglip2VisionModel, SiglipVisionConfig, SiglipVisionModel

    cfg_cls, cls = ((SiglipVisionConfig, SiglipVisionModel) if kind == "siglip"
                    else (Siglip2VisionConfig, Siglip2VisionModel))
    with torch.device("meta"):
        model = cls(cfg_cls(**vision))
    model = model.to_empty(device="cpu").eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.02, generator=gen)
            if p.ndim == 1 and name.endswith("weight"):
                p.add_(1.0)
        for name, b in model.named_buffers():
            if name.endswith("position_ids"):
                b.copy_(torch.arange(b.shape[-1]).expand_as(b))
    return model


def ours(kind: str, ref) -> SiglipVisionTower:
    raw = {"model_type": kind, "vision_config": ref.config.to_dict(), "text_config": {"projection_size": ref.config.hidden_size}}
    cfg = siglip_load.parse_config(raw).vision
    tensors = {f"vision_model.{k}": v.numpy() for k, v in ref.state_dict().items() if not k.endswith("position_ids")}
    graphdef, state = nnx.split(SiglipVisionTower(cfg, rngs=None))
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, siglip_load.vision_pure_dict(tensors, cfg)))
    return nnx.merge(graphdef, state)


def torch_call(kind: str, ref, tower: SiglipVisionTower, pixels: np.ndarray):
    """The reference forward on our pixels `(B, S, S, 3)` -> a function returning `(B, W)`."""
    if kind == "siglip":
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
        return lambda: ref(pixel_values=x).pooler_output
    patches = torch.from_numpy(np.array(tower.patchify(jnp.asarray(pixels))))
    g = tower.cfg.grid
    mask = torch.ones(patches.shape[:2], dtype=torch.long)
    spatial = torch.tensor([[g, g]] * len(pixels))
    return lambda: ref(pixel_values=patches, pixel_attention_mask=mask, spatial_shapes=spatial).pooler_output


def measure(name: str, kind: str, vision: dict, batch: int, rounds: int) -> dict:
    ref = reference(kind, vision)
    tower = ours(kind, ref)
    s = tower.cfg.image_size
    pixels = np.random.default_rng(1).normal(size=(batch, s, s, 3)).astype(np.float32)
    graphdef, state = nnx.split(tower)
    fn = jax.jit(lambda st, x: nnx.merge(graphdef, st)(x))
    x = jnp.asarray(pixels)
    run_torch = torch_call(kind, ref, tower, pixels)
    with torch.no_grad():
        want = run_torch().numpy()
        got = np.asarray(fn(state, x))
        unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
        diff = float(np.abs(unit(got) - unit(want)).max())
        t_jax, t_torch = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn(state, x).block_until_ready()
            t_jax.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run_torch()
            t_torch.append(time.perf_counter() - t0)
    return {"tower": name, "patches": tower.cfg.grid**2, "batch": batch, "rounds": rounds,
            "jax_images_per_s": batch / statistics.median(t_jax),
            "torch_images_per_s": batch / statistics.median(t_torch), "max_abs_diff_unit_embedding": diff}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    ap.add_argument("--towers", default=",".join(TOWERS))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    jax.config.update("jax_default_matmul_precision", "highest")  # float32 both sides
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({args.threads} threads), jax {jax.__version__} ({jax.devices()[0].platform})")
    print("| tower | patches | batch | ours (JAX) img/s | PyTorch img/s | ratio | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for name in args.towers.split(","):
        kind, vision = TOWERS[name]
        r = measure(name, kind, vision, args.batch, args.rounds)
        print(f"| {name} | {r['patches']} | {r['batch']} | {r['jax_images_per_s']:.2f} | "
              f"{r['torch_images_per_s']:.2f} | {r['jax_images_per_s'] / r['torch_images_per_s']:.2f} | "
              f"{r['max_abs_diff_unit_embedding']:.1e} |", flush=True)
        print("<!-- " + json.dumps(r) + " -->")


if __name__ == "__main__":
    main()
