"""Class-text options of the classification job (adapt/features/class_texts.py): ZPE template weights
and REAL-Prompt names against NumPy restatements, and the engine end to end with a tiny CLIP."""
import csv
import json

import numpy as np
import pytest
from scipy.special import softmax

from adapt import engine
from adapt.core.config import load_config
from adapt.features import class_texts, synonyms, zpe
from adapt.features.text import encode_classes
from adapt.output import loki
from tests.clip_fixtures import write_tiny_clip
from tests.model_kind_fixtures import write_pool

CLASSES = ("cat", "car", "lamp")


def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _reference_zpe(x, emb, scale, top=0):
    """ZPE as the paper writes it: logits per template, minus each class's pool-mean logit, the
    mean over images of the max, then softmax over templates (or the top n, uniform)."""
    logits = scale * np.einsum("nd,tcd->tnc", x, emb)
    centred = logits - logits.mean(axis=1, keepdims=True)
    scores = centred.max(axis=2).mean(axis=1)
    if not top:
        return softmax(scores)
    w = np.zeros(len(scores))
    w[np.argsort(-scores, kind="stable")[:top]] = 1 / top
    return w


@pytest.mark.parametrize("top", [0, 2])
def test_zpe_weights_equal_the_numpy_restatement_and_ignore_pool_order(top):
    rng = np.random.default_rng(0)
    x, emb = _unit(rng.normal(size=(40, 6))), _unit(rng.normal(size=(5, 3, 6)))
    got = zpe.zpe_weights(zpe.zpe_scores(x, emb, 20.0), top)
    np.testing.assert_allclose(got, _reference_zpe(x, emb, 20.0, top), rtol=1e-5, atol=1e-7)
    shuffled = zpe.zpe_weights(zpe.zpe_scores(x[rng.permutation(40)], emb, 20.0), top)
    np.testing.assert_allclose(shuffled, got, rtol=1e-5, atol=1e-7)
    assert got.sum() == pytest.approx(1.0)


def test_frequent_synonym_and_ensemble_on_a_tiny_word_list():
    freq = {"sneaker": 3.0, "gym shoe": 2.0, "tennis shoe": 3.0, "cat": 5.0, "true cat": 1.0}.get
    lemmas = [("gym_shoe", "sneaker", "tennis_shoe"), ("true_cat", "cat"), ()]
    names = ["sneaker", "Cat", "zorb"]
    # ties go to the earliest candidate, the name itself first; case-insensitive repeats dropped
    assert synonyms.class_name_variants(names, "frequent", lemmas, lambda t: freq(t.lower(), 0.0)) == \
        [["sneaker"], ["Cat"], ["zorb"]]
    freq2 = {"gym shoe": 4.0}.get
    assert synonyms.class_name_variants(names, "frequent", lemmas, lambda t: freq2(t, 0.0))[0] == ["gym shoe"]
    assert synonyms.class_name_variants(names, "ensemble", lemmas) == \
        [["sneaker", "gym shoe", "tennis shoe"], ["Cat", "true cat"], ["zorb"]]
    assert synonyms.class_name_variants(names, "none") == [[n] for n in names]


class _TextModel:
    """Deterministic text embeddings from the prompt's bytes (no class map)."""

    logit_scale = 10.0

    def encode_texts(self, texts):
        rows = [np.random.default_rng(list(t.encode())).normal(size=8) for t in texts]
        return _unit(np.asarray(rows, np.float32))


def test_uniform_options_reproduce_encode_classes_and_ensembles_average_synonyms():
    model, templates = _TextModel(), ["a {}.", "the {} here.", "one {}"]
    plain = encode_classes(model, list(CLASSES), templates)
    same = class_texts.ensemble_texts(model, list(CLASSES), [[c] for c in CLASSES], templates)
    np.testing.assert_allclose(same.weights, plain.weights, atol=1e-6)
    variants = [["cat", "kitty"], ["car"], ["lamp", "light", "lantern"]]
    got = class_texts.ensemble_texts(model, list(CLASSES), variants, templates).weights
    ref = [_unit(np.mean([_unit(model.encode_texts([t.replace("{}", s) for s in vs])).mean(0)
                          for t in templates], 0)) for vs in variants]
    np.testing.assert_allclose(got, np.stack(ref), atol=1e-6)


def test_zpe_class_texts_weight_templates_by_their_pool_scores():
    rng = np.random.default_rng(1)
    model, templates = _TextModel(), ["a {}.", "the {} here.", "one {}", "{}!"]
    x = _unit(rng.normal(size=(30, 8)))
    got = class_texts.ensemble_texts(model, list(CLASSES), [[c] for c in CLASSES], templates, x)
    emb = np.stack([model.encode_texts([t.replace("{}", c) for c in CLASSES]) for t in templates])
    w = _reference_zpe(x, emb, model.logit_scale)
    np.testing.assert_allclose(got.weights, _unit(np.einsum("t,tcd->cd", w, emb)), atol=1e-5)
    np.testing.assert_allclose([p[0] for p in got.prompt_weights], [w[0]] * 3, rtol=1e-5)


def test_clip80_is_the_public_list():
    t = class_texts.clip80_templates()
    assert len(t) == 80 == len(set(t)) and t[0] == "a bad photo of a {}." and t[-1] == "a tattoo of the {}."


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("class_texts")
    return write_tiny_clip(root / "clip"), write_pool(root / "pool", classes=CLASSES, n_per_class=4)


def run_engine(tmp_path, setup, **sets):
    """The zero_shot job on the tiny pool with `sets` ("prompts.weighting": "zpe", ...); metrics."""
    config = load_config("configs/zero_shot.py")
    with config.unlocked():
        config.pool.path, config.model.path = str(setup[1]), str(setup[0])
        config.embed.cache_dir = str(tmp_path / "cache")
        for key, value in sets.items():
            block, name = key.split(".")
            config[block][name] = value
    engine.run(config, tmp_path / "run", progress=False)
    with open(tmp_path / "run" / "predictions.csv") as f:
        assert len(list(csv.DictReader(f))) == 4 * len(CLASSES)
    return json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_engine_runs_with_every_option_on_a_tiny_clip(tmp_path, tiny_setup):
    """One run (each costs seconds of compiling): clip80 + ZPE top 5 + synonym ensemble + Loki with
    two unprompted candidates; Loki's argmin is checked against the run's own probabilities."""
    m = run_engine(tmp_path, tiny_setup, **{
        "prompts.template_set": "clip80", "prompts.weighting": "zpe", "prompts.zpe_top": 5,
        "classes.synonyms": "ensemble", "decision.rule": "loki", "decision.loki_classes": "dog,truck",
        "embed.num_devices": 1})
    rec = m["class_texts"]
    assert rec["templates"] == 80 and rec["weighting"] == "zpe (top 5)"
    assert [w for _, w in rec["zpe_best"]] == [0.2] * 5
    assert rec["names_used"]["car"][0] == "car" and len(rec["names_used"]["car"]) > 1  # WordNet: auto, ...
    d = m["decision"]
    assert d["rule"] == "loki" and d["metric"] == "wordnet" and d["unprompted_candidates"] == ["dog", "truck"]
    assert sum(d["unprompted_predicted"].values()) <= 4 * len(CLASSES)
    with open(tmp_path / "run" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    probs = np.load(tmp_path / "run" / "pool_probs.npz")["probs"]
    offsets, synsets = loki.wordnet_synsets(list(CLASSES))
    dist = loki.wordnet_distances(offsets, synsets)
    want = [CLASSES[i] for i in (probs @ dist.T ** 2).argmin(1)]
    assert [r["predicted_class"] for r in rows] == want
    # real WordNet distances (the tables are loaded by now): cat -> feline -> carnivore <- canine <- dog
    offsets, synsets = loki.wordnet_synsets(["cat", "dog", "sandal", "sneaker"])
    d = loki.wordnet_distances(offsets, synsets)
    assert d[0, 1] == 4 and d[2, 3] < d[0, 2] and (d == d.T).all() and (np.diag(d) == 0).all()
