"""PyTorch side: the same tuning steps restated in eager PyTorch, timed per epoch like ours.

    python experiments/tuning_throughput/torch_step.py checkpoint DIR --layers 4
    python experiments/tuning_throughput/torch_step.py clip --ckpt DIR --steps 2 --epochs 4 --out a.json
    python experiments/tuning_throughput/torch_step.py offline --batch 16 --rows 1024 --epochs 4 --out b.json

clip: transformers `CLIPModel` (sdpa attention) loaded from DIR, frozen; 16 prompt tokens inserted
after CLS after `pre_layrnorm`, as our `VisionTower.tokens` does (embeddings -> pre_layrnorm ->
concat [CLS, prompts, patches] -> encoder -> post_layernorm(CLS) -> visual_projection -> L2).
One step: weak view under no_grad -> argmax pseudo-labels; strong view -> CE -> backward into the
prompts -> `torch.optim.SGD(momentum=0.9, weight_decay=0.1)`; augmentations from torch_augment.
offline: BN affine deltas on cached pre-activations, restating `OfflinePrompted` (prompt visual).
Both: `torch.set_num_threads(os.cpu_count())` (`--threads` to change), float32, the LR of our
per-epoch schedule, the same rows, batch and steps; the first epoch is not timed. `--parity`
starts from ours' initial parameters and compares the unaugmented outputs of 2 rows with ours'.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import common
import numpy as np
import torch
import torch.nn.functional as F
import torch_augment as ta


def write_checkpoint(path: str, layers: int) -> None:
    from tests.clip_fixtures import write_clip
    write_clip(path, common.vision_cfg(layers), common.TEXT_CFG, common.PROJ_DIM, seed=0)


def clip_setup(ckpt: str, n: int, parity: str | None):
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(ckpt, attn_implementation="sdpa").eval().requires_grad_(False)
    vm, proj = model.vision_model, model.visual_projection
    d = common.clip_data(n)
    pixels = torch.from_numpy(d["pixels"]).permute(0, 3, 1, 2).contiguous()  # NCHW, as torch models take
    w = torch.from_numpy(d["class_weights"])
    mean, std = torch.tensor(common.MEAN).view(1, 3, 1, 1), torch.tensor(common.STD).view(1, 3, 1, 1)
    width = vm.config.hidden_size
    init = np.random.default_rng(0).standard_normal((1, common.N_PROMPTS, width), np.float32) * width ** -0.5
    if parity:
        init = np.load(parity)["param_0"]
    prompts = torch.nn.Parameter(torch.from_numpy(init).reshape(1, common.N_PROMPTS, width))
    gen = torch.Generator().manual_seed(0)

    def features(px):
        x = vm.pre_layrnorm(vm.embeddings(px))
        x = torch.cat([x[:, :1], prompts.expand(len(x), -1, -1), x[:, 1:]], 1)
        x = vm.encoder(inputs_embeds=x).last_hidden_state
        return F.normalize(proj(vm.post_layernorm(x[:, 0])), dim=-1)

    def step(idx):
        px = pixels[idx]
        with torch.no_grad():
            y = (common.CLIP_SCALE * features(ta.augment(px, "weak", gen, mean, std)) @ w.T).argmax(-1)
            strong = ta.augment(px, "strong", gen, mean, std)
        logits = common.CLIP_SCALE * features(strong) @ w.T
        loss = F.cross_entropy(logits, y)
        loss.backward()
        return loss

    check = None
    if parity:
        with torch.no_grad():
            check = float(np.abs(features(pixels[:2]).numpy() - np.load(parity)["features"]).max())
    return [prompts], n, step, check


def offline_setup(n: int, parity: str | None):
    d = {k: torch.from_numpy(v) for k, v in common.offline_data(n).items()}
    s0, b0, mean, var = d["bn_scale"], d["bn_bias"], d["bn_mean"], d["bn_var"]
    w, y, wt, z = d["class_weights"], d["y"].long(), d["w"], d["z"]
    center = d["emb"].mean(0)
    ds, db = (torch.zeros(common.CH, requires_grad=True) for _ in range(2))

    def logits_of(zb):
        s, b = s0 * (1 + ds), b0 + s0.abs() * db  # OfflinePrompted._affine: deltas in BN-output units
        mul = s * torch.rsqrt(var + common.BN_EPS)
        f = F.relu6(zb * mul + (b - mean * mul)).mean((1, 2))
        f = F.normalize(F.normalize(f, dim=-1) - center, dim=-1)
        return common.OFFLINE_SCALE * f @ w.T

    def step(idx):
        logits = logits_of(z[idx])
        loss = (F.cross_entropy(logits, y[idx], reduction="none") * wt[idx]).mean()
        loss.backward()
        (logits.argmax(-1) == y[idx]).float().mean()  # the train_accuracy aux ours computes
        return loss

    check = None
    if parity:
        with torch.no_grad():
            check = float(np.abs(logits_of(z[:2]).numpy() - np.load(parity)["logits"]).max())
    return [ds, db], n, step, check


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", choices=["checkpoint", "clip", "offline"])
    ap.add_argument("dir", nargs="?", help="checkpoint: folder to write")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--ckpt")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--parity", help="ours' parity .npz: start from its parameters, compare outputs")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: the cores)")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.path == "checkpoint":
        return write_checkpoint(args.dir, args.layers)

    threads = args.threads
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    if args.path == "clip":
        params, n, step, check = clip_setup(args.ckpt, args.steps * args.batch, args.parity)
    else:
        params, n, step, check = offline_setup(args.rows, args.parity)
    opt = torch.optim.SGD(params, lr=common.LR, momentum=common.MOMENTUM, weight_decay=common.WEIGHT_DECAY)
    setup_s = time.perf_counter() - t0
    steps, gen, history = n // args.batch, torch.Generator().manual_seed(1), []
    for epoch in range(args.epochs):
        for g in opt.param_groups:
            g["lr"] = float(common.lr_at(epoch, args.epochs))
        order = torch.randperm(n, generator=gen)[:steps * args.batch].view(steps, args.batch)
        t, c, losses, step_s = time.perf_counter(), time.process_time(), [], []
        for idx in order:
            ts = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            losses.append(step(idx).detach())
            opt.step()
            step_s.append(time.perf_counter() - ts)
        secs, cpu = time.perf_counter() - t, time.process_time() - c
        history.append(dict(epoch=epoch, loss=float(torch.stack(losses).mean()), seconds=secs, cpu_s=cpu,
                            images_per_s=steps * args.batch / secs, step_seconds=step_s))
    timed = history[1:]
    out = dict(impl="torch", path=args.path, batch=args.batch, rows=n, steps_per_epoch=steps,
               epochs_timed=len(timed), setup_s=setup_s, first_epoch_s=history[0]["seconds"],
               images_per_s=float(np.median([h["images_per_s"] for h in timed])),
               cpu_s_per_image=float(np.median([h["cpu_s"] for h in timed])) / (steps * args.batch),
               trainable=sum(p.numel() for p in params), parity_max_abs_diff=check, history=history,
               torch=torch.__version__, threads=threads)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: v for k, v in out.items() if k != "history"}))


if __name__ == "__main__":
    main()
