"""Hypergraph accuracy against the number of propagations P on clean clustered synthetic pools
(issue 19 item 6): three sets, each C Gaussian clusters in D dimensions around random unit
centres, class embeddings = centres + noise; the default config otherwise (views auto = the
embedding and the text view, rectified prototypes). Labels are read only to print accuracies.

  PYTHONPATH=. python experiments/graph_methods/propagations_synthetic.py
"""
import jax
import numpy as np

from adapt.core import mesh as mesh_lib
from adapt.core.config import load_config
from adapt.core.method import MethodInputs
from adapt.features.text import ClassTexts
from methods import hypergraph

SETS = {  # name: (N, C, D, cluster noise, text noise, seed)
    "A: N 600, C 4, D 16": (600, 4, 16, 0.35, 0.5, 11),
    "B: N 800, C 8, D 32": (800, 8, 32, 0.30, 0.5, 12),
    "C: N 1000, C 10, D 32": (1000, 10, 32, 0.40, 0.6, 13),
    "D: N 200, C 3, D 16": (200, 3, 16, 0.35, 0.5, 14),
    "E: N 400, C 5, D 16": (400, 5, 16, 0.35, 0.5, 15),
}
PROPAGATIONS = (1, 2, 5, 10, 20)


def unit(a):
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def make_set(n, c, d, noise, text_noise, seed):
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(c, d)))
    labels = rng.integers(0, c, n)
    x = unit(centres[labels] + noise * rng.normal(size=(n, d)))
    return x, unit(centres + text_noise * rng.normal(size=(c, d)) / np.sqrt(d)), labels


def accuracy(x, t, labels, propagations):
    config = load_config("configs/hypergraph.py")
    with config.unlocked():
        config.method_args.propagations = propagations
    mesh = mesh_lib.make_mesh(1)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    c = t.shape[0]
    texts = ClassTexts(t, None, None, [[]] * c, [[]] * c)
    inputs = MethodInputs(xs, mask, mesh_lib.replicate(t, mesh), 10.0, {"embedding": xs}, texts, mesh,
                          jax.random.key(0))
    return float((hypergraph.make(config).run(inputs).predictions == labels).mean())


def main():
    print("| set | " + " | ".join(f"P = {p}" for p in PROPAGATIONS) + " |")
    print("|---|" + "---|" * len(PROPAGATIONS))
    for name, spec in SETS.items():
        x, t, labels = make_set(*spec)
        accs = [accuracy(x, t, labels, p) for p in PROPAGATIONS]
        print(f"| {name} | " + " | ".join(f"{100 * a:.1f}" for a in accs) + " |")


if __name__ == "__main__":
    main()
