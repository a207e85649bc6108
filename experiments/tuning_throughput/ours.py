"""Our side: the jitted tuning step run by `adapt.tuning.loop.fit`, timed from its per-epoch history.

    python experiments/tuning_throughput/ours.py clip --ckpt DIR --steps 2 --epochs 4 --out a.json
    python experiments/tuning_throughput/ours.py offline --batch 16 --rows 1024 --epochs 4 --out b.json

clip: `ClipPrompted` (VPT-shallow, 16 tokens) on the random checkpoint in DIR; one step = weak view
(no gradient) -> argmax pseudo-labels against fixed class weights, strong view -> CE -> gradient
into the prompt tokens -> SGD momentum (`tuning.sgd`). offline: `OfflinePrompted`, prompt="visual",
on cached head pre-activations, with the pseudolabel method's loss. Epoch 0 (compile + warm-up)
is not timed. `--parity FILE` saves the initial parameters and the unaugmented outputs of 2 rows
for torch_step.py to start from and compare with.
"""
from __future__ import annotations

import argparse
import json
import time
from types import SimpleNamespace

import common
import jax
import jax.numpy as jnp
import numpy as np
import optax

from adapt.core import mesh as mesh_lib
from adapt.tuning import loop as tuning
from adapt.tuning.prompted import ClipPrompted, OfflinePrompted


def _cpu_clock():
    last = [time.process_time()]

    def on_epoch(epoch, params):
        now = time.process_time()
        row, last[0] = {"cpu_s": now - last[0]}, now
        return row
    return on_epoch


def _masked_mean(x, b):
    m = b["mask"].astype(x.dtype)
    return jnp.sum(x * m) / jnp.maximum(m.sum(), 1.0)


def clip_setup(ckpt: str, n: int):
    from adapt.models.clip import load_clip

    model = load_clip(ckpt)
    d = common.clip_data(n)
    assert tuple(model.preprocess.mean) == common.MEAN and tuple(model.preprocess.std) == common.STD
    inputs = SimpleNamespace(model=model, logit_scale=common.CLIP_SCALE, class_weights=d["class_weights"],
                             mask=np.ones(n, bool), x=None)
    pr = ClipPrompted(inputs, "visual", n_visual=common.N_PROMPTS, pixels=d["pixels"])

    def loss_fn(p, b, key):
        kw, ks = jax.random.split(key)
        y = jnp.argmax(pr.logits(jax.lax.stop_gradient(p), b, kw, "weak"), -1)
        logits = pr.logits(p, b, ks, "strong")
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return _masked_mean(ce, b), {"agree": _masked_mean((logits.argmax(-1) == y).astype(ce.dtype), b)}

    return pr, pr.data, loss_fn


def offline_setup(n: int):
    d = common.offline_data(n)
    bn = SimpleNamespace(scale=d["bn_scale"], bias=d["bn_bias"], mean=d["bn_mean"], var=d["bn_var"])
    inputs = SimpleNamespace(model=SimpleNamespace(image=SimpleNamespace(head_bn=bn)), x=d["emb"],
                             logit_scale=common.OFFLINE_SCALE, class_weights=d["class_weights"],
                             mask=np.ones(n, bool), class_names=None)
    pr = OfflinePrompted(inputs, "visual", center=True, head_inputs=d["z"])

    def loss_fn(p, b, key):  # methods/pseudolabel.py's loss, augment "none" (its default)
        logits = pr.logits(p, b, key, "none")
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, b["y"])
        acc = _masked_mean((logits.argmax(-1) == b["y"]).astype(ce.dtype), b)
        return _masked_mean(ce * b["w"], b), {"train_accuracy": acc}

    return pr, {**pr.data, "y": d["y"], "w": d["w"]}, loss_fn


def parity(pr, path: str, kind: str, params, data) -> None:
    """Saves the initial parameters and the unaugmented outputs of 2 rows, for the torch side."""
    b = {k: jnp.asarray(v[:2]) for k, v in data.items()}
    out = {"params": [np.asarray(x) for x in jax.tree.leaves(params)]}
    if kind == "clip":
        out["features"] = np.asarray(jax.jit(lambda p: pr.features(p, b, jax.random.key(0)))(params))
    else:
        out["logits"] = np.asarray(jax.jit(lambda p: pr.logits(p, b, jax.random.key(0)))(params))
    np.savez(path, **{k: v for k, v in out.items() if k != "params"},
             **{f"param_{i}": v for i, v in enumerate(out["params"])})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", choices=["clip", "offline"])
    ap.add_argument("--ckpt", help="clip: the random HF CLIP checkpoint folder")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2, help="clip: steps per epoch (rows = steps * batch)")
    ap.add_argument("--rows", type=int, default=1024, help="offline: rows of cached pre-activations")
    ap.add_argument("--epochs", type=int, default=4, help="including the untimed first epoch")
    ap.add_argument("--parity", help="write parity data here (.npz)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    t0 = time.perf_counter()
    if args.path == "clip":
        pr, data, loss_fn = clip_setup(args.ckpt, args.steps * args.batch)
    else:
        pr, data, loss_fn = offline_setup(args.rows)
    params = pr.init(0)
    if args.parity:
        parity(pr, args.parity, args.path, params, data)
    n = len(next(iter(data.values())))
    steps = n // args.batch
    opt = tuning.sgd(common.LR, args.epochs, steps, warmup_epochs=common.WARMUP_EPOCHS,
                     momentum=common.MOMENTUM, weight_decay=common.WEIGHT_DECAY)
    setup_s = time.perf_counter() - t0
    res = tuning.fit(loss_fn, params, data, optimizer=opt, epochs=args.epochs, batch_size=args.batch,
                     key=jax.random.key(0), mesh=mesh_lib.make_mesh(), progress=False, drop_last=True,
                     on_epoch=_cpu_clock())
    timed = res.history[1:]
    out = dict(impl="ours", path=args.path, batch=args.batch, rows=n, steps_per_epoch=steps,
               epochs_timed=len(timed), setup_s=setup_s, first_epoch_s=res.history[0]["seconds"],
               images_per_s=float(np.median([h["images_per_s"] for h in timed])),
               cpu_s_per_image=float(np.median([h["cpu_s"] for h in timed])) / (steps * args.batch),
               trainable=tuning.n_params(params), history=res.history, jax=jax.__version__,
               devices=[str(d) for d in jax.devices()])
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, default=float)
    print(json.dumps({k: v for k, v in out.items() if k != "history"}, default=float))


if __name__ == "__main__":
    main()
