"""FuDD (adapt/features/fudd.py): pair set and decision against a NumPy restatement of the paper's rule,
WordNet differences and the pair file. The engine end to end on a tiny CLIP checkpoint (one run with
FuDD and PerceptionCLIP together, to keep the suite short): tests/test_perception.py."""
from __future__ import annotations

import json

import ml_collections
import numpy as np
import pytest

from adapt.core.method import Head, MethodOutputs
from adapt.features import fudd
from adapt.output.decision import DecisionContext, apply_decision


def _restated_pairs(probs, k):
    pairs = set()
    for row in probs:
        top = sorted(range(len(row)), key=lambda c: (-row[c], c))[:k]
        pairs |= {(min(a, b), max(a, b)) for a in top for b in top if a != b}
    return sorted(pairs)


def _restated_decision(x, probs, k, descriptions, class_weights, scale, use_map=False):
    """Per image: the mean of the unit embeddings of every description of a against the other
    ambiguous classes, renormalised (none: the class embedding); softmax over the top-k. With a class
    map: the mean description map, scores view . map normalised over the top-k."""
    new, pred = probs.copy(), []
    for i, row in enumerate(probs):
        top = sorted(range(len(row)), key=lambda c: (-row[c], c))[:k]
        reps = []
        for a in top:
            embs = [e for b in top if b != a for e in descriptions.get((a, b), [])]
            mean = np.mean(embs, 0) if embs else None
            reps.append(class_weights[a] if mean is None else mean if use_map else mean / np.linalg.norm(mean))
        scores = np.array([x[i] @ r for r in reps])
        if use_map:
            d = scores / scores.sum()
        else:
            d = np.exp(scale * scores - (scale * scores).max())
            d /= d.sum()
        new[i, top] = row[top].sum() * d
        pred.append(top[int(d.argmax())])
    return new, np.array(pred)


@pytest.mark.parametrize("use_map", [False, True])
def test_pair_set_and_decision_equal_the_restatement(use_map):
    rng = np.random.default_rng(0)
    n, c, dim, k = 40, 6, 8, 3
    x = rng.dirichlet(np.ones(dim), size=n) if use_map else rng.normal(size=(n, dim))
    probs = rng.dirichlet(np.ones(c), size=n).astype(np.float32)
    sets = fudd.ambiguous_sets(probs, k)
    assert fudd.pair_set(sets) == _restated_pairs(probs, k)
    vec = (lambda: rng.dirichlet(np.ones(dim))) if use_map else (lambda: (lambda v: v / np.linalg.norm(v))(
        rng.normal(size=dim)))
    descriptions = {(a, b): [vec() for _ in range(rng.integers(0, 3))] for a in range(c) for b in range(c) if a != b}
    sums = {key: np.sum(v, 0) for key, v in descriptions.items() if v}
    counts = {key: len(v) for key, v in descriptions.items() if v}
    weights = np.stack([vec() for _ in range(c)])
    got_probs, got_pred = fudd.fudd_decide(x, probs, sets, sums, weights, 10.0, counts, use_map)
    want_probs, want_pred = _restated_decision(x, probs.astype(np.float64), k, descriptions, weights, 10.0, use_map)
    np.testing.assert_array_equal(got_pred, want_pred)
    np.testing.assert_allclose(got_probs, want_probs, atol=1e-5)
    np.testing.assert_array_equal(got_probs.argmax(1), got_pred)
    np.testing.assert_allclose(got_probs.sum(1), 1.0, atol=1e-5)


def test_wordnet_differences_keep_differences_only():
    """A five-synset WordNet: definition clauses and first-hypernym ancestors that the other lacks."""
    from adapt.vocab.wordnet import Synset

    rows = [("00000001", "entity", (), "that which exists"),
            ("00000010", "footwear", ("00000001",), "covering for the feet"),
            ("00000020", "shoe", ("00000010",), "footwear shaped to fit the foot"),
            ("00000030", "sneaker", ("00000020",), "a canvas shoe; has a rubber sole"),
            ("00000040", "boot", ("00000010",), 'footwear that covers the whole foot; has a rubber sole; "wet boots"')]
    synsets = {o: Synset(o, (lemma,), hyper, False, gloss) for o, lemma, hyper, gloss in rows}
    index = {lemma: [o] for o, lemma, _, _ in rows}
    assert fudd.wordnet_differences("Sneaker", "boot", index, synsets) == ["a canvas shoe", "a kind of shoe"]
    assert fudd.wordnet_differences("Ankle boot", "sneaker", index, synsets) == ["footwear that covers the whole foot"]
    assert fudd.wordnet_differences("qwxzv", "sneaker", index, synsets) == []


class _HashModel:
    """encode_texts from a seeded hash of each text: independent of what FuDD does with them."""

    logit_scale = 20.0

    def encode_texts(self, texts):
        out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=5) for t in texts])
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_pair_file_rule_through_apply_decision(tmp_path):
    names = ["cat", "dog", "fox"]
    pairs = [{"classes": ["cat", "Dog"], "descriptions": {"cat": ["pointed ears"], "dog": ["floppy ears", "a leash"]}}]
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps({"format": fudd.FORMAT, "generator": {}, "pairs": pairs}))
    model, rng = _HashModel(), np.random.default_rng(1)
    x = rng.normal(size=(7, 5)).astype(np.float32)
    probs = rng.dirichlet(np.ones(3), size=7).astype(np.float32)
    weights = model.encode_texts(names).astype(np.float32)
    config = ml_collections.ConfigDict(dict(decision=dict(rule="fudd", fudd_k=2, fudd_descriptions=str(path))))
    texts = type("T", (), {"weights": weights})()
    out = MethodOutputs(probs, probs.argmax(1), Head(weights=weights), "inductive", {})
    new, record = apply_decision(config, out, DecisionContext(model, names, texts, x, config))
    emb = lambda cls, ds: [model.encode_texts([fudd.DESCRIPTION_TEMPLATE.format(cls=cls, description=d)])[0]  # noqa: E731
                           for d in ds]
    described = {(0, 1): emb("cat", ["pointed ears"]), (1, 0): emb("dog", ["floppy ears", "a leash"])}
    want_probs, want_pred = _restated_decision(x, probs, 2, described, weights, 20.0)
    np.testing.assert_array_equal(new.predictions, want_pred)
    np.testing.assert_allclose(new.probs, want_probs, atol=1e-5)
    assert record["n_descriptions"] == 3 and record["rule"] == "fudd"


def test_pair_file_maker_through_the_phrases_path(tmp_path, monkeypatch):
    """python -m adapt.realistic.fudd_pairs: one phrases_llm group per pair, read back by FuDD."""
    from adapt.realistic import fudd_pairs, phrases_llm

    def fake_chat(base_url, model, key, user, temperature, timeout=60.0):
        named = [line[2:].split(":")[0] for line in user.split("Concepts:\n")[-1].splitlines() if line.startswith("- ")]
        return json.dumps({n: [f"{n} mark"] for n in named})

    monkeypatch.setattr(phrases_llm, "chat", fake_chat)
    monkeypatch.setattr(fudd_pairs, "load_vocabulary", lambda name: type("V", (), {"index": lambda self: {}})())
    out = tmp_path / "pairs.json"
    assert fudd_pairs.main(["--names", "cat,dog,fox", "--out", str(out), "--base-url", "http://127.0.0.1:9",
                            "--model", "m", "--repeats", "2"]) == 0
    got = fudd.pair_descriptions(["cat", "dog", "fox"], [(0, 1), (0, 2), (1, 2)], str(out))
    assert got[(0, 2)] == (["cat mark", "cat mark"], ["fox mark", "fox mark"]) and len(got) == 3
