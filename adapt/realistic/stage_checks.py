"""Label-free checks of each S3A stage: did a stage improve on the one before it, by the measures the
method itself uses (issue 28)? No labels are read.

For a stage's predictions p (n,) (a vocabulary word per image, i.e. a partition of the pool):
- silhouette: the mean silhouette of the partition p on the frozen embeddings (the measure the K
  search maximises), on a fixed subsample of at most SAMPLE rows (same rows for every stage);
- vote_agreement: the share of images whose own zero-shot vote (argmax over the whole vocabulary
  of the frozen embedding) is their predicted word (what the vote/Hungarian step maximises).
Each stage after the first is marked per measure "improved" / "hurt" / "same" against the stage
before it (a difference under TOLERANCE counts as "same"). Self-learning's epochs add their
confident-teacher share (the fraction of rows whose teacher probability passed tau).
"""
from __future__ import annotations

import numpy as np

from adapt.core import mesh as mesh_lib
from adapt.realistic.cluster_count import silhouette

SAMPLE = 3000
TOLERANCE = 1e-3


def partition_silhouette(x_host: np.ndarray, labels: np.ndarray, rows: np.ndarray, mesh) -> float:
    """Silhouette of labels (n,) on x_host (n, D) over the sampled `rows`; one cluster -> 0."""
    _, lab = np.unique(np.asarray(labels)[rows], return_inverse=True)
    k = int(lab.max()) + 1
    if k < 2:
        return 0.0
    xs, mask = mesh_lib.shard_rows(np.asarray(x_host, np.float32)[rows], mesh)
    ls, _ = mesh_lib.shard_rows(lab.astype(np.int32), mesh)
    return float(silhouette(xs, mask, ls, k, mesh=mesh))


def sample(n: int, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(n)[:min(n, SAMPLE)])


def verdict(new: float, old: float) -> str:
    if abs(new - old) < TOLERANCE:
        return "same"
    return "improved" if new > old else "hurt"


def stage_checks(stages: list[tuple[str, np.ndarray]], x_host: np.ndarray, votes: np.ndarray, *,
                 mesh=None, rows: np.ndarray | None = None) -> list[dict]:
    """stages: [(name, predictions (n,))] in run order; x_host (n, D) frozen embeddings; votes (n,)
    their zero-shot words. Returns one row per stage with both measures and the verdicts."""
    mesh = mesh or mesh_lib.make_mesh()
    rows = sample(len(votes)) if rows is None else rows
    out: list[dict] = []
    for name, pred in stages:
        pred = np.asarray(pred)
        row = dict(stage=name, silhouette=partition_silhouette(x_host, pred, rows, mesh),
                   vote_agreement=float(np.mean(pred == np.asarray(votes))),
                   distinct_words=int(len(np.unique(pred))))
        if out:
            prev = out[-1]
            row["vs_previous"] = {m: verdict(row[m], prev[m]) for m in ("silhouette", "vote_agreement")}
        out.append(row)
    return out
