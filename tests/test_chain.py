"""Chained runs (`--set init.from=RUN_DIR`, issue #22) on a tiny CLIP: run A (visual prompts),
run B starts from it. B's prior is A's pool probabilities, B embeds with A's tuned model, B's
artifact carries A's parameters, `adapt predict` on a chained artifact reproduces its run; bad
starts are one-line errors."""
import csv
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from adapt import cli, engine
from adapt.core.method import Head
from adapt.models import load_model, model_source
from adapt.output.artifact import load, save
from tests.clip_fixtures import write_tiny_clip
from tests.test_engine import CLASSES, _write_pool


def _run(root, method, workdir, *extra, model=None):
    argv = ["run", f"configs/{method}.py", "--workdir", str(workdir), "--quiet",
            "--set", f"pool.path={root / 'pool'}", "--set", f"model.path={model or root / 'clip'}",
            "--set", f"embed.cache_dir={root / 'cache'}", "--set", "embed.batch_size=8", *extra]
    return cli.main(argv)


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """Run A, written by hand (no run needed): an artifact on the tiny CLIP with 2 visual prompt
    tokens (random) as tuned parameters and a random head, and pool_probs.npz with random
    probabilities for every pool file, stored in reversed order (B must match them by item)."""
    root = tmp_path_factory.mktemp("chain")
    _write_pool(root / "pool", n_per_class=4)
    clip = write_tiny_clip(root / "clip")
    rng = np.random.default_rng(0)
    head = Head(rng.normal(size=(3, 16)).astype(np.float32), scale=10.0)
    save(root / "a" / "classifier", head=head, class_names=sorted(c.replace("_", " ").replace("-", " ")
                                                                  for c in CLASSES),
         model=load_model("auto", str(clip)), model_source=model_source("auto", str(clip)),
         method="pseudolabel", config_json="{}", metrics={},
         extra_tensors={"vision/prompts": rng.normal(size=(1, 2, 32)).astype(np.float32)},
         model_setup={"visual_prompts": 2})
    items = sorted(str(p) for p in (root / "pool").rglob("*.*"))[::-1]
    probs = rng.dirichlet(np.ones(3), size=len(items)).astype(np.float32)
    np.savez(root / "a" / "pool_probs.npz", items=np.asarray(items), probs=probs)
    (root / "a" / "predictions.csv").write_text("path,predicted_class,confidence\n")
    return root


def _spy(monkeypatch):
    """Records the MethodInputs the engine builds."""
    seen = []
    real = engine.MethodInputs

    def record(**kw):
        seen.append(real(**kw))
        return seen[-1]

    monkeypatch.setattr(engine, "MethodInputs", record)
    return seen


def _rows(run):
    return list(csv.DictReader(open(run / "predictions.csv")))


def test_chained_transclip_starts_from_the_tuned_run(start, monkeypatch):
    seen = _spy(monkeypatch)
    assert _run(start, "transclip", start / "b", "--set", f"init.from={start / 'a'}") == 0
    rows_b = _rows(start / "b")
    with np.load(start / "a" / "pool_probs.npz") as z:  # B's prior: A's probabilities by item
        index = {str(i): r for r, i in enumerate(z["items"])}
        np.testing.assert_array_equal(seen[0].prior_probs, z["probs"][[index[r["path"]] for r in rows_b]])
    m = json.loads((start / "b" / "metrics.json").read_text())
    assert m["chain"] == [f"{(start / 'a').resolve()}/pseudolabel", "transclip"]
    assert m["prior"].startswith("the start run") and m["chain_prior"]["use"].startswith("used")
    assert "## Chain" in (start / "b" / "report.md").read_text()
    # B embedded with A's tuned model, and its artifact carries A's prompts beside its own head
    paths = [r["path"] for r in rows_b]
    features_a = load(start / "a" / "classifier").features(paths)
    # (the frozen model's features differ from these by up to 6.7e-4 on this pool: the check can fail)
    np.testing.assert_allclose(np.asarray(seen[0].x)[:len(paths)], features_a, atol=1e-5)
    a = load_file(str(start / "a" / "classifier" / "classifier.safetensors"))
    b = load_file(str(start / "b" / "classifier" / "classifier.safetensors"))
    np.testing.assert_array_equal(a["params.vision/prompts"], b["params.vision/prompts"])
    assert json.loads((start / "b" / "classifier" / "meta.json").read_text())["model_setup"] == \
        {"visual_prompts": 2}


def test_chain_from_a_lone_artifact_and_predict_reproduces_the_run(start, monkeypatch, capsys):
    """A's classifier folder copied away (no pool_probs.npz beside it): the prior is A's head on the
    tuned features (what `adapt predict` on A's artifact gives); zero_shot ignores it, and `adapt
    predict` on the chained artifact gives the chained run's predictions."""
    shutil.copytree(start / "a" / "classifier", start / "alone")
    seen = _spy(monkeypatch)
    assert _run(start, "zero_shot", start / "c", "--set", f"init.from={start / 'alone'}") == 0
    rows = _rows(start / "c")
    np.testing.assert_allclose(seen[0].prior_probs,
                               load(start / "alone").predict([r["path"] for r in rows])[1], atol=1e-6)
    m = json.loads((start / "c" / "metrics.json").read_text())
    assert m["chain_prior"]["use"].startswith("not used") and "head" in m["chain_prior"]["source"]
    capsys.readouterr()
    assert cli.main(["predict", str(start / "c" / "classifier")] + [r["path"] for r in rows]) == 0
    out = [line.split(",")[1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert out == [r["predicted_class"] for r in rows]


@pytest.mark.parametrize("where, extra, message", [
    ("missing", [], "no such folder"),
    ("pool", [], "not a finished run"),
    ("a", ["--set", "classes.names=red square,green disc,blue bar"], "same class names"),
    ("a", ["other model"], "weights"),
])
def test_bad_starts_are_one_line_errors(start, capsys, where, extra, message):
    model = None
    if extra == ["other model"]:
        model, extra = write_tiny_clip(start / "clip2", seed=1), []
        capsys.readouterr()
    assert _run(start, "transclip", start / "bad", "--set", f"init.from={start / where}", *extra,
                model=model) == 2
    err = capsys.readouterr().err
    assert err.startswith("adapt: error:") and message in err and len(err.strip().splitlines()) == 1
