"""Loki's Fréchet-mean decision (adapt/output/loki.py, adapt/output/decision.py) against a NumPy
restatement, closed forms, a hand-made hierarchy and real WordNet distances."""
import numpy as np
import ml_collections
import pytest

from adapt.core.method import Head, MethodOutputs
from adapt.features.text import ClassTexts
from adapt.output import decision, loki
from adapt.vocab.wordnet import Synset


def test_loki_argmin_equals_the_brute_force_sum():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=50)
    dist = rng.uniform(0.5, 3, size=(6, 4))
    want = [min(range(6), key=lambda y: sum(p[c] * dist[y, c] ** 2 for c in range(4))) for p in probs]
    assert loki.loki_predict(probs, dist).tolist() == want


def test_loki_under_the_discrete_metric_is_the_argmax():
    probs = np.random.default_rng(1).dirichlet(np.ones(5), size=40)
    assert (loki.loki_predict(probs, 1.0 - np.eye(5)) == probs.argmax(1)).all()


def test_loki_can_predict_a_class_between_two_prompted_ones():
    # a line a - m - b: half the mass on a and b each, the unprompted middle class m wins
    dist = np.array([[0.0, 2.0], [2.0, 0.0], [1.0, 1.0]])  # candidates a, b, m vs prompted a, b
    assert loki.loki_predict(np.array([[0.5, 0.5], [0.9, 0.1]]), dist).tolist() == [2, 0]


def test_text_distance_is_the_chord_length():
    e = np.random.default_rng(2).normal(size=(4, 3))
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    want = np.linalg.norm(u[:, None] - u[None], axis=-1)
    np.testing.assert_allclose(loki.text_distances(e), want, atol=1e-6)


def _syn(offset, *hypernyms):
    return Synset(offset, (offset,), tuple(hypernyms), False, "")


def test_hypernym_path_distance_on_a_hand_made_hierarchy():
    # root <- animal <- cat, dog;  root <- thing <- car;  cat also under pet <- root (two parents)
    s = {o.offset: o for o in [_syn("root"), _syn("animal", "root"), _syn("thing", "root"),
                               _syn("pet", "root"), _syn("cat", "animal", "pet"), _syn("dog", "animal"),
                               _syn("car", "thing")]}
    d = loki.wordnet_distances(["cat", "dog", "car", "pet"], s)
    assert d.tolist() == [[0, 2, 4, 1], [2, 0, 4, 3], [4, 4, 0, 3], [1, 3, 3, 0]]


def _outputs(probs):
    head = Head(weights=np.eye(probs.shape[1], dtype=np.float32))
    return MethodOutputs(probs, probs.argmax(1), head, "inductive", {})


def test_apply_decision_argmax_is_identity_and_loki_counts_unprompted_candidates():
    config = ml_collections.ConfigDict(dict(decision=dict(rule="argmax", loki_metric="text",
                                                          loki_classes=""), prompts=dict(templates=["{}"])))
    probs = np.random.default_rng(3).dirichlet(np.ones(3), size=20).astype(np.float32)
    emb = np.eye(3, dtype=np.float32)
    texts = ClassTexts(weights=emb, view_weights=None, view=None, prompts=[], prompt_weights=[])
    ctx = decision.DecisionContext(None, ["a", "b", "c"], texts, None, config)
    out, rec = decision.apply_decision(config, _outputs(probs), ctx)
    assert rec == {"rule": "argmax"} and (out.predictions == probs.argmax(1)).all()
    config.decision.rule = "loki"
    out, rec = decision.apply_decision(config, _outputs(probs), ctx)
    # equidistant classes (orthonormal embeddings): Loki's risk is 2 - 2 p_y, the argmax again
    assert rec["metric"] == "text" and (out.predictions == probs.argmax(1)).all()
    config.decision.rule = "fudge"
    with pytest.raises(ValueError, match="decision.rule"):
        decision.apply_decision(config, _outputs(probs), ctx)
