"""NoLA stage 3, time per epoch: frozen things cached (ours) vs recomputed every step (official code).

Both variants run the same stage-3 loss (adapt.tuning.rounds.smoothed_ce_loss) with `adapt.tuning.loop.fit` on the
same rows of the Fashion-MNIST test pool, offline default model, batch 512:
- cached: the labeller's labels of the pool were computed once; each step reads them.
- recompute: each step runs the second tower (open_nsfw ResNet-50) on the batch's weak view and the
  labeller MLP on its features, and takes the argmax as the labels, as the official code does with
  DINO on every batch of every epoch.
It also checks that the cached labels equal the on-the-fly labels on those rows.

  python experiments/nola/bench_stage3.py --n 1024 --epochs 3 --out experiments/nola/bench_stage3.json
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapt.core import mesh as mesh_lib
from adapt.core.method import MethodInputs
from adapt.data import open_pool
from adapt.features.embed import embed_pool
from adapt.features.second_tower import load_second_tower, tower_features
from adapt.features.text import encode_classes
from adapt.models.offline import load_offline_default
from adapt.models.preprocess import to_pixels
from adapt.tuning import labeller
from adapt.tuning import loop as tuning
from adapt.tuning.prompted import make_prompted
from configs.nola import get_config
from adapt.tuning.rounds import adamw_no_bias_decay, smoothed_ce_loss
from methods.nola import cde_probs


def epoch_seconds(history):
    s = [h["seconds"] for h in history]
    return dict(first_epoch_s=s[0], steady_epoch_s=float(np.median(s[1:])) if len(s) > 1 else None)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1024, help="pool rows in the benchmark (the first n)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", default="")
    a = p.parse_args()
    cfg = get_config("fashion_mnist")
    args = cfg.method_args
    mesh = mesh_lib.make_mesh(None)
    model, pool = load_offline_default(), open_pool(cfg.pool)
    emb = embed_pool(model, pool, mesh, progress=False)
    names = list(pool.class_names)
    texts = encode_classes(model, names, list(cfg.prompts.templates))
    x, mask = mesh_lib.shard_rows(emb.embeddings, mesh)
    inputs = MethodInputs(x=x, mask=mask, class_weights=texts.weights, logit_scale=model.logit_scale,
                          views={"embedding": x}, class_texts=texts, mesh=mesh, key=jax.random.key(0),
                          class_names=names, model=model, pool=pool, kept=emb.kept, progress=False)
    t = time.perf_counter()
    tower = load_second_tower("resnet50_nsfw", model)
    feats = tower_features(tower, pool, emb.kept, mesh, progress=False)
    load_s = time.perf_counter() - t
    rows = np.arange(a.n)
    c = len(names)
    t = time.perf_counter()  # stages 1-2 on these rows, as the method runs them
    probs = cde_probs(emb.embeddings[rows], texts.weights, model.logit_scale, True)
    sel = labeller.confident_subset(probs, labeller.confident_k(a.n, c))
    lab = labeller.train_labeller(feats[rows][sel.indices], sel.labels, c, key=jax.random.key(2), mesh=mesh,
                                  progress=False).params
    y_cached = labeller.label_pool(lab, feats[rows]).argmax(1).astype(np.int32)
    stage2_s = time.perf_counter() - t

    prompted = make_prompted(inputs, "visual", center=True, progress=False)
    z = prompted.data["z"][rows]
    t = time.perf_counter()
    pixels = np.stack([to_pixels(pool.load(int(i)), tower.preprocess) for i in emb.kept[rows]])
    decode_s = time.perf_counter() - t
    graph, state = nnx.split(tower)

    def labels_fn(b):  # the official way: second tower + labeller on the weak view, every step
        f = nnx.merge(graph, state).encode_images(b["px"])
        return jax.lax.stop_gradient(labeller.mlp_logits(lab, f)).argmax(-1)

    on_the_fly = np.concatenate([np.asarray(jax.jit(labels_fn)({"px": jnp.asarray(pixels[s:s + 64])}))
                                 for s in range(0, a.n, 64)])
    out = dict(n=a.n, batch=int(args.batch_size), epochs=a.epochs, devices=len(jax.devices()),
               second_tower=tower.model_id, stages12_seconds=stage2_s, tower_load_seconds=load_s,
               weak_view_decode_seconds=decode_s,
               cached_labels_equal_on_the_fly=int((on_the_fly == y_cached).sum()))
    for name, data, fn in (("cached", {"z": z, "y": y_cached}, None),
                           ("recompute", {"z": z, "px": pixels}, labels_fn)):
        params = {"visual": prompted.init(0), "head": jnp.asarray(texts.weights)}
        res = tuning.fit(smoothed_ce_loss(prompted, model.logit_scale, c, 0.1, args.augment, labels_fn=fn), params, data,
                         optimizer=adamw_no_bias_decay(float(args.lr), float(args.weight_decay)), epochs=a.epochs,
                         batch_size=int(args.batch_size), key=jax.random.key(3), mesh=mesh, progress=False)
        out[name] = epoch_seconds(res.history) | {"final_loss": res.history[-1]["loss"]}
        print(name, out[name], flush=True)
    out["speedup_steady"] = out["recompute"]["steady_epoch_s"] / out["cached"]["steady_epoch_s"]
    print(json.dumps(out, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
