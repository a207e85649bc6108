"""Hypergraph accuracy after each of 20 propagations, and the step each label-free stopping rule
keeps, on held-out pools (issue 19 item 6; the rule is in README section 1e, written first).

One run per pool computes all 20 applications (`stop=fixed`) and records each step's predictions,
mean entropy and changed rows; each rule of adapt.graph.stopping is then read off the same records
with `stopping.kept_step`, exactly as the method decides online. Labels only score the steps.

  PYTHONPATH=. python experiments/graph_methods/propagation_stopping.py synthetic
  PYTHONPATH=. python experiments/graph_methods/propagation_stopping.py fashion_mnist --split train
  PYTHONPATH=. python experiments/graph_methods/propagation_stopping.py fashion_mnist_inverted --split train
Writes results/propagation_stopping_<pool>.json and prints one table row per pool.
"""
import argparse
import json
from pathlib import Path

import jax
import numpy as np

from adapt.core import mesh as mesh_lib
from adapt.core.config import load_config
from adapt.core.job import Timer
from adapt.core.method import MethodInputs
from adapt.data.classes import resolve_classes
from adapt.features import setup
from adapt.features.text import ClassTexts, encode_classes
from adapt.graph import stopping
from methods import hypergraph

MAX_STEPS = 20
RULES = {"fixed 1": ("fixed", 1), "fixed 20": ("fixed", 20), "entropy": ("entropy", 20), "labels": ("labels", 20)}
SETS = {  # name: (N, C, D, cluster noise, text noise, seed, class shares or None)
    "A: N 600, C 4, D 16": (600, 4, 16, 0.35, 0.5, 111, None),
    "B: N 800, C 8, D 32": (800, 8, 32, 0.30, 0.5, 112, None),
    "C: N 1000, C 10, D 32": (1000, 10, 32, 0.40, 0.6, 113, None),
    "D: N 200, C 3, D 16": (200, 3, 16, 0.35, 0.5, 114, None),
    "E: N 400, C 5, D 16": (400, 5, 16, 0.35, 0.5, 115, None),
    "F: N 300, C 3, D 16, shares .6/.3/.1": (300, 3, 16, 0.35, 0.5, 116, (0.6, 0.3, 0.1)),
    "G: N 200, C 3, D 16, noise 0.2": (200, 3, 16, 0.20, 0.5, 117, None),
}
HERE = Path(__file__).parent


def unit(a):
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def synthetic_inputs(n, c, d, noise, text_noise, seed, shares):
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(c, d)))
    labels = rng.choice(c, n, p=shares)
    x = unit(centres[labels] + noise * rng.normal(size=(n, d)))
    t = unit(centres + text_noise * rng.normal(size=(c, d)) / np.sqrt(d))
    mesh = mesh_lib.make_mesh(1)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    texts = ClassTexts(t, None, None, [[]] * c, [[]] * c)
    return MethodInputs(xs, mask, mesh_lib.replicate(t, mesh), 10.0, {"embedding": xs}, texts, mesh,
                        jax.random.key(0)), labels


def fashion_inputs(preset, split, limit):
    """The classification job's inputs as adapt.engine.classify builds them (cached embeddings)."""
    config = load_config(f"configs/hypergraph.py:{preset}")
    with config.unlocked():
        config.pool.split, config.pool.limit = split, limit
    embed, pool, mesh, model, classes = setup.start_job(config, Timer(), check=lambda pool: resolve_classes(
        pool, names=list(config.classes.names) or None))
    rows = setup.embed_job_pool(model, pool, mesh, embed, progress=False)
    texts = encode_classes(model, classes.names, list(config.prompts.templates), classes.descriptions,
                           config.prompts.beta)
    inputs = MethodInputs(x=rows.x, mask=rows.mask, class_weights=mesh_lib.replicate(texts.weights, mesh),
                          logit_scale=float(model.logit_scale), views=rows.views, class_texts=texts, mesh=mesh,
                          key=jax.random.key(config.seed), class_names=list(classes.names), seed=int(config.seed))
    return inputs, np.asarray(classes.labels)[rows.kept]


def trajectory(inputs, labels):
    config = load_config("configs/hypergraph.py")
    with config.unlocked():
        config.method_args.update(stop="fixed", propagations=MAX_STEPS)
    s = hypergraph.make(config).settings
    info = hypergraph.pool_scores(s, inputs, keep_steps=True)[-1]
    acc = [float((p == labels).mean()) for p in info["step_predictions"]]
    n = len(labels)
    kept = {name: stopping.kept_step(rule, info["step_entropy"][:cap], info["step_changed"][:cap], n, cap)
            for name, (rule, cap) in RULES.items()}
    return {"accuracy": acc, "entropy": info["step_entropy"], "changed": info["step_changed"], "kept": kept,
            "kept_accuracy": {name: acc[p - 1] for name, p in kept.items()}}


def row(name, r):
    best = max(r["accuracy"])
    cells = " | ".join(f"{100 * r['kept_accuracy'][k]:.2f} (P {r['kept'][k]})" for k in RULES)
    return f"| {name} | {100 * best:.2f} (P {1 + int(np.argmax(r['accuracy']))}) | {cells} |"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("pool", help="synthetic | a Fashion-MNIST preset")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=10000)
    args = parser.parse_args()
    if args.pool == "synthetic":
        pools = {name: synthetic_inputs(*spec) for name, spec in SETS.items()}
    else:
        pools = {f"{args.pool} {args.split} {args.limit}": fashion_inputs(args.pool, args.split, args.limit)}
    print("| pool | best fixed P | " + " | ".join(RULES) + " |")
    results = {}
    for name, (inputs, labels) in pools.items():
        results[name] = trajectory(inputs, labels)
        print(row(name, results[name]), flush=True)
    tag = args.pool if args.pool == "synthetic" else f"{args.pool}_{args.split}_{args.limit}"
    (HERE / "results" / f"propagation_stopping_{tag}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
