"""Loki: the Fréchet mean of the class posterior under a metric on the classes (Roberts et al.,
"Geometry-Aware Adaptation for Pretrained Models", NeurIPS 2023).

  y_hat(x) = argmin_{y in Y} sum_{c in K} p(c | x) d(y, c)^2

K: the classes the model scores (the prompted classes); Y: the candidate set, K itself or larger
(classes with no prompt can be predicted when they sit "between" prompted classes in the metric).
Metrics d:
  wordnet  shortest path between the classes' WordNet noun synsets along hypernym edges (the synset
           the offline model's grounding picks for each name; distance through the nearest common
           ancestor, every hypernym of a synset followed). Needs every candidate name in WordNet.
  text     self-derived: Euclidean distance between the classes' L2-normalised text embeddings,
           ||t_y - t_c|| = sqrt(2 - 2 cos); classes with no prompt in the decision are embedded
           with the same prompts only to place them in the metric.
  auto     wordnet when every candidate name is in WordNet, else text.
The paper's metrics are graph shortest paths (WordNet's hierarchy for ImageNet among them) and
distances derived from the models' own embeddings, as here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from adapt.features.synonyms import wordnet_tables
from adapt.vocab.wordnet_descriptions import choose_synset

METRICS = ("auto", "wordnet", "text")


def loki_predict(probs: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """probs (N, K) over the prompted classes, dist (M, K) from each candidate to each prompted class
    -> (N,) index of the candidate minimising the expected squared distance (ties: the first)."""
    risk = np.asarray(probs, np.float64) @ (np.asarray(dist, np.float64) ** 2).T
    return risk.argmin(axis=1)


def text_distances(class_emb: np.ndarray) -> np.ndarray:
    """(M, M) Euclidean distances between L2-normalised rows of class_emb (M, D)."""
    e = class_emb / np.maximum(np.linalg.norm(class_emb, axis=1, keepdims=True), 1e-12)
    return np.sqrt(np.maximum(2.0 - 2.0 * (e @ e.T), 0.0))


def up_distances(offset: str, synsets: dict) -> dict[str, int]:
    """Each ancestor of `offset` (itself at 0) -> fewest hypernym edges up to it."""
    out, frontier = {offset: 0}, [offset]
    while frontier:
        nxt = []
        for o in frontier:
            for h in synsets[o].hypernyms if o in synsets else ():
                if h not in out:
                    out[h] = out[o] + 1
                    nxt.append(h)
        frontier = nxt
    return out


def path_distance(a: dict[str, int], b: dict[str, int]) -> float:
    """Shortest hypernym path between two synsets given their `up_distances` (inf: no common ancestor)."""
    common = a.keys() & b.keys()
    return float(min(a[u] + b[u] for u in common)) if common else float("inf")


def wordnet_synsets(names: Sequence[str], root: str | None = None):
    """(offsets: each name's synset or None, synsets) read from the Debian WordNet files."""
    index, synsets = wordnet_tables(root)
    return [choose_synset(n, index, synsets)[1] for n in names], synsets


def wordnet_distances(offsets: Sequence[str], synsets: dict) -> np.ndarray:
    """(M, M) hypernym-path distances between the synsets `offsets` (no None among them)."""
    ups = [up_distances(o, synsets) for o in offsets]
    d = np.array([[path_distance(a, b) for b in ups] for a in ups])
    if not np.isfinite(d).all():  # separate noun trees: farther than any path that exists
        d[~np.isfinite(d)] = d[np.isfinite(d)].max() + 1
    return d
