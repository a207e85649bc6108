"""TEEN (methods/teen.py) against a NumPy restatement of the calibration, written per class with an
explicit loop over the bases (p' = lambda p + (1 - lambda) sum_b softmax_b(tau cos(p, p_b)) p_b);
the method on a labelled pool: its prototypes, both bases, lambda = 1 is plain few-shot prototypes."""
import numpy as np
import pytest

import methods.teen as teen
from adapt.core.config import load_config
from tests.method_inputs import pool_inputs

N, D, K = 40, 5, 4


def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(K, D))
    y = np.arange(N) % K
    x = _unit(centers[y] + 0.9 * rng.normal(size=(N, D))).astype(np.float32)
    t = _unit(centers + 0.8 * rng.normal(size=(K, D))).astype(np.float32)
    return x, t, y


def _calibrated(protos, bases, lam, tau):
    out = []
    for p in protos:
        p = p / np.linalg.norm(p)
        sims = np.array([tau * p @ (q / np.linalg.norm(q)) for q in bases])
        w = np.exp(sims - sims.max())
        w /= w.sum()
        out.append(lam * p + (1 - lam) * sum(wb * q / np.linalg.norm(q) for wb, q in zip(w, bases)))
    return np.array(out)


def test_calibration_equals_the_loop_restatement():
    rng = np.random.default_rng(0)
    protos, bases = rng.normal(size=(3, 7)), rng.normal(size=(5, 7))
    np.testing.assert_allclose(teen.calibrate(protos, bases, 0.3, 16.0), _calibrated(protos, bases, 0.3, 16.0),
                               rtol=1e-10, atol=1e-12)


def _run(x, t, y, n_devices=8, **args):
    config = load_config("teen")
    for k, v in args.items():
        config.method_args[k] = v
    method = teen.make(config)
    known = method.few_labels(y)
    return method.run(pool_inputs(x, t, n_devices)._replace(class_names=list("abcd"), labels=known)), known


@pytest.mark.parametrize("base", ["text", "pool"])
def test_method_classifies_by_cosine_to_the_calibrated_prototypes(pool, base):
    x, t, y = pool
    out, known = _run(x, t, y, base=base, labels_per_class=2)
    assert (np.bincount(known[known >= 0]) == 2).all()
    f = _unit(x - x.astype(np.float64).mean(0))
    protos = np.stack([f[known == c].mean(0) for c in range(K)])
    if base == "text":
        bases = t
    else:
        z = 10.0 * f @ t.T
        r = np.exp(z - z.max(1, keepdims=True))
        bases = (r / r.sum(1, keepdims=True)).T @ f
    p = _unit(_calibrated(protos, bases, 0.5, 16.0))
    z = 10.0 * f @ p.T
    np.testing.assert_allclose(out.probs, np.exp(z) / np.exp(z).sum(1, keepdims=True), atol=1e-5)


def test_lambda_one_is_plain_few_shot_prototypes_and_needs_labels(pool):
    x, t, y = pool
    out, known = _run(x, t, y, n_devices=1, lam=1.0, center=False, labels_per_class=1)
    protos = np.stack([x[known == c][0] for c in range(K)])
    np.testing.assert_array_equal(out.predictions, (x @ protos.T).argmax(1))
    assert out.setting == "inductive"
    method = teen.make(load_config("teen"))
    with pytest.raises(ValueError, match="needs a pool with labels"):
        method.run(pool_inputs(x, t, 1)._replace(class_names=list("abcd")))
