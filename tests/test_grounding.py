"""WordNet grounding of class names onto the ImageNet classes (adapt/models/grounding.py)."""
import numpy as np
import pytest

from adapt.models.grounding import Grounding
from adapt.models.offline import conse_weights, load_imagenet_classes


@pytest.fixture(scope="module")
def classes():
    return load_imagenet_classes()


@pytest.fixture(scope="module")
def grounding(classes):
    return Grounding([c["wnid"] for c in classes])


def _names(classes, idx):
    return sorted(classes[i]["name"] for i in idx)


def test_names_ground_to_the_imagenet_classes_under_them(grounding, classes):
    trouser, how = grounding.ground("Trouser")
    assert _names(classes, trouser) == ["jean"] and how == "trouser"
    coat = _names(classes, grounding.ground("Coat")[0])
    assert coat == ["fur coat", "lab coat", "trench coat"]
    # "T-shirt/top" falls back to its part "t-shirt": ImageNet's jersey synset itself
    assert _names(classes, grounding.ground("T-shirt/top")[0]) == ["jersey"]


def test_a_name_without_imagenet_hyponyms_climbs_to_its_hypernym(grounding, classes):
    idx, how = grounding.ground("Sneaker")  # gym_shoe has no ImageNet class below it; shoe has
    assert "running shoe" in _names(classes, idx) and "(1 up)" in how


def test_unknown_names_are_ungrounded(grounding):
    assert grounding.ground("qzxv blorf") == ((), "not in WordNet")
    support = grounding.support(["qzxv blorf", "Trouser"], 1000)
    assert support[0].all() and support[1].sum() == 1


def test_an_imagenet_class_name_grounds_to_a_support_holding_itself(grounding, classes):
    """Property over all 1000 classes: a class named by its own first lemma, when that lemma picks
    the class's own synset, has a support that contains the class."""
    checked = 0
    for c in classes:
        if grounding.synset(c["name"]) == c["wnid"][1:]:
            assert c["idx"] in grounding.ground(c["name"])[0], c["name"]
            checked += 1
    assert checked > 500


def test_conse_weights_stay_on_the_support():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(3, 16)); q /= np.linalg.norm(q, axis=1, keepdims=True)
    e = rng.normal(size=(50, 16)); e /= np.linalg.norm(e, axis=1, keepdims=True)
    support = np.zeros((3, 50), bool)
    support[0, [4, 9]] = True       # smaller than T: all weight on the two classes
    support[1] = True               # ungrounded: the plain map
    support[2, 10:40] = True        # larger than T: the T nearest inside the support
    w = conse_weights(q, e, 10, 0.2, support)
    np.testing.assert_allclose(w.sum(1), 1, rtol=1e-6)
    assert set(np.flatnonzero(w[0])) <= {4, 9}
    np.testing.assert_allclose(w[1], conse_weights(q[1:2], e, 10, 0.2)[0], rtol=1e-6)
    cos = (q[2] @ e.T)[10:40]
    assert set(np.flatnonzero(w[2])) == set(10 + np.argsort(-cos)[:10])


def test_missing_wordnet_is_a_clear_error(tmp_path, monkeypatch):
    """No WordNet files: Grounding names the Debian package, the model loader adds the way out."""
    from adapt.models import offline
    from adapt.vocab.wordnet import WordNetError

    with pytest.raises(WordNetError, match="wordnet-base"):
        Grounding(["n03594734"], root=tmp_path)
    monkeypatch.setattr(offline, "Grounding", lambda wnids: Grounding(wnids, root=tmp_path))
    with pytest.raises(WordNetError, match="grounding=none"):
        offline.load_offline_default()
