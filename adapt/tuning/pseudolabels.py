"""Pseudo-label selection shared by the tuning methods (pseudolabel_prompt_tuning.md, nola.md).

`per_class_topk` is the clean, order-independent, single-label per-class top-K with the spec's
fallback (pseudolabel_prompt_tuning.md step 3 defers to NoLA's rule, nola.md stage 2a): for each class
c in class order, the K images with the highest P_ic among the images whose argmax is c; a class with
no argmax image takes the images ranked 2nd for it (then 3rd), by P_ic, relabelled c. The per-class
lists are concatenated in class order and a repeated image keeps its first occurrence, so a class
whose fallback images an earlier class already took stays short (count 0 possible, reported; the
spec: "a class left with fewer than K images stays short and is reported"), and an image that an
earlier fallback class took leaves its argmax class's list. Only a class that is nobody's 1st, 2nd
or 3rd prediction raises. Ties are broken by the lower pool index. `fallback` names the rank used.
NoLA's `adapt.tuning.labeller.confident_subset` is this selection.

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


def _class_list(probs: np.ndarray, ranks: np.ndarray, cls: int, k: int, fallback: bool):
    """(the <= k candidates of class cls, the rank they were taken at (1-based))."""
    for rank in range(min(3, probs.shape[1]) if fallback else 1):
        cand = np.flatnonzero(ranks[:, rank] == cls)
        if len(cand):
            return _ranked(probs[:, cls], cand, k), rank + 1
    if not fallback:
        return np.zeros(0, np.int64), 1
    raise EmptyClassError(f"class {cls} is nobody's 1st, 2nd or 3rd prediction: no pseudo-label")


def per_class_topk(probs: np.ndarray, k: int, *, fallback: bool = True) -> Selection:
    """probs (N, C) -> at most k images per class (see the module docstring); fallback=False: a
    class without argmax images gets none."""
    probs = np.asarray(probs, np.float64)
    c = probs.shape[1]
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    ranks = np.argsort(-probs, axis=1, kind="stable")
    idx, lab, used = [], [], {}
    for cls in range(c):
        chosen, rank = _class_list(probs, ranks, cls, k, fallback)
        idx.append(chosen)
        lab.append(np.full(len(chosen), cls))
        if rank > 1:
            used[cls] = rank
    idx, lab = np.concatenate(idx).astype(np.int64), np.concatenate(lab).astype(np.int32)
    _, first = np.unique(idx, return_index=True)
    keep = np.sort(first)
    return Selection(idx[keep], lab[keep], np.bincount(lab[keep], minlength=c), used)


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
