"""Model soups (adapt/output/soup.py, `adapt soup`): the uniform soup is the NumPy mean of the runs'
tensors (head and tuned parameters); the soup of identical runs is the run; runs that differ in
more than the seed are refused with what differs; the greedy soup follows the paper's rule."""
import json

import numpy as np
import pytest

from adapt import cli
from adapt.core.method import Head
from adapt.output import artifact, soup
from tests.fake_model import FakeModel

C, D = 3, 8


@pytest.fixture(scope="module")
def model():
    return FakeModel()


def _save(path, model, seed, *, method="pseudolabel", names=("a", "b", "c"), prompt_shape=(4, D), lr=0.1):
    rng = np.random.default_rng(seed)
    head = Head(weights=rng.normal(size=(C, D)).astype(np.float32), center=rng.normal(size=D).astype(np.float32),
                scale=10.0, bias=rng.normal(size=C).astype(np.float32))
    config = {"method": method, "seed": seed, "method_args": {"lr": lr, "prompt": "visual"}}
    artifact.save(path / "classifier", head=head, class_names=list(names), model=model,
                  model_source={"kind": "offline", "path": ""}, method=method, config_json=json.dumps(config),
                  metrics={"accuracy": 0.5}, extra_tensors={"vision/prompts": rng.normal(size=prompt_shape)
                                                            .astype(np.float32)})
    return path


def test_uniform_soup_is_the_mean_of_every_tensor(tmp_path, model):
    runs = [_save(tmp_path / f"s{s}", model, s) for s in range(3)]
    assert cli.main(["soup", *map(str, runs), "--out", str(tmp_path / "soup")]) == 0
    souped = artifact.load(tmp_path / "soup" / "classifier")
    loaded = [artifact.load(r / "classifier") for r in runs]
    np.testing.assert_allclose(souped.head.weights, np.mean([c.head.weights for c in loaded], 0), atol=1e-6)
    np.testing.assert_allclose(souped.head.center, np.mean([c.head.center for c in loaded], 0), atol=1e-6)
    np.testing.assert_allclose(souped.head.bias, np.mean([c.head.bias for c in loaded], 0), atol=1e-6)
    np.testing.assert_allclose(souped.params["vision/prompts"],
                               np.mean([c.params["vision/prompts"] for c in loaded], 0), atol=1e-6)
    assert souped.meta["metrics"]["soup"]["seeds"] == [0, 1, 2]
    assert json.loads((tmp_path / "soup" / "soup.json").read_text())["kind"] == "uniform"


def test_soup_of_identical_runs_is_the_run(tmp_path, model):
    run = _save(tmp_path / "s0", model, 0)
    ingredient = soup.read(run)
    path = soup.write(tmp_path / "soup", [ingredient] * 3, soup.uniform([ingredient.tensors] * 3), {"kind": "uniform"})
    souped, original = artifact.load(path), artifact.load(run / "classifier")
    for name, v in ingredient.tensors.items():
        np.testing.assert_array_equal(soup.read(path).tensors[name], v)
    x = np.random.default_rng(5).normal(size=(6, D)).astype(np.float32)
    np.testing.assert_array_equal(souped.head.probs(x), original.head.probs(x))


@pytest.mark.parametrize("change, message", [
    (dict(method="gda"), "different method"),
    (dict(names=("a", "b", "z")), "different class names"),
    (dict(lr=0.2), "different config beyond seed: method_args.lr"),
    (dict(prompt_shape=(5, D)), "parameter params.vision/prompts has shape"),
])
def test_incompatible_runs_are_refused_with_what_differs(tmp_path, model, capsys, change, message):
    a = _save(tmp_path / "a", model, 0)
    b = _save(tmp_path / "b", model, 1, **change)
    assert cli.main(["soup", str(a), str(b), "--out", str(tmp_path / "soup")]) == 2
    err = capsys.readouterr().err
    assert "cannot be souped" in err and message in err
    assert not (tmp_path / "soup" / "classifier").exists()


def test_greedy_soup_adds_an_ingredient_only_when_the_held_out_score_does_not_drop(tmp_path, model):
    runs = [soup.read(_save(tmp_path / f"s{s}", model, s)) for s in range(3)]
    target = runs[1].tensors["head.weights"]

    def score(tensors):  # a stand-in held-out accuracy: closeness of the head to run 1's
        return -float(np.abs(tensors["head.weights"] - target).sum())

    tensors, kept, alone, best = soup.greedy(runs, score)
    # restated: start from the best alone; try the others in decreasing score; keep if not worse
    order = list(np.argsort([-a for a in alone], kind="stable"))
    chosen = [order[0]]
    for j in order[1:]:
        if score(soup.uniform([runs[k].tensors for k in chosen + [j]])) >= score(
                soup.uniform([runs[k].tensors for k in chosen])):
            chosen.append(j)
    assert kept == chosen and kept[0] == 1
    assert best == score(tensors)
    assert cli.main(["soup", *(str(r.path) for r in runs), "--out", str(tmp_path / "g"), "--greedy"]) == 2
