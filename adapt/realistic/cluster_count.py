"""Label-free choice of the number of clusters K: silhouette search on a subsample (spec s3a.md).

Silhouette of row i (Euclidean distances, scikit-learn's definition): a = mean distance to the other
rows of its cluster, b = the lowest mean distance to the rows of another cluster,
s = (b - a) / max(a, b), and s = 0 for a row alone in its cluster. The score is the mean over rows.
It is computed tile by tile (`adapt.graph.knn.tile_stream`): query rows sharded over the mesh, per-cluster
distance sums accumulated as (block, K), so the (n, n) matrix is never formed.

Search (the official `binary_search`, repeated with narrowed bounds): a pass scores K at the bounds
lo, hi and the middle; then, log2(hi - lo) times, the half on the side of the better bound is kept
and its middle scored. The next pass searches between the scored K values just below and just
above the best K so far; `rounds` passes in all (scores are memoised). The best K is the one with
the highest silhouette (ties: the smaller K).

Grid (`search="grid"`, the default since issue 28): every K in [lo, min(hi, 30)], then K growing
by 15% a step up to hi, all scored; the best K as above. On the offline default model's features
the silhouette curve is low and flat (about 0.05-0.13 for every K), so the binary search's path
decides the answer (it never scored K = 10 on Fashion-MNIST and stopped at 7; on a flat icon pool
it walked to 88). The grid scores every small K, and the estimate is marked `reliable` only when
the best silhouette reaches RELIABLE_SILHOUETTE = 0.25, the level below which Kaufman and Rousseeuw
("Finding Groups in Data", 1990) read a silhouette as "no substantial structure" (a published
threshold, not tuned here). An unreliable estimate is replaced by the user's `k_fallback` when one
is given (adapt.realistic.cvpr), else kept and flagged in metrics.json and report.md.

The subsample: min(n, max(sample_min, ceil(sample_frac * n))) rows drawn without replacement with a
fixed seed, capped at sample_max when > 0 (the cost is n_sample^2 * D per scored K).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from adapt.core import mesh as mesh_lib
from adapt.core.distributed import to_host
from adapt.graph.knn import tile_stream
from adapt.realistic.kmeans import kmeans

RELIABLE_SILHOUETTE = 0.25
GRID_DENSE_UP_TO = 30


def _init(static, rows, dtype):
    return jnp.zeros((rows, static[0]), dtype)


def _tile(static, sums, s, q, k):
    (qn,), (kn, klab) = q.extra, k.extra
    d = jnp.sqrt(jnp.maximum(qn[:, None] + kn[None, :] - 2.0 * s, 0.0))
    d = jnp.where(k.ok[None, :] & (k.ids[None, :] != q.ids[:, None]), d, 0.0)
    return sums + d @ jax.nn.one_hot(klab, static[0], dtype=d.dtype)


def silhouette(x, mask, labels, k: int, *, mesh=None, block: int = 1024) -> float:
    """Mean silhouette of the real rows of x (Np, D) (sharded along `pool`) under labels (Np,)."""
    norms = jnp.sum(x * x, axis=1)
    sums = tile_stream(x, x, _tile, _init, (int(k),), query_mask=mask, key_mask=mask,
                       query_extra=(norms,), key_extra=(norms, labels), block=block, mesh=mesh)
    return float(to_host(_score(sums, labels, mask, k)))


@jax.jit
def _score_jit(sums, labels, mask, eye):
    counts = (jax.nn.one_hot(labels, eye.shape[0]) * mask[:, None]).sum(0)
    own = eye[labels]
    n_own = counts[labels]
    a = jnp.sum(sums * own, axis=1) / jnp.maximum(n_own - 1.0, 1.0)
    means = sums / jnp.maximum(counts, 1.0)[None, :]
    b = jnp.min(jnp.where((own > 0) | (counts[None, :] == 0), jnp.inf, means), axis=1)
    s = jnp.where(n_own > 1, (b - a) / jnp.maximum(jnp.maximum(a, b), 1e-30), 0.0)
    return jnp.sum(jnp.where(mask, s, 0.0)) / jnp.maximum(mask.sum(), 1)


def _score(sums, labels, mask, k):
    return _score_jit(sums, labels, mask, jnp.eye(k, dtype=sums.dtype))


def sample_rows(n: int, *, sample_min: int, sample_frac: float, sample_max: int, seed: int) -> np.ndarray:
    size = min(n, max(sample_min, math.ceil(sample_frac * n)))
    if sample_max > 0:
        size = min(size, sample_max)
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def search_k(score, lo: int, hi: int, rounds: int = 3) -> tuple[int, dict]:
    """The search of the module docstring over integer K in [lo, hi]; score(K) -> float.
    Returns (best K, {K: score} of every scored K)."""
    if not 2 <= lo <= hi:
        raise ValueError(f"K bounds must satisfy 2 <= k_min <= k_max, got {lo}, {hi}")
    seen: dict[int, float] = {}

    def s(k):
        if k not in seen:
            seen[k] = score(k)
        return seen[k]

    def best():
        return max(sorted(seen), key=lambda k: seen[k])  # sorted: ties -> smaller K

    for _ in range(rounds):
        small, big = lo, hi
        mid = (small + big) // 2
        s(small), s(mid), s(big)
        for _ in range(int(math.log2(max(big - small, 1)))):
            if s(big) > s(small):
                small = mid
            else:
                big = mid
            mid = (small + big) // 2
            s(mid)
        b = best()
        below = [k for k in seen if k < b]
        above = [k for k in seen if k > b]
        lo, hi = (max(below) if below else b), (min(above) if above else b)
        if hi - lo <= 2 and all(k in seen for k in range(lo, hi + 1)):
            break
    return best(), dict(sorted(seen.items()))


def grid_points(lo: int, hi: int) -> list[int]:
    """Every K in [lo, min(hi, 30)], then K x 1.15 (at least +1) a step, and hi itself."""
    ks = list(range(lo, min(hi, GRID_DENSE_UP_TO) + 1))
    while ks[-1] < hi:
        ks.append(min(hi, max(ks[-1] + 1, int(round(ks[-1] * 1.15)))))
    return ks


def search_grid(score, lo: int, hi: int) -> tuple[int, dict]:
    """Scores every K of grid_points(lo, hi) -> (best K (ties: smaller), {K: score})."""
    if not 2 <= lo <= hi:
        raise ValueError(f"K bounds must satisfy 2 <= k_min <= k_max, got {lo}, {hi}")
    seen = {k: score(k) for k in grid_points(lo, hi)}
    return max(sorted(seen), key=lambda k: seen[k]), seen


def estimate_k(x_host: np.ndarray, *, k_min: int = 2, k_max: int = 100, rounds: int = 3,
               sample_min: int = 30000, sample_frac: float = 0.5, sample_max: int = 0,
               n_init: int = 3, max_iter: int = 300, seed: int = 0, mesh=None,
               block: int = 1024, log=None, search: str = "grid") -> tuple[int, dict]:
    """K with the best silhouette of k-means on a subsample of x_host (N, D); search "grid" or
    "binary" (the official search, `rounds` passes).

    Returns (K, info) with info = {"scores": {K: silhouette}, "sample_size": n, "search": ...,
    "best_silhouette": s, "reliable": s >= RELIABLE_SILHOUETTE}."""
    if search not in ("grid", "binary"):
        raise ValueError(f"method_args.k_search must be 'grid' or 'binary', not {search!r}")
    mesh = mesh or mesh_lib.make_mesh()
    rows = sample_rows(len(x_host), sample_min=sample_min, sample_frac=sample_frac,
                       sample_max=sample_max, seed=seed)
    xs, mask = mesh_lib.shard_rows(np.asarray(x_host, np.float32)[rows], mesh)
    k_max = min(k_max, len(rows) - 1)
    key = jax.random.key(seed)

    def score(k):
        res = kmeans(xs, mask, k, key, n_init=n_init, max_iter=max_iter, mesh=mesh)
        value = silhouette(xs, mask, res.labels, k, mesh=mesh, block=block)
        if log:
            log(f"K={k}: silhouette {value:.4f}")
        return value

    lo, hi = max(2, k_min), max(2, k_max)
    k, scores = search_grid(score, lo, hi) if search == "grid" else search_k(score, lo, hi, rounds)
    best = float(scores[k])
    return k, {"scores": scores, "sample_size": int(len(rows)), "search": search,
               "best_silhouette": best, "reliable": bool(best >= RELIABLE_SILHOUETTE)}
