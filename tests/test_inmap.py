"""InMaP (methods/inmap.py, adapt/graph/sinkhorn.py) against the NumPy restatement of the official
code (tests/reference_inmap.py), and its properties: 1 vs 8 devices, pool order, duplicates."""
import jax.numpy as jnp
import numpy as np
import pytest

from adapt.core import mesh as mesh_lib
from adapt.core.config import load_config
from adapt.graph.sinkhorn import sinkhorn
from methods import inmap
from tests import reference_inmap as ref
from tests.method_inputs import pool_inputs

N, D, C = 150, 16, 4
ITERS = 50  # the official 2000 steps, shortened; the same compiled loop


def _unit(a):
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    """Clustered unit features (N, D) and noisy unit class embeddings (C, D)."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(C, D))
    x = centers[rng.integers(0, C, N)] + 0.9 * rng.normal(size=(N, D))
    t = centers + 0.5 * rng.normal(size=(C, D))
    return _unit(x), _unit(t)


def _run(x, t, n_devices=8, **overrides):
    config = load_config("configs/inmap.py")
    with config.unlocked():
        config.method_args.iters = ITERS
        for k, v in overrides.items():
            config.method_args[k] = v
    return inmap.make(config).run(pool_inputs(x, t, n_devices))


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_sinkhorn_matches_the_official_restatement_on_sharded_padded_rows(data, gamma):
    x, t = data
    x = x[:147]  # 147 rows: 5 padding rows on 8 devices
    mesh = mesh_lib.make_mesh(8)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    got = np.asarray(sinkhorn(xs @ jnp.asarray(t).T, mask, 0.01, 20, gamma))
    want = ref.sinkhorn(x.astype(np.float64) @ t.T.astype(np.float64), 0.01, gamma, 20)
    np.testing.assert_allclose(got[:147], want, atol=1e-5)
    assert np.all(got[147:] == 0)
    np.testing.assert_allclose(got[:147].sum(1), 1.0, atol=1e-5)
    if gamma == 0:  # run to convergence, every class gets n / C of the mass
        balanced = np.asarray(sinkhorn(xs @ jnp.asarray(t).T, mask, 0.01, 2000, 0.0))
        np.testing.assert_allclose(balanced.sum(0), 147 / C, rtol=1e-3)


def test_proxies_match_the_official_restatement(data):
    x, t = data
    out = _run(x, t, 8)
    want, lr = ref.inmap(x, t, iters=ITERS)
    np.testing.assert_allclose(out.head.weights, want, atol=1e-5)
    assert out.metrics["final_lr"] == pytest.approx(lr)
    assert out.metrics["lr_halvings"] > 0  # the halving rule is exercised
    assert 0 < out.metrics["last_step_that_moved_proxies"] <= ITERS
    assert out.head.scale == pytest.approx(25.0) and out.head.center is None
    np.testing.assert_allclose(out.head.probs(x), out.probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(out.predictions, np.argmax(x @ want.T, axis=1))


def test_centred_variant_is_the_official_code_on_centred_features(data):
    x, t = data
    out = _run(x, t, 8, center=True)
    xc = _unit(x - x.astype(np.float64).mean(0))
    want, _ = ref.inmap(xc, t, iters=ITERS)
    np.testing.assert_allclose(out.head.weights, want, atol=1e-5)
    np.testing.assert_allclose(out.head.center, x.astype(np.float64).mean(0), atol=1e-6)
    np.testing.assert_allclose(out.head.probs(x), out.probs, rtol=1e-4, atol=1e-6)


def test_one_and_eight_devices_agree_and_pool_order_does_not_matter(data):
    x, t = data
    one, eight = _run(x, t, 1), _run(x, t, 8)
    np.testing.assert_allclose(one.head.weights, eight.head.weights, atol=1e-6)
    np.testing.assert_array_equal(one.predictions, eight.predictions)
    assert one.metrics["lr_halvings"] == eight.metrics["lr_halvings"]
    perm = np.random.default_rng(3).permutation(N)
    permuted = _run(x[perm], t, 8)
    np.testing.assert_allclose(permuted.head.weights, eight.head.weights, atol=2e-6)
    np.testing.assert_array_equal(permuted.predictions, eight.predictions[perm])
    np.testing.assert_allclose(permuted.probs, eight.probs[perm], rtol=1e-4, atol=1e-6)


def test_duplicates_in_the_pool(data):
    x, t = data
    some = np.concatenate([x, x[:40], x[:10]])  # 50 repeated images: still the official result
    want, _ = ref.inmap(some, t, iters=ITERS)
    np.testing.assert_allclose(_run(some, t, 8).head.weights, want, atol=1e-5)
    # every image twice: the same labels per row, twice the gradient over twice n, the same proxies
    twice = _run(np.concatenate([x, x]), t, 8)
    np.testing.assert_allclose(twice.head.weights, _run(x, t, 8).head.weights, atol=2e-6)


def test_settings_are_checked():
    for key, bad in (("tau_i", 0.0), ("iters", -1), ("block", 0)):
        with pytest.raises(ValueError, match=key):
            _run(np.eye(C, D, dtype=np.float32), np.eye(C, D, dtype=np.float32), 1, **{key: bad})
