"""GDA (methods/gda.py) against a NumPy restatement of the official estimator (mrflogs/ICLR24,
main_few_shots.py: per-class means, the covariance of the class-centred rows, the shrinkage
precision, W and b) and of our EM step written with explicit per-image, per-class loops; the
deployable head reproduces the method's probabilities; 1 vs 8 devices."""
import numpy as np
import pytest

import methods.gda as gda
from adapt.core.config import load_config
from adapt.core.few_labels import per_class
from tests.method_inputs import pool_inputs

N, D, K = 48, 6, 3


def _unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(K, D))
    y = rng.integers(0, K, N)
    x = _unit(centers[y] + 0.8 * rng.normal(size=(N, D)))
    t = _unit(centers + 0.7 * rng.normal(size=(K, D)))
    return x.astype(np.float32), t.astype(np.float32), y


def _official(f, y, k):
    """The official estimator, restated: class means, covariance of the class-centred rows (N - 1),
    precision D pinv((N - 1) Sigma + tr(Sigma) I), uniform prior."""
    mus = np.stack([f[y == c].mean(0) for c in range(k)])
    centred = np.concatenate([f[y == c] - mus[c] for c in range(k)])
    sigma = np.cov(centred.T)
    n, d = centred.shape
    prec = d * np.linalg.pinv((n - 1) * sigma + np.trace(sigma) * np.eye(d))
    w = np.einsum("nd,dc->cn", mus, prec).T
    b = np.log(np.full(k, 1.0 / k)) - np.einsum("nd,dc,nc->n", mus, prec, mus) / 2
    return w, b


def _soft(f, r):
    """The EM's M step with explicit loops: soft means, soft within-class scatter."""
    n, d = f.shape
    mus = np.stack([(r[:, c:c + 1] * f).sum(0) / r[:, c].sum() for c in range(r.shape[1])])
    scatter = np.zeros((d, d))
    for i in range(n):
        for c in range(r.shape[1]):
            v = f[i] - mus[c]
            scatter += r[i, c] * np.outer(v, v)
    sigma = scatter / (n - 1)
    prec = d * np.linalg.pinv(scatter + np.trace(sigma) * np.eye(d))
    return mus @ prec, np.log(1.0 / r.shape[1]) - 0.5 * np.array([m @ prec @ m for m in mus])


def _alpha(text, g):
    return text.std(1).mean() / g.std(1).mean()


def test_supervised_weights_and_bias_equal_the_official_estimator(pool):
    x, _, y = pool
    f = x.astype(np.float64)
    w, b = gda.gda_parameters(f, np.eye(K)[y])
    w_ref, b_ref = _official(f, y, K)
    np.testing.assert_allclose(w, w_ref, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(b, b_ref, rtol=1e-8, atol=1e-8)


def test_em_step_equals_the_loop_restatement(pool):
    x, t, _ = pool
    f, _ = gda.features(x, center=True)
    text = 10.0 * f @ t.T
    r = gda.softmax(text)
    w, b, a, logits = gda.gda_step(f, text, r, alpha=0.0)
    w_ref, b_ref = _soft(f, r)
    np.testing.assert_allclose(w, w_ref, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(b, b_ref, rtol=1e-8, atol=1e-8)
    g = f @ w_ref.T + b_ref
    assert a == pytest.approx(_alpha(text, g), rel=1e-10)
    np.testing.assert_allclose(logits, text + a * g, rtol=1e-8, atol=1e-8)


def _run(x, t, n_devices, labels=None, **args):
    config = load_config("gda")
    for k, v in args.items():
        config.method_args[k] = v
    method = gda.make(config)
    known = method.few_labels(labels) if labels is not None else None
    inputs = pool_inputs(x, t, n_devices)._replace(class_names=list("abc"), labels=known)
    return method.run(inputs), known


@pytest.mark.parametrize("n_devices", [1, 8])
def test_em_method_is_the_restated_em_and_its_head_reproduces_it(pool, n_devices):
    x, t, _ = pool
    out, _ = _run(x, t, n_devices, iterations=3)
    f, mean = gda.features(x, center=True)  # the features: CL2N on the pool mean, restated below
    np.testing.assert_allclose(f, _unit(x - x.astype(np.float64).mean(0)), atol=1e-12)
    text = 10.0 * f @ t.T
    r = np.exp(text - text.max(1, keepdims=True))
    r /= r.sum(1, keepdims=True)
    for _ in range(3):
        w, b = _soft(f, r)
        z = text + _alpha(text, f @ w.T + b) * (f @ w.T + b)
        r = np.exp(z - z.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
    np.testing.assert_allclose(out.probs, r, atol=1e-5)
    np.testing.assert_allclose(out.head.probs(x), out.probs, atol=1e-4)
    assert out.setting == "transductive" and len(out.metrics["gda"]["em"]) == 3


def test_few_label_method_fits_on_the_known_rows_only(pool):
    x, t, y = pool
    out, known = _run(x, t, 8, labels=y, setting="ssl", labels_per_class=4, center=False)
    assert (np.bincount(known[known >= 0], minlength=K) == 4).all()
    rows = known >= 0
    f = x.astype(np.float64)
    w, b = _official(f[rows], known[rows], K)
    text = 10.0 * f @ t.T
    z = text + _alpha(text, f @ w.T + b) * (f @ w.T + b)
    np.testing.assert_allclose(out.probs, np.exp(z) / np.exp(z).sum(1, keepdims=True), atol=1e-5)
    assert out.setting == "inductive"
    np.testing.assert_allclose(out.head.probs(x), out.probs, atol=1e-4)


def test_one_label_per_class_has_no_covariance_and_returns_zero_shot(pool):
    x, t, y = pool
    out, _ = _run(x, t, 1, labels=y, setting="ssl", labels_per_class=1, center=False)
    assert out.metrics["gda"]["alpha"] == 0.0
    z = 10.0 * x.astype(np.float64) @ t.T
    np.testing.assert_allclose(out.probs, np.exp(z) / np.exp(z).sum(1, keepdims=True), atol=1e-5)


def test_the_few_labels_are_the_pseudolabel_ssl_draw():
    labels = np.repeat(np.arange(4), 7)
    rng = np.random.default_rng(0)
    expected = np.full(len(labels), -1)
    for c in range(4):
        expected[rng.choice(np.flatnonzero(labels == c), 2, replace=False)] = c
    np.testing.assert_array_equal(per_class(labels, 2), expected)
    assert (per_class(labels, 50) == labels).all()  # fewer rows than asked: all of them
