"""Loki's other use, as in its paper: predicting classes that have no prompt.

On a labelled pool (default Fashion-MNIST test, as given; `digits` also), the offline model's
zero-shot classifier (its class-map head, one template) is built for a subset of K prompted classes
only; its posterior p(c | x) over those K is turned into a prediction over all classes Y by Loki,
argmin_{y in Y} sum_c p(c | x) d(y, c)^2, d the WordNet hypernym-path metric (adapt/output/loki.py).
Argmax can never predict an unprompted class; Loki can. Reported per K (random subsets, seeds 0-4,
drawn before looking at any result): accuracy on all images for argmax over the K and for Loki over
all Y, and Loki's accuracy on the images of unprompted classes.

Usage: python experiments/class_texts/loki_unprompted.py [fashion_mnist|digits]
"""
from __future__ import annotations

import sys

import numpy as np

from adapt.core import distributed
from adapt.core.config import load_config
from adapt.core.method import Head
from adapt.data import resolve_classes
from adapt.features import setup
from adapt.features.text import encode_classes
from adapt.output import loki

SEEDS = range(5)


def pool_probs_setup(preset: str):
    """(labels (N,), class names, model, imagenet_probs view (N, 1000)) of the preset's pool."""
    config = load_config(f"configs/zero_shot.py:{preset}")
    pool, mesh, model = setup.open_job_pool(config), setup.job_mesh(config), setup.load_job_model(config)
    classes = resolve_classes(pool)
    rows = setup.embed_job_pool(model, pool, mesh, setup.embed_options(config), progress=False)
    view = distributed.to_host(rows.views["imagenet_probs"])[:len(rows.kept)]
    return np.asarray(classes.labels)[rows.kept], list(classes.names), model, view, list(config.prompts.templates)


def main(preset: str = "fashion_mnist") -> int:
    labels, names, model, view, templates = pool_probs_setup(preset)
    offsets, synsets = loki.wordnet_synsets(names)
    dist = loki.wordnet_distances(offsets, synsets)
    n = len(names)
    print(f"| prompted K of {n} | argmax over K, all images | Loki over all {n}, all images | "
          f"Loki on unprompted-class images | argmax over all {n} prompted |")
    print("|---|---|---|---|---|")
    full = encode_classes(model, names, templates, warn_identical=False)
    everyone = Head(weights=full.view_weights, view="imagenet_probs", normalize=False, scale=1.0).probs(view)
    full_acc = (everyone.argmax(1) == labels).mean()
    for k in range(2, n, 2):
        rows = []
        for seed in SEEDS:
            keep = np.sort(np.random.default_rng(seed).choice(n, k, replace=False))
            texts = encode_classes(model, [names[i] for i in keep], templates, warn_identical=False)
            probs = Head(weights=texts.view_weights, view="imagenet_probs", normalize=False, scale=1.0).probs(view)
            argmax = keep[probs.argmax(1)]
            pred = loki.loki_predict(probs, dist[:, keep])
            unseen = ~np.isin(labels, keep)
            rows.append(((argmax == labels).mean(), (pred == labels).mean(), (pred[unseen] == labels[unseen]).mean()))
        a = 100 * np.mean(rows, axis=0)
        print(f"| {k} | {a[0]:.2f} | {a[1]:.2f} | {a[2]:.2f} | {100 * full_acc:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
