"""Label-free stopping rules for a propagation applied again and again (issue 19 item 6).

The hypergraph method reapplies F <- (1 - alpha)(I - alpha S)^-1 F up to P times (the official loop:
20). Each application spreads the prototypes' evidence further; too many smooth every row towards
the graph's dominant eigenvector (the same class mix everywhere). A rule reads only the scores,
never a label, after each application p:

- "fixed": all P applications (the official loop, last iterate kept).
- "entropy": keep F_p at the first p where the mean entropy of the row-normalised scores stops
  falling (H_{p+1} >= H_p - ENTROPY_TOL nats): while evidence reaches rows that had little, rows
  grow more decided; once the rows start to mix towards one common distribution, they grow less
  decided. One look-ahead application is computed and dropped.
- "labels": keep F_p at the first p >= 2 where fewer than LABEL_SHARE of the pool rows changed
  their prediction in step p (the labels have settled).

Statistics are taken on the host in float64 over the n real rows (the same rows on any device
count; ties of the prediction follow `outputs.predict`).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from adapt.core.distributed import to_host
from adapt.graph import outputs as graph_outputs

RULES = ("fixed", "entropy", "labels")
ENTROPY_TOL = 1e-6
LABEL_SHARE = 0.005


def mean_entropy(z: np.ndarray) -> float:
    """z (n, C) >= 0 -> mean over rows of the entropy (nats) of z's row-normalised rows (an all-zero
    row counts as uniform, as `outputs.row_normalize` makes it)."""
    z = np.maximum(np.asarray(z, np.float64), 0.0)
    total = z.sum(1, keepdims=True)
    p = np.where(total > 0, z / np.where(total > 0, total, 1.0), 1.0 / z.shape[1])
    return float(-(p * np.log(np.where(p > 0, p, 1.0))).sum(1).mean())


def kept_step(rule: str, entropy: list[float], changed: list[int], n: int, max_steps: int) -> int | None:
    """The application (1-based) the rule keeps, from the statistics of steps 1..len(entropy)
    (changed[p - 1] = rows whose prediction changed in step p; changed[0] = 0); None while undecided."""
    steps = len(entropy)
    if rule == "entropy":
        for p in range(1, steps):
            if entropy[p] >= entropy[p - 1] - ENTROPY_TOL:
                return p
    elif rule == "labels":
        for p in range(2, steps + 1):
            if changed[p - 1] < LABEL_SHARE * n:
                return p
    elif rule != "fixed":
        raise ValueError(f"unknown stopping rule {rule!r}; one of {RULES}")
    return min(steps, max_steps) if steps >= max_steps else None


def repeat(step: Callable, z, n: int, rule: str = "fixed", max_steps: int = 20, keep_predictions=False):
    """Applies `z, residual = step(z)` until `rule` decides (at most max_steps applications). z: (Np, C) scores, the first n rows real. Returns (the kept
    z, its residual, record: kept step, steps computed, per-step entropy and changed rows, and with
    keep_predictions the per-step predictions (steps, n))."""
    entropy, changed, preds, previous, current = [], [], [], None, None
    while True:
        z, residual = step(z)
        previous, current = current, (z, residual)
        host = to_host(z)[:n]
        pred = graph_outputs.predict(2.0 * host - host.sum(1, keepdims=True))  # the method's F rows
        changed.append(0 if not preds else int((pred != preds[-1]).sum()))
        entropy.append(mean_entropy(host))
        preds.append(pred)
        choice = kept_step(rule, entropy, changed, n, max_steps)
        if choice is not None:
            break
    z, residual = current if choice == len(entropy) else previous
    record = {"kept": choice, "computed": len(entropy), "entropy": entropy, "changed": changed}
    if keep_predictions:
        record["step_predictions"] = np.stack(preds)
    return z, residual, record
