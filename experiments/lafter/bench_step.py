"""LaFTer stage 2, one optimizer step: ours (JAX, methods/lafter.py) vs a PyTorch restatement of the
official step, on the same random 4-block CLIP and the same batch; images/s side by side.

The CLIP is a random Hugging Face `CLIPModel` (tests/clip_fixtures.py, seeded) saved once and loaded by
both sides: ours through `adapt.models.clip.load_clip`, the restatement through transformers.
- ours: `ClipPromptedLayerNorm` (50 VPT tokens + every vision LayerNorm) + head W, loss
  `adapt.tuning.rounds.smoothed_ce_loss` at scale 1 (CE 0.1 on W g), AdamW 5e-4 wd 0.01 except "bias", labels cached, one
  jitted step; with augment none (the step alone) and strong (our on-device strong view included).
- official (restated): the frozen teacher forward on the batch (unprompted tower, normalised feature,
  argmax of the frozen stage-1 head) inside every step, as the official loop does, then the student:
  prompts inserted after ln_pre, encoder, post-LN on CLS, projection, W g, CE(label_smoothing 0.1),
  torch.optim.AdamW (decay off for "bias" names); also timed without the teacher forward (the same
  work as ours). The official CPU-side torchvision augmentation is not timed (pixels are given).

  nice python experiments/lafter/bench_step.py --out experiments/lafter/bench_step.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from adapt.models.clip import load_clip  # noqa: E402
from adapt.tuning.prompted_layernorm import ClipPromptedLayerNorm  # noqa: E402
from adapt.tuning.rounds import adamw_no_bias_decay, smoothed_ce_loss  # noqa: E402
from tests.clip_fixtures import TINY_TEXT, write_clip  # noqa: E402
from tests.method_inputs import pool_inputs  # noqa: E402


def timed(step, n_steps: int) -> dict:
    """First call (compile / warm-up) and the median of `n_steps` further calls, in seconds."""
    t = time.perf_counter()
    step()
    first = time.perf_counter() - t
    times = []
    for _ in range(n_steps):
        t = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t)
    return dict(first_s=first, median_s=float(np.median(times)), last_loss=float(loss))


def ours(folder, px, y, w0, augment: str, n_prompts: int):
    model = load_clip(folder)
    inputs = pool_inputs(np.zeros((len(px), w0.shape[1]), np.float32), w0, 1)._replace(model=model)
    student = ClipPromptedLayerNorm(inputs, n_visual=n_prompts, pixels=px)
    loss_fn, opt = smoothed_ce_loss(student, 1.0, len(w0), 0.1, augment), adamw_no_bias_decay(5e-4, 0.01)
    state = {"p": {"visual": student.init(0), "head": jnp.asarray(w0)}}
    state["o"] = opt.init(state["p"])
    batch = {"pixels": jnp.asarray(px), "y": jnp.asarray(y), "mask": jnp.ones(len(y), bool)}

    @jax.jit
    def step(p, o, batch, key):  # the batch is an argument, as in adapt.tuning.loop (not a constant)
        (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(p, batch, key)
        upd, o = opt.update(g, o, p)
        return jax.tree.map(lambda a, b: a + b, p, upd), o, loss

    def run():
        state["p"], state["o"], loss = step(state["p"], state["o"], batch, jax.random.key(0))
        return jax.block_until_ready(loss)
    return run


def official(folder, px, y, w0, teacher: bool, n_prompts: int):
    import torch
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(folder).eval()
    vis, proj = clip.vision_model, clip.visual_projection
    for p in clip.parameters():
        p.requires_grad_(False)
    width, patch = vis.config.hidden_size, vis.config.patch_size
    bound = float(np.sqrt(6.0 / (3 * patch * patch + width)))
    prompts = torch.nn.Parameter(torch.empty(1, n_prompts, width).uniform_(-bound, bound))
    lns = [m for m in vis.modules() if isinstance(m, torch.nn.LayerNorm)]
    for m in lns:
        m.weight.requires_grad_(True)
        m.bias.requires_grad_(True)
    head = torch.nn.Linear(w0.shape[1], w0.shape[0], bias=False)
    head_pl = torch.nn.Linear(w0.shape[1], w0.shape[0], bias=False).requires_grad_(False)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w0))
        head_pl.weight.copy_(torch.from_numpy(w0))
    decay = [prompts, head.weight] + [m.weight for m in lns]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": [m.bias for m in lns], "weight_decay": 0.0}], lr=5e-4)
    ce = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.from_numpy(np.ascontiguousarray(px.transpose(0, 3, 1, 2)))
    labels = torch.from_numpy(y.astype(np.int64))

    def student(pixels):
        h = vis.pre_layrnorm(vis.embeddings(pixels))
        h = torch.cat([h[:, :1], prompts.expand(len(h), -1, -1), h[:, 1:]], dim=1)  # after ln_pre
        h = vis.encoder(inputs_embeds=h)[0]
        return head(proj(vis.post_layernorm(h[:, 0])))

    def run():
        target = labels
        if teacher:
            with torch.no_grad():
                f = clip.get_image_features(pixel_values=x)
                f = getattr(f, "pooler_output", f)
                target = head_pl(f / f.norm(dim=-1, keepdim=True)).argmax(1)
        loss = ce(student(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()
    return run


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--image", type=int, default=224)
    p.add_argument("--patch", type=int, default=32)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--prompts", type=int, default=50)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", default="")
    a = p.parse_args()
    import torch

    vision = dict(hidden_size=a.width, intermediate_size=4 * a.width, num_hidden_layers=a.blocks,
                  num_attention_heads=max(1, a.width // 64), image_size=a.image, patch_size=a.patch)
    folder = write_clip(Path(tempfile.mkdtemp()) / "clip", vision, TINY_TEXT, projection_dim=512)
    rng = np.random.default_rng(0)
    px = rng.standard_normal((a.batch, a.image, a.image, 3)).astype(np.float32)
    y = rng.integers(0, a.classes, a.batch).astype(np.int32)
    w0 = (rng.standard_normal((a.classes, 512)) / np.sqrt(512)).astype(np.float32)
    rows = {}
    for name, make in [("ours_jax_cached_labels", lambda: ours(folder, px, y, w0, "none", a.prompts)),
                       ("ours_jax_cached_labels_strong_view", lambda: ours(folder, px, y, w0, "strong", a.prompts)),
                       ("official_torch_teacher_every_step", lambda: official(folder, px, y, w0, True, a.prompts)),
                       ("official_torch_cached_labels", lambda: official(folder, px, y, w0, False, a.prompts))]:
        r = timed(make(), a.steps)
        r["images_per_s"] = a.batch / r["median_s"]
        rows[name] = r
        print(f"{name:40s} {r['images_per_s']:8.1f} img/s  (step {r['median_s']:.3f} s, first {r['first_s']:.1f} s)",
              flush=True)
    out = dict(args=vars(a), jax=jax.__version__, torch=torch.__version__, torch_threads=torch.get_num_threads(),
               machine=platform.processor() or platform.machine(), load_average=list(__import__("os").getloadavg()),
               rows=rows)
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
