"""Property checks of spec zero_shot.md on the prompt-ensemble classifier."""
import numpy as np
import pytest

from adapt.core import mesh as mesh_lib
from adapt.features.text import build_prompts, encode_classes
from tests.fake_model import FakeModel

NAMES = ["cat", "big_dog", "car"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}.", "itap of a {}."]
DESC = {"cat": ["a small furry pet", "it purrs"], "big_dog": ["a large dog"], "car": ["has wheels", "a vehicle", "drives"]}


def _norm(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_one_template_equals_the_filled_prompt():
    m = FakeModel()
    t = encode_classes(m, NAMES, ["a photo of a {}."]).weights
    np.testing.assert_array_equal(t, _norm(m.encode_texts(["a photo of a cat.", "a photo of a big dog.",
                                                           "a photo of a car."])))


def test_placeholder_substitution_only():
    prompts, _ = build_prompts(NAMES, TEMPLATES, DESC)
    assert all("{}" not in p for ps in prompts for p in ps)
    assert prompts[1][0] == "a photo of a big dog."
    with pytest.raises(ValueError, match="exactly one"):
        build_prompts(NAMES, ["a photo of a"])
    with pytest.raises(ValueError, match="exactly one"):
        build_prompts(NAMES, ["{} and {}"])


def test_duplicates_and_order_do_not_change_the_classifier():
    m = FakeModel()
    base = encode_classes(m, NAMES, TEMPLATES, DESC).weights
    dup = encode_classes(m, NAMES, TEMPLATES * 2, {k: v * 2 for k, v in DESC.items()}).weights
    rev = encode_classes(m, NAMES, TEMPLATES[::-1], {k: v[::-1] for k, v in DESC.items()}).weights
    np.testing.assert_allclose(dup, base, atol=1e-6)
    np.testing.assert_allclose(rev, base, atol=1e-6)


def test_beta_zero_and_one_give_template_and_description_classifiers():
    m = FakeModel()
    tmpl = encode_classes(m, NAMES, TEMPLATES).weights
    desc_only = _norm(np.stack([_norm(m.encode_texts(DESC[n])).mean(0) for n in NAMES]))
    np.testing.assert_allclose(encode_classes(m, NAMES, TEMPLATES, DESC, beta=0.0).weights, tmpl, atol=1e-6)
    np.testing.assert_allclose(encode_classes(m, NAMES, TEMPLATES, DESC, beta=1.0).weights, desc_only, atol=1e-6)


def test_uniform_pooling_is_the_cupl_default():
    m = FakeModel()
    want = []
    for n in NAMES:
        prompts = [t.replace("{}", n.replace("_", " ")) for t in TEMPLATES] + DESC[n]
        want.append(_norm(m.encode_texts(prompts)).mean(0))
    np.testing.assert_allclose(encode_classes(m, NAMES, TEMPLATES, DESC).weights, _norm(np.stack(want)), atol=1e-6)


def _zero_shot_predictions(x, names, n_devices):
    import jax

    from adapt.core.config import load_config
    from adapt.core.method import MethodInputs
    from methods import zero_shot

    m = FakeModel()
    texts = encode_classes(m, names, TEMPLATES)
    mesh = mesh_lib.make_mesh(n_devices)
    xs, mask = mesh_lib.shard_rows(x, mesh)
    inputs = MethodInputs(xs, mask, mesh_lib.replicate(texts.weights, mesh), m.logit_scale,
                          {"embedding": xs}, texts, mesh, jax.random.key(0))
    return zero_shot.make(load_config("configs/zero_shot.py")).run(inputs)


def test_zero_shot_is_permutation_equivariant_and_device_count_invariant():
    x = _norm(np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32))
    one, eight = _zero_shot_predictions(x, NAMES, 1), _zero_shot_predictions(x, NAMES, 8)
    np.testing.assert_array_equal(one.predictions, eight.predictions)
    np.testing.assert_allclose(one.probs, eight.probs, rtol=1e-5, atol=1e-7)
    perm = np.random.default_rng(1).permutation(50)
    permuted = _zero_shot_predictions(x[perm], NAMES, 8)
    np.testing.assert_array_equal(permuted.predictions, eight.predictions[perm])
    assert one.setting == "inductive" and one.head.view == "embedding"


def test_classes_with_identical_embeddings_are_reported():
    """Two classes whose prompts embed the same (here: the same description only, beta 1) cannot be
    told apart; encode_classes warns and identical_classes names the group."""
    from adapt.features.text import identical_classes

    desc = {"cat": ["a pet"], "big_dog": ["a pet"], "car": ["has wheels"]}
    with pytest.warns(UserWarning, match="identical text embeddings"):
        t = encode_classes(FakeModel(), NAMES, ["a photo of a {}."], desc, beta=1.0)
    assert identical_classes(t.weights, NAMES) == [["cat", "big_dog"]] == t.identical
    assert t.prompt_weights == build_prompts(NAMES, ["a photo of a {}."], desc, beta=1.0)[1]
    assert identical_classes(encode_classes(FakeModel(), NAMES, TEMPLATES).weights, NAMES) == []
