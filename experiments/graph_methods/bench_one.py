"""One timed run of one graph method on synthetic pool embeddings; prints one JSON line.

    python experiments/graph_methods/bench_one.py --impl ours --method zlap --n 50000

impl: ours (the jitted JAX code of methods/, one CPU device) or reference (the NumPy/SciPy
restatements of tests/reference_graph.py, float64 where the official code is). hypergraph uses two
views (x and a noisy random projection of it) with the text vectors as prototypes of the first;
its reference is dense (N' x N' matrices and an O(N'^3) solve, as the official code), so it only
runs at a few thousand images. Each run is its own
process, so `peak_rss_mb` (ru_maxrss at the end) is that run's peak memory.
Data: C Gaussian clusters on the unit sphere of R^D, class vectors = noisy cluster centres
(`synthetic`), the same for both implementations.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def synthetic(n, d, c, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(c, d)) / np.sqrt(d)
    labels = rng.integers(0, c, n)
    x = centers[labels] + 6.0 * rng.normal(size=(n, d)) / np.sqrt(d)  # zero-shot about 85%
    t = centers + 0.8 * rng.normal(size=(c, d)) / np.sqrt(d)
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return unit(x), unit(t), labels


def second_view(x, seed=1, dim=256):
    """A second view of the same images: a fixed random projection of x plus noise (R^256)."""
    rng = np.random.default_rng(seed)
    proj = rng.normal(size=(x.shape[1], dim)) / np.sqrt(x.shape[1])
    return (x @ proj + 0.5 * rng.normal(size=(x.shape[0], dim)) / np.sqrt(dim)).astype(np.float32)


def run_ours(method, x, t, k):
    import jax
    import jax.numpy as jnp

    from adapt.core import mesh as mesh_lib
    from adapt.graph import bound as graph_bound
    from methods import hypergraph, laplacian, zlap

    mesh = mesh_lib.make_mesh(1)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    if method == "hypergraph":
        x2, _ = mesh_lib.shard_rows(second_view(x), mesh)
        z, _, _ = hypergraph.tmv_hlp([xs, x2], [jnp.asarray(t), None], mask, mesh, k=k, cca_floor=0.0)
        scores = z
    elif method == "zlap":
        state, _, _ = zlap.transductive(xs, mask, jnp.asarray(t), k=k, gamma=5.0, alpha=0.3, mesh=mesh)
        scores = state.z_image
    else:
        nb = laplacian.knn_graph(xs, mask, k, mesh)
        res = graph_bound.bound_update(laplacian.text_unary(xs, jnp.asarray(t), 30.0), nb, 2.0, mask)
        scores = res.y
    return np.asarray(jax.block_until_ready(scores))[: x.shape[0]]


def run_reference(method, x, t, k):
    from tests import reference_graph as ref

    if method == "hypergraph":
        from tests import reference_hypergraph

        return reference_hypergraph.tmv_hlp([x, second_view(x)], [t, None], k=k, cca_floor=0.0)[0]
    if method == "zlap":
        return ref.zlap_transductive(x, t, k=k, gamma=5.0, alpha=0.3)
    kernel = ref.lshot_affinity(x, k)
    unary = -30.0 * x.astype(np.float64) @ t.T.astype(np.float64)
    return ref.lshot_bound_update(unary, kernel, 2.0)[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--impl", choices=["ours", "reference"], required=True)
    p.add_argument("--method", choices=["zlap", "laplacian", "hypergraph"], required=True)
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--c", type=int, default=10)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--save", default="", help="write the predictions (.npy) here")
    a = p.parse_args()
    x, t, labels = synthetic(a.n, a.d, a.c)
    start = time.perf_counter()
    scores = (run_ours if a.impl == "ours" else run_reference)(a.method, x, t, a.k)
    seconds = time.perf_counter() - start
    pred = scores.argmax(1)
    if a.save:
        np.save(a.save, pred)
    print(json.dumps(dict(impl=a.impl, method=a.method, n=a.n, d=a.d, c=a.c, k=a.k, seconds=round(seconds, 2),
                          peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                          accuracy=round(float((pred == labels).mean()), 4),
                          threads=os.environ.get("OMP_NUM_THREADS", "default"))), flush=True)


if __name__ == "__main__":
    main()
