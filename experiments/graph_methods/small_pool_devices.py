"""The hypergraph on tiny pools, 1 vs 8 devices and permuted pools (issue 19, README section 1e,
"eighth session"): the sweep pools of tests/test_hypergraph.py (C = 4, class 3 empty, D = 8,
embedding + text view, `cca_floor=0`), with and without the duplicated last third, on 1 and 8
devices, under an order-keeping permutation (equal rows keep their order, as
tests/test_small_pools.py permutes) and under a plain permutation; and at N = 20 how far the two
device counts' node embeddings lie apart while their inner products (all the graph reads) agree.

    PYTHONPATH=. python experiments/graph_methods/small_pool_devices.py
"""
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402

from adapt.core import mesh as mesh_lib  # noqa: E402
from methods import hypergraph  # noqa: E402
from tests import test_hypergraph as th  # noqa: E402


def pool(n, duplicates, seed=3):
    """th._sweep_pool, optionally without its repeated last third."""
    if duplicates:
        return th._sweep_pool(n, seed)[:2]
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, th.SWEEP_DIM))
    x = centres[rng.integers(0, 3, n)] + 0.6 * rng.normal(size=(n, th.SWEEP_DIM))
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return unit(x), unit(centres)


def order_keeping_permutation(x, seed):
    """A random permutation of the rows of x that keeps equal rows in their original order (how
    tests/test_small_pools.py permutes: kNN ties by index then keep their roles)."""
    perm = np.random.default_rng(seed).permutation(len(x))
    _, group = np.unique(x, axis=0, return_inverse=True)
    for g in np.unique(group):
        perm[np.flatnonzero(group[perm] == g)] = np.flatnonzero(group == g)
    return perm


def recorded_run(x, t, mesh):
    """The run's outputs and its node embeddings (embed_nodes wrapped, not changed)."""
    seen = []
    embed = hypergraph.embed_nodes
    hypergraph.embed_nodes = lambda *a, **k: seen.append(embed(*a, **k)) or seen[-1]
    try:
        return th._sweep_run(x, t, mesh), seen[0]
    finally:
        hypergraph.embed_nodes = embed


def _compare(a, b, rows=slice(None)):
    same = bool((a.predictions[rows] == b.predictions).all())
    return f"{'yes' if same else 'NO'}, {np.abs(a.probs[rows] - b.probs).max():.1e}"


def main():
    one, eight = mesh_lib.make_mesh(1), mesh_lib.make_mesh(8)
    print("| pool | 1 vs 8 devices | order-keeping permutation | plain permutation |")
    print("|---|---|---|---|")
    for duplicates in (False, True):
        for n in (2, 5, 8, 20, 60, 200):
            x, t = pool(n, duplicates)
            a, b = th._sweep_run(x, t, one), th._sweep_run(x, t, eight)
            keep = order_keeping_permutation(x, seed=n)
            plain = np.random.default_rng(n).permutation(n)
            pk, pp = th._sweep_run(x[keep], t, eight), th._sweep_run(x[plain], t, eight)
            print(f"| N = {n}, {'duplicates' if duplicates else 'distinct'} | {_compare(b, a)} | "
                  f"{_compare(b, pk, keep)} | {_compare(b, pp, plain)} |", flush=True)
    x, t = pool(20, False)
    (_, ra), (_, rb) = recorded_run(x, t, one), recorded_run(x, t, eight)
    rows = np.r_[0:20, ra[2]:ra[2] + 4]  # pool rows, then the 4 prototype rows
    na, nb = (np.asarray(r[0], np.float64)[:, rows] for r in (ra, rb))
    gram = max(np.abs(na[i] @ na[j].T - nb[i] @ nb[j].T).max() for i in range(2) for j in range(2))
    print(f"N=20 distinct: node embeddings 1 vs 8 devices, max entry difference {np.abs(na - nb).max():.2f}; "
          f"inner products (within and across views) max difference {gram:.1e}")


if __name__ == "__main__":
    main()
