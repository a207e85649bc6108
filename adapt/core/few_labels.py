"""The few-label setting's known labels: `per_class(labels, n)` keeps `n` labels per class.

The same draw as the pseudolabel method's SSL setting (methods/pseudolabel.py `few_labels`): one
`numpy.random.default_rng(seed)` walks the classes in increasing id and picks `n` rows of each
without replacement. A class with fewer than `n` rows in the pool keeps all of them (a tiny pool).
"""
from __future__ import annotations

import numpy as np


def per_class(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """labels (N,) pool labels (-1 unknown) -> (N,) `n` known labels per class, -1 elsewhere."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = np.full(len(labels), -1, np.int64)
    for c in np.unique(labels[labels >= 0]):
        rows = np.flatnonzero(labels == c)
        pick = rng.choice(rows, min(int(n), len(rows)), replace=False)
        out[pick] = c
    return out
