"""ZLaP (methods/zlap.py) against the SciPy restatement of the official code, and the spec's checks."""
import jax.numpy as jnp
import numpy as np
import pytest

from adapt.core import mesh as mesh_lib
from adapt.core.config import load_config
from adapt.graph import sparse as graph
from methods import zlap
from tests import reference_graph as ref
from tests.method_inputs import pool_inputs

N, D, C = 150, 16, 4


def _data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(C, D))
    x = centers[rng.integers(0, C, n)] + 0.9 * rng.normal(size=(n, D))
    t = centers + 0.5 * rng.normal(size=(C, D))
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return unit(x), unit(t)


def _state(x, t, n_devices=8, **kw):
    mesh = mesh_lib.make_mesh(n_devices)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    kw = dict(k=5, gamma=5.0, alpha=0.3, tol=1e-8, block=64) | kw
    return zlap.transductive(xs, mask, jnp.asarray(t), mesh=mesh, **kw), mesh


@pytest.mark.parametrize("scale_sim", [False, True])
def test_transductive_and_inductive_scores_match_the_official_restatement(scale_sim):
    x, t = _data()
    (state, _, _), mesh = _state(x, t, scale_sim=scale_sim)
    want = ref.zlap_transductive(x, t, k=5, gamma=5.0, alpha=0.3, scale_sim=scale_sim, tol=1e-10, maxiter=500)
    np.testing.assert_allclose(np.asarray(state.z_image)[:N], want, atol=1e-6)
    new, _ = _data(seed=1, n=24)
    for sparse in (False, True):
        got = zlap.inductive_scores(state, jnp.asarray(new), sparse=sparse, mesh=mesh, block=64)
        want = ref.zlap_inductive(x, t, new, k=5, gamma=5.0, alpha=0.3, scale_sim=scale_sim, sparse_top1=sparse)
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)


def _dense_laplacian(g, alpha):
    n, c = g.classes.shape
    eye = (jnp.zeros((n, n + c)).at[:, c:].set(jnp.eye(n)), jnp.zeros((c, n + c)).at[:, :c].set(jnp.eye(c)))
    s_img, s_cls = zlap.apply_s(g, eye)
    s = np.concatenate([np.asarray(s_cls), np.asarray(s_img)])  # node order [classes; images]
    return np.eye(n + c) - alpha * s


def test_laplacian_is_symmetric_with_spectrum_in_one_minus_alpha_one_plus_alpha():
    x, t = _data()
    (_, g, _), _ = _state(x, t, n_devices=1)
    lap = _dense_laplacian(g, 0.3)
    np.testing.assert_allclose(lap, lap.T, atol=1e-6)
    eig = np.linalg.eigvalsh(lap)
    assert eig.min() >= 0.7 - 1e-5 and eig.max() <= 1.3 + 1e-5


def test_series_solve_equals_the_dense_inverse_and_duality_holds():
    x, t = _data()
    (state, g, info), _ = _state(x, t, n_devices=1)
    lap = _dense_laplacian(g, 0.3)
    z_all = np.linalg.solve(lap.astype(np.float64), np.eye(lap.shape[0])[:, :C])
    np.testing.assert_allclose(np.asarray(state.z_class), z_all[:C], atol=1e-5)
    np.testing.assert_allclose(np.asarray(state.z_image), z_all[C:], atol=1e-5)
    # duality: the inductive score with y = e_(C+i) is the transductive score of pool image i
    i = 17
    y = np.zeros(lap.shape[0])
    y[C + i] = 1.0
    np.testing.assert_allclose(np.linalg.solve(lap, y)[:C], np.asarray(state.z_image)[i], atol=1e-5)
    assert info["terms"] == graph.series_terms(0.3, 1e-8)


@pytest.mark.parametrize("n_new", [8, 5])  # 5 rows do not split over 8 devices (issue 19)
def test_inductive_scores_equal_the_dense_solve_for_a_new_point(n_new):
    x, t = _data()
    (state, g, _), mesh = _state(x, t)
    new, _ = _data(seed=2, n=n_new)
    got = np.asarray(zlap.inductive_scores(state, jnp.asarray(new), mesh=mesh, block=64))
    lap = _dense_laplacian(g, 0.3)
    sim = new @ x.T
    nbr = np.argsort(-sim, axis=1, kind="stable")[:, :5]
    cls = np.argsort(-(new @ t.T), axis=1, kind="stable")[:, :4]
    for r in range(new.shape[0]):
        y = np.zeros(lap.shape[0])
        y[C + nbr[r]] = np.maximum(sim[r, nbr[r]], 0)
        y[cls[r]] = np.maximum(new[r] @ t[cls[r]].T, 0) ** 5
        np.testing.assert_allclose(np.linalg.solve(lap, y)[:C], got[r], atol=1e-5)


def test_small_alpha_limit_is_the_degree_normalised_class_edge():
    x, t = _data()
    alpha = 1e-5
    (state, g, _), _ = _state(x, t, n_devices=1, alpha=alpha)
    w_img_cls = np.asarray(g.classes)[:N]
    d_img = 1 / np.asarray(g.inv_sqrt_image)[:N] ** 2
    d_cls = 1 / np.asarray(g.inv_sqrt_class) ** 2
    want = w_img_cls / np.sqrt(d_img[:, None] * d_cls[None, :])
    np.testing.assert_allclose(np.asarray(state.z_image)[:N] / alpha, want, rtol=1e-3, atol=2e-5)


TEXT_ROW = dict(classifier="text", k=5, gamma=5.0, scale_sim=False)  # the spec's text-classifier row


def _run(x, t, n_devices=8, **overrides):
    config = load_config("configs/zlap.py")
    with config.unlocked():
        for k, v in overrides.items():
            config.method_args[k] = v
    return zlap.make(config).run(pool_inputs(x, t, n_devices))


def test_method_is_device_count_invariant_and_permutation_equivariant():
    x, t = _data()
    one, eight = _run(x, t, 1), _run(x, t, 8)
    np.testing.assert_array_equal(one.predictions, eight.predictions)
    np.testing.assert_allclose(one.probs, eight.probs, rtol=1e-5, atol=1e-7)
    perm = np.random.default_rng(3).permutation(N)
    permuted = _run(x[perm], t, 8)
    np.testing.assert_array_equal(permuted.predictions, eight.predictions[perm])
    np.testing.assert_allclose(permuted.probs, eight.probs[perm], rtol=1e-4, atol=1e-6)
    assert eight.setting == "transductive" and np.allclose(eight.probs.sum(1), 1, atol=1e-5)
    assert eight.head.weights.shape == (C, D) and eight.head.center is not None
    assert eight.metrics["isolated_classes"] == [] and eight.metrics["residual_max_abs"] < 1e-5


def test_a_class_no_image_selects_is_isolated_never_predicted_and_listed():
    x, t = _data()
    x[:, -1] = 0.0  # the pool lives in the first D - 1 dimensions
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    orthogonal = np.zeros((1, D), np.float32)
    orthogonal[0, -1] = 1.0  # cosine 0 with every image: weight 0 even where it is among the top k
    out = _run(x, np.concatenate([t, orthogonal]), 8, center=False, **TEXT_ROW)
    assert out.metrics["isolated_classes"] == [C]
    assert not (out.predictions == C).any()


def test_rectified_classifier_is_zlap_on_the_soft_pool_means_and_device_invariant():
    x, t = _data()
    kw = dict(classifier="rectified", k=10, gamma=3.0, scale_sim=True)
    one, eight = _run(x, t, 1, **kw), _run(x, t, 8, **kw)
    np.testing.assert_array_equal(one.predictions, eight.predictions)
    np.testing.assert_allclose(one.probs, eight.probs, rtol=1e-5, atol=1e-6)
    xc, protos = ref.centred_rectified(x, t, 10.0)
    (state, _, _), _ = _state(xc.astype(np.float32), protos.astype(np.float32), k=10, gamma=3.0,
                              scale_sim=True)
    np.testing.assert_allclose(np.asarray(state.classifier), protos, atol=1e-5)
    z = np.asarray(state.z_image)[:N]
    np.testing.assert_allclose(eight.probs, z / z.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    assert eight.metrics["classifier"] == "rectified"
    with pytest.raises(ValueError, match="classifier"):
        _run(x, t, 1, classifier="proxies")
