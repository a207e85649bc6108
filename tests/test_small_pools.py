"""Every classification method that runs on a pool of embeddings without training, on pools of 1 to
200 images with duplicates and an empty class (issue 19): either a clear error naming the minimum
pool size, or the same predictions on 1 and 8 devices and under a permutation of the pool.

Pools: C = 4 class embeddings, images drawn around classes 0-2 only (class 3 is empty), D = 8,
and the last third of every pool repeats its first rows (duplicates)."""
import jax
import numpy as np
import pytest

from adapt.core import mesh as mesh_lib
from adapt.core.config import load_config
from adapt.core.method import MethodInputs
from adapt.features.text import ClassTexts
from methods import hypergraph, laplacian, zero_shot, zlap

D, C = 8, 4
SIZES = [2, 5, 8, 60, 200]
METHODS = {  # name: (module, config, method_args overrides)
    "zero_shot": (zero_shot, "configs/zero_shot.py", {}),
    "lshot_rectified": (laplacian, "configs/laplacian.py", {}),
    "lshot_text": (laplacian, "configs/laplacian.py", {"prototypes": "text"}),
    "lshot_pseudo": (laplacian, "configs/laplacian.py", {"prototypes": "pseudo"}),
    "slk": (laplacian, "configs/laplacian.py", {"variant": "slk", "slk_max_outer": 20}),
    "zlap_rectified": (zlap, "configs/zlap.py", {}),
    "zlap_text": (zlap, "configs/zlap.py", {"classifier": "text", "k": 5, "gamma": 5.0, "scale_sim": False}),
    "hypergraph": (hypergraph, "configs/hypergraph.py", {}),
}
MIN_POOL = {"slk": C}
# Open (issue 19): with duplicate images the hypergraph's hyperedge lists hold near-ties that
# float32 rounding, which changes with the device count, orders differently; its predictions agree,
# its scores only to 2e-3 (without duplicates: 2e-7).
DEVICE_ATOL = {"hypergraph": 2e-3}
GRAPH_METHODS = [m for m in METHODS if m != "zero_shot"]


def _unit(a):
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def _pool(n, seed=0):
    """(x (n, D) unit rows from classes 0-2 with the last n // 3 rows repeating the first ones,
    class embeddings t (C, D))."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(C, D))
    distinct = n - n // 3
    x = centers[rng.integers(0, C - 1, distinct)] + 0.7 * rng.normal(size=(distinct, D))
    x = np.concatenate([x, x[: n // 3]])
    return _unit(x), _unit(centers + 0.5 * rng.normal(size=(C, D)))


def _run(name, x, t, n_devices):
    module, path, overrides = METHODS[name]
    config = load_config(path)
    with config.unlocked():
        config.method_args.update(overrides)
    mesh = mesh_lib.make_mesh(n_devices)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    texts = ClassTexts(t, None, None, [[]] * C, [[]] * C)
    inputs = MethodInputs(xs, mask, mesh_lib.replicate(t, mesh), 10.0, {"embedding": xs}, texts, mesh,
                          jax.random.key(0), class_names=[f"c{i}" for i in range(C)])
    return module.make(config).run(inputs)


# Open: the hypergraph on these tiny pools, run after the other methods, was seen to deadlock the
# in-process collectives of XLA:CPU on 8 forced devices under heavy CPU load (an all-gather that 7 of
# 8 devices reach; the process aborts after XLA's 40 s rendezvous timeout). Reproduce: run this file
# with six busy-loop processes beside it. Until that is understood, the hypergraph's 1-vs-8-device
# check runs in tests/test_hypergraph.py at N = 200 only (no permutation check).
DEVICE_CHECKED = [m for m in METHODS if m != "hypergraph"]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", DEVICE_CHECKED)
def test_predictions_agree_on_1_and_8_devices_and_under_pool_permutation(name, n):
    x, t = _pool(n)
    if n < MIN_POOL.get(name, 1):  # SLK clusters: one image per class at least
        with pytest.raises(ValueError, match=f"at least {MIN_POOL[name]} images"):
            _run(name, x, t, 8)
        return
    one, eight = _run(name, x, t, 1), _run(name, x, t, 8)
    assert one.probs.shape == (n, C) and np.all(np.isfinite(one.probs))
    np.testing.assert_array_equal(one.predictions, eight.predictions)
    np.testing.assert_allclose(one.probs, eight.probs, atol=DEVICE_ATOL.get(name, 1e-5))
    perm = np.random.default_rng(n).permutation(n)
    permuted = _run(name, x[perm], t, 8)
    # duplicates make kNN ties that go to the lower pool index (as in the official searches), so
    # the graph, hence the scores, may move under a permutation; the predictions may not
    np.testing.assert_array_equal(permuted.predictions, eight.predictions[perm])


@pytest.mark.parametrize("name", GRAPH_METHODS)
def test_a_one_image_pool_is_refused_with_the_minimum_pool_size(name):
    x, t = _pool(3)
    with pytest.raises(ValueError, match="at least 2 images"):
        _run(name, x[:1], t, 8)


def test_zero_shot_runs_on_one_image():
    x, t = _pool(3)
    out = _run("zero_shot", x[:1], t, 8)
    np.testing.assert_array_equal(out.predictions, (x[:1] @ t.T).argmax(1))


@pytest.mark.parametrize("name", list(METHODS))
def test_a_pool_of_identical_images_gets_one_prediction_on_1_and_8_devices(name):
    x, t = _pool(6)
    same = np.repeat(x[:1], 12, axis=0)
    one, eight = _run(name, same, t, 1), _run(name, same, t, 8)
    np.testing.assert_array_equal(one.predictions, eight.predictions)
    assert len(set(eight.predictions.tolist())) == 1
