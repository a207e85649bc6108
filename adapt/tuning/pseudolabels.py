"""Pseudo-label selection shared by the tuning methods (pseudolabel_prompt_tuning.md, nola.md).

`per_class_topk` is the clean, order-independent, single-label per-class top-K: for each class c
the K images with the highest P_ic among the images whose argmax is c. A class with no argmax image
takes the images ranked 2nd for it, then 3rd (NoLA's fallback), among images not already chosen.
Classes are served in order and an image keeps the first label it got (NoLA's "first occurrence
kept"; every argmax class comes first), so a class whose 2nd/3rd-choice images are all taken
stays short, with count 0 (the spec: "a class left with fewer than K images stays short and is
reported"; `fallback` names the rank looked at). Only a class that is nobody's 1st, 2nd or 3rd
prediction raises. Ties are broken by the lower pool index.

GRIP's K (`grip_k`) is the spec's floor((r + 1) N / (10 C)), which is 0 on small pools (N = 37,
C = 10, round 1); `schedule` raises such a round to K = 1 (declared deviation: a round with K = 0
would train on nothing; one image per class is the smallest round that trains).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Selection(NamedTuple):
    indices: np.ndarray  # (M,) pool rows, grouped by class
    labels: np.ndarray   # (M,) their pseudo-labels
    counts: np.ndarray   # (C,) chosen per class
    fallback: dict       # class -> rank used (2 or 3) for classes without argmax images


class EmptyClassError(ValueError):
    pass


def _ranked(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The k candidates with the highest score; ties -> lower index first."""
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order[:k]]


def per_class_topk(probs: np.ndarray, k: int, *, fallback: bool = True) -> Selection:
    """probs (N, C) -> at most k images per class (see the module docstring)."""
    probs = np.asarray(probs, np.float64)
    n, c = probs.shape
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    ranks = np.argsort(-probs, axis=1, kind="stable")
    taken = np.zeros(n, bool)
    chosen: dict[int, np.ndarray] = {}
    for cls in range(c):
        cand = np.flatnonzero(ranks[:, 0] == cls)
        if len(cand):
            chosen[cls] = _ranked(probs[:, cls], cand, k)
            taken[chosen[cls]] = True
    used = {}
    for cls in range(c):
        if cls in chosen:
            continue
        if not fallback:
            chosen[cls] = np.zeros(0, np.int64)
            continue
        ranked_by = [rank for rank in (1, 2) if rank < c and np.any(ranks[:, rank] == cls)]
        if not ranked_by:
            raise EmptyClassError(f"class {cls} is nobody's 1st, 2nd or 3rd prediction: no pseudo-label")
        chosen[cls] = np.zeros(0, np.int64)  # every candidate already chosen: the class stays short
        used[cls] = ranked_by[-1] + 1
        for rank in ranked_by:
            cand = np.flatnonzero((ranks[:, rank] == cls) & ~taken)
            if len(cand):
                chosen[cls] = _ranked(probs[:, cls], cand, k)
                taken[chosen[cls]] = True
                used[cls] = rank + 1
                break
    idx = np.concatenate([chosen[c_] for c_ in range(c)]).astype(np.int64)
    lab = np.concatenate([np.full(len(chosen[c_]), c_) for c_ in range(c)]).astype(np.int32)
    return Selection(idx, lab, np.array([len(chosen[c_]) for c_ in range(c)]), used)


def grip_k(n: int, c: int, round_index: int) -> int:
    """K of GRIP round r (0-based): floor((r + 1) N / (10 C)), capped at floor(N / C)."""
    return min((round_index + 1) * n // (10 * c), n // c)


def schedule(strategy: str, n: int, c: int, rounds: int = 10, fixed_k: int = 16) -> list[int]:
    """K per training round for FPL (one round), IFPL (fixed K, relabelled) and GRIP (growing)."""
    if strategy == "fpl":
        return [fixed_k]
    if strategy == "ifpl":
        return [fixed_k] * rounds
    if strategy == "grip":
        return [max(1, grip_k(n, c, r)) for r in range(rounds)]
    raise ValueError(f"strategy must be fpl, ifpl or grip, not {strategy!r}")


def split_train_val(indices: np.ndarray, labels: np.ndarray, k: int, seed: int = 0):
    """80/20 split of the pseudo-labelled set when K >= 10 (the 20% is only logged), else all train."""
    if k < 10:
        return (indices, labels), (indices[:0], labels[:0])
    perm = np.random.default_rng(seed).permutation(len(indices))
    cut = int(round(0.8 * len(indices)))
    tr, va = perm[:cut], perm[cut:]
    return (indices[tr], labels[tr]), (indices[va], labels[va])
