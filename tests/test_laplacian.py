"""LaplacianShot / SLK (methods/laplacian.py, adapt/graph/bound.py, adapt/graph/slk.py): the spec's
property checks and parity with float64 NumPy restatements of the official loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adapt.core import mesh as mesh_lib
from adapt.core.config import load_config
from adapt.core.mesh import pool_sum
from adapt.core.method import MethodInputs
from adapt.features.text import ClassTexts
from adapt.graph import bound as graph_bound
from adapt.graph import slk as graph_slk
from adapt.graph import sparse as graph
from methods import laplacian
from tests import reference_graph as ref

N, D, C = 160, 16, 4


def _data(seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(C, D))
    labels = rng.integers(0, C, N)
    x = centers[labels] + 1.0 * rng.normal(size=(N, D))
    t = centers + 0.8 * rng.normal(size=(C, D))
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return unit(x), unit(t), labels


def _graph(x, n_devices=8, knn=3):
    mesh = mesh_lib.make_mesh(n_devices)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    return xs, mask, laplacian.knn_graph(xs, mask, knn, mesh, block=64)


def test_lambda_zero_is_the_nearest_prototype_and_text_mode_is_zero_shot():
    x, t, _ = _data()
    xs, mask, nb = _graph(x)
    unary = laplacian.text_unary(xs, jnp.asarray(t), 10.0)
    res = graph_bound.bound_update(unary, nb, 0.0, mask)
    np.testing.assert_array_equal(np.asarray(res.y)[:N].argmax(1), (x @ t.T).argmax(1))
    np.testing.assert_allclose(np.asarray(res.y)[:N], jax.nn.softmax(10.0 * x @ t.T), atol=1e-6)


@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_parity_with_the_official_bound_update(lam):
    x, t, _ = _data()
    xs, mask, nb = _graph(x)
    res = graph_bound.bound_update(laplacian.text_unary(xs, jnp.asarray(t), 10.0), nb, lam, mask)
    kernel = ref.lshot_affinity(x.astype(np.float64), 3)
    labels, y, energies = ref.lshot_bound_update(-10.0 * x.astype(np.float64) @ t.T.astype(np.float64), kernel, lam)
    ours = np.asarray(res.energies)[: int(res.iterations)]
    assert int(res.iterations) == len(energies)
    np.testing.assert_array_equal(np.asarray(res.y)[:N].argmax(1), labels)
    np.testing.assert_allclose(ours, energies, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(res.y)[:N], y, atol=1e-5)


def test_fixed_point_after_convergence():
    x, t, _ = _data()
    xs, mask, nb = _graph(x)
    unary = laplacian.text_unary(xs, jnp.asarray(t), 3.0)  # logits ~ 3: fp32 spacing well below 1e-6
    res = graph_bound.bound_update(unary, nb, 0.5, mask, max_iters=300, tol=0.0)
    y = np.asarray(res.y, np.float64)[:N]
    idx, w = np.asarray(nb.idx)[:N], np.asarray(nb.w)[:N]
    message = np.einsum("nk,nkc->nc", w, y[idx])
    step = ref.softmax_rows(-np.asarray(unary, np.float64)[:N] + 0.5 * message)
    assert np.abs(step - y).max() <= 1e-6


def energy_half(y, unary, nb, lam, mask):
    """E(Y) = sum y log y + <A, Y> - (lam / 2) <Y, W Y>: the bound's objective for symmetric W
    (E_code with lam / 2), summed over the real rows (mask (Np,))."""
    m = mask[:, None].astype(y.dtype)
    pair = graph.gather_sum(nb, y)
    return pool_sum(jnp.sum(m * (graph.entropy_xlogx(y) + unary * y - 0.5 * lam * pair * y), axis=1))


def test_energy_with_a_symmetric_psd_kernel_never_increases():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    k = np.exp(-((x[:, None] - x[None]) ** 2).sum(-1) / 2.0)  # Gaussian kernel: symmetric PSD
    nb = graph.Neighbours(jnp.tile(jnp.arange(40, dtype=jnp.int32), (40, 1)), jnp.asarray(k, jnp.float32))
    unary = jnp.asarray(rng.normal(size=(40, 3)) * 2.0, jnp.float32)
    mask = jnp.ones(40, bool)

    @jax.jit
    def trace(y):
        def step(y, _):
            y = jax.nn.softmax(-unary + 0.3 * graph.gather_sum(nb, y), axis=1)
            return y, energy_half(y, unary, nb, 0.3, mask)

        return jax.lax.scan(step, y, None, length=15)[1]

    y0 = graph.masked_softmax(-unary)
    energies = np.r_[float(energy_half(y0, unary, nb, 0.3, mask)), np.asarray(trace(y0))]
    assert np.all(np.diff(energies) <= 1e-5 * np.abs(energies[0]))


def test_rectification_by_hand_and_the_empty_class_fallback():
    support = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    queries = np.array([[2.0, 0.1], [0.1, 3.0], [1.0, 0.2]], np.float32)
    protos = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], np.float32)  # class 2: nobody picks it
    got = np.asarray(laplacian.rectify_prototypes(jnp.asarray(support), jnp.asarray(queries),
                                                  jnp.ones(3, bool), jnp.asarray(protos)))
    np.testing.assert_allclose(got, ref.rectify(support, queries, protos), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[2], protos[2])
    rows = np.concatenate([support, queries])
    cos = rows / np.linalg.norm(rows, axis=1, keepdims=True) @ (protos / np.linalg.norm(protos, axis=1, keepdims=True)).T
    w = np.exp(10 * cos) / np.exp(10 * cos).sum(1, keepdims=True)
    picks0 = [0, 2, 4]  # rows whose nearest prototype is class 0
    np.testing.assert_allclose(got[0], (w[picks0, 0:1] * rows[picks0]).sum(0) / 3, rtol=1e-5)


def test_few_shot_unary_with_rectification_matches_the_restatement():
    x, _, labels = _data()
    support_rows = np.arange(8)
    xs, mask, _ = _graph(x[8:])
    unary, shifted, protos = laplacian.few_shot_unary(xs, mask, x[support_rows], labels[support_rows] % C, C,
                                                      rectify=True)
    s = x[support_rows].astype(np.float64)
    q = x[8:].astype(np.float64) + (s.mean(0) - x[8:].mean(0))
    onehot = np.eye(C)[labels[support_rows] % C]
    means = (onehot.T @ s) / np.maximum(onehot.sum(0), 1)[:, None]
    want = ref.rectify(s, q, means)
    np.testing.assert_allclose(np.asarray(protos), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(unary)[:N - 8], ref.sq_dist(q, want), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("step,lap", [("kmeans", True), ("kmeans", False), ("ms", True)])
def test_slk_matches_the_restatement(step, lap):
    x, t, _ = _data()
    xs, mask, nb = _graph(x)
    protos = laplacian.pseudo_prototypes(xs, mask, jnp.asarray(t), 10.0)
    sigma2 = graph_bound.slk_bandwidth(xs, nb, mask, 5.0 * N)
    res = graph_slk.slk(xs, mask, nb, protos, jnp.zeros_like(mask), jnp.zeros((xs.shape[0], C)), 0.5,
                        sigma2, prototype_step=step, laplacian=lap)
    kernel = ref.lshot_affinity(x.astype(np.float64), 3)
    want_s2 = ref.slk_sigma2(x.astype(np.float64), kernel, 5.0 * N)
    np.testing.assert_allclose(float(sigma2), want_s2, rtol=1e-5)
    labels, want_protos, energies = ref.slk(x.astype(np.float64), kernel, np.asarray(protos, np.float64), [],
                                            0.5, method=step, lap=lap, sigma2=want_s2)
    np.testing.assert_array_equal(np.asarray(res.labels)[:N], labels)
    np.testing.assert_allclose(np.asarray(res.prototypes), want_protos, atol=1e-5)
    np.testing.assert_allclose(np.asarray(res.energies)[: int(res.iterations)], energies, rtol=2e-6)


def test_slk_without_laplacian_is_lloyd_from_the_support_means_and_supports_stay_clamped():
    x, _, labels = _data()
    m = 8
    sup = labels[:m] % C
    sup[:C] = np.arange(C)
    xs, mask, nb = _graph(x)
    onehot = jnp.asarray(mesh_lib.shard_rows(np.eye(C, dtype=np.float32)[np.r_[sup, np.zeros(N - m, int)]],
                                             mesh_lib.make_mesh(8))[0])
    rows = jnp.asarray(np.arange(xs.shape[0]) < m)
    means = np.stack([x[:m][sup == c].mean(0) for c in range(C)])
    res = graph_slk.slk(xs, mask, nb, jnp.asarray(means), rows, onehot, 0.5, 1.0, laplacian=False)
    centers, lab = means.astype(np.float64), None
    for _ in range(100):  # Lloyd with supports forced to their labels
        lab = ref.sq_dist(x.astype(np.float64), centers).argmin(1)
        lab[:m] = sup
        centers = np.stack([x[lab == c].mean(0) for c in range(C)])
    np.testing.assert_array_equal(np.asarray(res.labels)[:N], lab)
    clamped = graph_slk.slk(xs, mask, nb, jnp.asarray(means), rows, onehot, 0.5, 1.0, laplacian=True)
    np.testing.assert_allclose(np.asarray(clamped.y)[:m], np.eye(C)[sup], atol=1e-6)


def test_slk_empty_cluster_guard_restores_the_previous_state():
    x, _, _ = _data()
    xs, mask, nb = _graph(x)
    protos = np.concatenate([x[:3], -np.ones((1, D), np.float32) * 5])  # the 4th prototype is far away
    res = graph_slk.slk(xs, mask, nb, jnp.asarray(protos), jnp.zeros_like(mask), jnp.zeros((xs.shape[0], C)),
                        0.5, 1.0, laplacian=False)
    assert bool(res.emptied) and int(res.iterations) == 1
    np.testing.assert_allclose(np.asarray(res.prototypes), protos)


def _run(x, t, n_devices=8, **overrides):
    config = load_config("configs/laplacian.py")
    with config.unlocked():
        for k, v in overrides.items():
            config.method_args[k] = v
    mesh = mesh_lib.make_mesh(n_devices)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    texts = ClassTexts(t, None, None, [[]] * C, [[]] * C)
    inputs = MethodInputs(xs, mask, mesh_lib.replicate(t, mesh), 10.0, {"embedding": xs}, texts, mesh,
                          jax.random.key(0))
    return laplacian.make(config).run(inputs)


@pytest.mark.parametrize("variant", ["lshot", "slk"])
def test_method_is_device_count_invariant_and_permutation_equivariant(variant):
    x, t, _ = _data()
    one, eight = _run(x, t, 1, variant=variant), _run(x, t, 8, variant=variant)
    np.testing.assert_array_equal(one.predictions, eight.predictions)
    # SLK runs up to 100 x 600 bound steps, which amplify the reordered float sums of 8 devices
    np.testing.assert_allclose(one.probs, eight.probs, rtol=1e-5 if variant == "lshot" else 1e-4, atol=1e-6)
    perm = np.random.default_rng(4).permutation(N)
    permuted = _run(x[perm], t, 8, variant=variant)
    np.testing.assert_array_equal(permuted.predictions, eight.predictions[perm])
    assert eight.setting == "transductive" and eight.head.center is not None
    assert eight.metrics["iterations"] >= 1 and np.allclose(eight.probs.sum(1), 1, atol=1e-5)


def test_energy_summary_of_a_one_step_trace():
    """A solver stopped after one step (SLK's empty-cluster guard) still gets a summary."""
    from adapt.graph import outputs as graph_outputs

    s = graph_outputs.summary(np.array([3.0]))
    assert s["first"] == s["last"] == 3.0 and s["monotone_non_increasing"] is True


def test_rectified_prototypes_enter_the_text_mode_unary():
    """prototypes=rectified is text mode on m_c = normalize(sum_i softmax_c(s0 x_i.t_c) x_i)
    (s0 the model's logit scale, x the centred pool): lambda = 0 gives the nearest prototype."""
    x, t, _ = _data()
    xc, m = ref.centred_rectified(x, t, 10.0)
    out = _run(x, t, 8, prototypes="rectified", lam=0.0, scale=30.0)
    want = np.exp(30.0 * xc @ m.T - (30.0 * xc @ m.T).max(1, keepdims=True))
    np.testing.assert_allclose(out.probs, want / want.sum(1, keepdims=True), rtol=1e-4, atol=1e-5)
    lap = _run(x, t, 8, prototypes="rectified")
    np.testing.assert_array_equal(lap.predictions, _run(x, t, 1, prototypes="rectified").predictions)
    assert lap.metrics["prototypes"] == "rectified"


@pytest.mark.parametrize("seed", [3, 5])
def test_soft_labels_agree_to_1e5_on_1_and_8_devices(seed):
    """Issue 19 item 4: on base, seed 5 differed by 2.3e-4 (the pool mean and the rectified soft
    means were summed per shard); the pool sums are now correctly rounded whatever the order."""
    x, t, _ = _data(seed)
    one, eight = _run(x, t, 1), _run(x, t, 8)
    assert np.abs(one.probs - eight.probs).max() < 1e-5


def test_pseudo_prototypes_do_not_depend_on_pool_order_when_probabilities_saturate():
    """Issue 19 item 1: two well-separated classes at scale 100 saturate P0 to exactly 1.0 in
    float32 for most rows; the top 8 must be the 8 most confident rows (float64 restatement),
    not the 8 lowest pool indices."""
    rng = np.random.default_rng(7)
    centers = np.eye(2, 6) * 3.0
    labels = rng.integers(0, 2, 120)
    x = centers[labels] + 0.3 * rng.normal(size=(120, 6))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    t = np.eye(2, 6, dtype=np.float32)
    mesh = mesh_lib.make_mesh(8)

    def protos(rows):
        xs, mask = mesh_lib.shard_rows(rows, mesh)
        return np.asarray(laplacian.pseudo_prototypes(xs, mask, jnp.asarray(t), 100.0))

    assert (jax.nn.softmax(100.0 * x @ t.T, axis=1) == 1.0).sum() > 16  # saturation does happen
    logits = 100.0 * x.astype(np.float64) @ t.T.astype(np.float64)
    p0 = ref.softmax_rows(logits)
    want = np.zeros((2, 6))
    for c in range(2):  # P0_ic ranks like the logit margin over the other class (no saturation)
        margin = logits[:, c] - logits[:, 1 - c]
        top = np.argsort(-margin, kind="stable")[:8]
        want[c] = (p0[top, c, None] * x[top]).sum(0)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(protos(x), want, atol=1e-5)
    perm = np.random.default_rng(1).permutation(120)
    np.testing.assert_allclose(protos(x[perm]), want, atol=1e-5)


def test_text_prototypes_pair_with_the_uncentred_pool():
    """Issue 19 item 5 (spec laplacian.md A.1 and its lambda = 0 check): text mode uses plain L2,
    so with lambda 0 it is the zero-shot softmax of the raw pool at scale s, whatever `center`."""
    x, t, _ = _data()
    out = _run(x, t, 8, prototypes="text", lam=0.0, scale=10.0)
    want = np.exp(10.0 * x @ t.T - (10.0 * x @ t.T).max(1, keepdims=True))
    np.testing.assert_allclose(out.probs, want / want.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    assert out.metrics["centered"] is False and out.head.center is None
