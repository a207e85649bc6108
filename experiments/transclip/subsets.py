"""Pools holding only some of the 10 Fashion-MNIST classes (all 10 names given): zero-shot,
centred zero-shot, TransCLIP and StatA accuracy side by side (StatA's reason to exist).

    python experiments/transclip/subsets.py [--preset fashion_mnist] [--sizes 2,3,5] [--seed 0]
        [--set method_args.center=False]

The pool is the preset's embedded test split (the embedding cache holds it, so nothing is embedded
again); each subset keeps every image of `size` classes drawn with numpy's default_rng(seed)
(an array subset of the cached rows). The class texts are the 10 names of the config. One run per
subset and method, the methods' configs as given (plus --set overrides for both); last iterate.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's methods/, not an install
from adapt import registry
from adapt.core import mesh as mesh_lib
from adapt.core import ops
from adapt.core.config import load_config
from adapt.core.job import Timer
from adapt.core.method import MethodInputs
from adapt.data import resolve_classes
from adapt.features import setup
from adapt.features.text import encode_classes

METHODS = ("transclip", "stata")


def _config(name, preset, overrides):
    config = load_config(f"configs/{name}.py:{preset}")
    with config.unlocked():
        for item in overrides:
            key, value = item.split("=", 1)
            node = config
            *path, leaf = key.split(".")
            for p in path:
                node = node[p]
            node[leaf] = type(node[leaf])(value == "True" if isinstance(node[leaf], bool) else value)
    return config


def load_pool(config):
    """(x (N, D) unit rows, labels (N,), class weights (K, D), logit scale, class texts, names)."""
    start = setup.start_job(config, Timer(), check=lambda pool: resolve_classes(pool))
    rows = setup.embed_job_pool(start.model, start.pool, start.mesh, start.embed, progress=False)
    texts = encode_classes(start.model, start.checked.names, list(config.prompts.templates))
    n = len(rows.kept)
    x = np.asarray(jax.device_get(rows.x))[:n]
    labels = np.asarray(start.checked.labels)[rows.kept]
    return (x, labels, np.asarray(texts.weights, np.float32), float(start.model.logit_scale), texts,
            list(start.checked.names))


def run_subset(config, x, labels, weights, scale, texts):
    """The config's method on the pool rows x (n, D): its (n,) predictions."""
    mesh = mesh_lib.make_mesh()
    xs, mask = mesh_lib.shard_rows(x, mesh)
    inputs = MethodInputs(xs, mask, mesh_lib.replicate(weights, mesh), scale, {"embedding": xs},
                          texts, mesh, jax.random.key(config.seed))
    return registry.make_method(config).run(inputs).predictions


def zero_shots(x, weights, scale):
    """(cosine, centred) zero-shot predictions on the pool rows x (n, D)."""
    mesh = mesh_lib.make_mesh()
    xs, mask = mesh_lib.shard_rows(x, mesh)
    xc, _ = ops.centered(xs, mask)
    n = x.shape[0]
    return (np.argmax(x @ weights.T, 1), np.argmax(np.asarray(xc)[:n] @ weights.T, 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="fashion_mnist")
    ap.add_argument("--sizes", default="2,3,5,10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    args = ap.parse_args()
    configs = {m: _config(m, args.preset, args.overrides) for m in METHODS}
    x, labels, weights, scale, texts, names = load_pool(configs[METHODS[0]])
    rng = np.random.default_rng(args.seed)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        classes = np.sort(rng.choice(10, size, replace=False)) if size < 10 else np.arange(10)
        keep = np.isin(labels, classes)
        xs, ys = x[keep], labels[keep]
        cosine, centred = zero_shots(xs, weights, scale)
        row = {"classes": [names[c] for c in classes],
               "class_ids": classes.tolist(), "n": int(keep.sum()),
               "zero_shot": float(np.mean(cosine == ys)), "centred_zero_shot": float(np.mean(centred == ys))}
        for m in METHODS:
            row[m] = float(np.mean(run_subset(configs[m], xs, ys, weights, scale, texts) == ys))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
