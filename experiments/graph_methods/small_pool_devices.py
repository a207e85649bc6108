"""The hypergraph on tiny pools, 1 vs 8 devices and a permuted pool (issue 19, README section "1e,
continued"): the sweep pools of tests/test_hypergraph.py (C = 4, D = 10, embedding + text view,
cca_floor 0), with and without duplicate rows, and at N = 20 how far the two device counts' node
embeddings lie apart while their pairwise distances (the kernel medians) agree.

    PYTHONPATH=. python experiments/graph_methods/small_pool_devices.py
"""
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402

from adapt.core import mesh as mesh_lib  # noqa: E402
from adapt.graph import cca  # noqa: E402
from methods import hypergraph  # noqa: E402
from tests import test_hypergraph as th  # noqa: E402


def pool(n, duplicates, seed=3):
    """th._sweep_pool, optionally without its repeated last third."""
    if duplicates:
        return th._sweep_pool(n, seed)[:2]
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 10))
    x = centres[rng.integers(0, 3, n)] + 0.6 * rng.normal(size=(n, 10))
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return unit(x), unit(centres)


def recorded_run(x, t, mesh):
    """The run's outputs, its node embeddings and its kernel medians (wrapped, not changed)."""
    seen = {"nodes": [], "medians": []}
    embed, median = hypergraph.embed_nodes, cca.pair_median
    hypergraph.embed_nodes = lambda *a, **k: seen["nodes"].append(embed(*a, **k)) or seen["nodes"][-1]
    cca.pair_median = lambda *a, **k: seen["medians"].append(median(*a, **k)) or seen["medians"][-1]
    try:
        return th._sweep_run(x, t, mesh), seen
    finally:
        hypergraph.embed_nodes, cca.pair_median = embed, median


def main():
    one, eight = mesh_lib.make_mesh(1), mesh_lib.make_mesh(8)
    for duplicates in (False, True):
        for n in (5, 8, 20, 60):
            x, t = pool(n, duplicates)
            a, b = th._sweep_run(x, t, one), th._sweep_run(x, t, eight)
            perm = np.random.default_rng(n).permutation(n)
            p = th._sweep_run(x[perm], t, eight)
            print(f"duplicates={duplicates} N={n}: 1 vs 8 devices predictions equal "
                  f"{bool((a.predictions == b.predictions).all())}, probabilities max diff "
                  f"{np.abs(a.probs - b.probs).max():.1e}; permuted pool predictions equal "
                  f"{bool((p.predictions == b.predictions[perm]).all())}, max diff "
                  f"{np.abs(p.probs - b.probs[perm]).max():.1e}", flush=True)
    x, t = pool(20, False)
    (_, ra), (_, rb) = recorded_run(x, t, one), recorded_run(x, t, eight)
    rows = np.r_[0:20, th.SWEEP_ROWS:th.SWEEP_ROWS + 4]  # pool rows, then the 4 prototype rows
    na, nb = np.asarray(ra["nodes"][0][0])[:, rows], np.asarray(rb["nodes"][0][0])[:, rows]
    print(f"N=20: node embeddings 1 vs 8 devices, max row difference {np.abs(na - nb).max():.2f}; "
          f"kernel medians max difference {np.abs(np.subtract(ra['medians'], rb['medians'])).max():.1e}")


if __name__ == "__main__":
    main()
