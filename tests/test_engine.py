"""`adapt run` end to end on a folder pool with a tiny CLIP checkpoint, and the artifact round trip."""
import csv
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adapt import cli
from adapt.core.config import apply_overrides, load_config, reproduce_command
from adapt.output.artifact import load
from adapt.registry import make_method
from tests.clip_fixtures import write_tiny_clip

CLASSES = ["red_square", "green-disc", "blue bar"]


def _write_pool(root, n_per_class=6, seed=0):
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            a = rng.integers(0, 60, size=(40, 48, 3), dtype=np.uint8)
            a[..., c] += 180
            Image.fromarray(a).save(root / name / f"{i}.png")
    (root / CLASSES[0] / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / CLASSES[1] / "empty.png").write_bytes(b"")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


def _run(tmp_path, model_dir, *extra):
    argv = ["run", "configs/zero_shot.py", "--workdir", str(tmp_path / "run"), "--quiet",
            "--set", f"pool.path={tmp_path / 'pool'}", "--set", f"model.path={model_dir}",
            "--set", f"embed.cache_dir={tmp_path / 'cache'}", "--set", "embed.batch_size=4", *extra]
    return cli.main(argv)


def test_run_writes_every_output_and_the_artifact_reproduces_predictions(tmp_path, tiny_clip, capsys):
    _write_pool(tmp_path / "pool")
    assert _run(tmp_path, tiny_clip) == 0
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == "zero_shot" and metrics["setting"] == "inductive"
    assert (metrics["n_images"], metrics["n_embedded"], metrics["n_skipped"]) == (20, 18, 2)
    for key in ("accuracy", "per_class_accuracy", "zero_shot_accuracy", "centered_zero_shot_accuracy"):
        assert metrics[key] is not None
    assert metrics["accuracy"] == metrics["zero_shot_accuracy"]  # zero-shot is its own baseline
    assert set(metrics["per_class_accuracy"]) == {"red square", "green disc", "blue bar"}
    assert set(metrics["seconds"]) >= {"setup", "embed", "method"}
    report = (run / "report.md").read_text()
    assert "broken.jpg" in report and "empty.png" in report
    command = re.search(r"- config: `(.*)`", report).group(1)  # pasted, it rebuilds the run's config
    want = apply_overrides(load_config("configs/zero_shot.py"), [
        f"pool.path={tmp_path / 'pool'}", f"model.path={tiny_clip}", f"embed.cache_dir={tmp_path / 'cache'}",
        "embed.batch_size=4"])
    assert _rebuild(command).to_json() == want.to_json()
    for f in ("confusion.png", "confidence.png", "predictions.csv", "classifier/meta.json",
              "classifier/classifier.safetensors"):
        assert (run / f).is_file(), f
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    assert len(rows) == 18
    # The artifact, loaded afresh, reproduces the pool predictions exactly.
    clf = load(run / "classifier")
    assert clf.meta["class_names"] == ["blue bar", "green disc", "red square"]  # sorted folders
    pred, probs = clf.predict([r["path"] for r in rows])
    assert [clf.class_names[p] for p in pred] == [r["predicted_class"] for r in rows]
    np.testing.assert_allclose(probs.max(1), [float(r["confidence"]) for r in rows], atol=1e-6)
    # and so does the command line
    capsys.readouterr()
    assert cli.main(["predict", str(run / "classifier"), rows[0]["path"], rows[5]["path"]]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split(",")[1] == rows[0]["predicted_class"]
    assert out[2].split(",")[1] == rows[5]["predicted_class"]


def test_rerun_reuses_the_embedding_cache(tmp_path, tiny_clip):
    _write_pool(tmp_path / "pool")
    assert _run(tmp_path, tiny_clip) == 0
    chunks = sorted((tmp_path / "cache").rglob("chunk_*.npz"))
    stamps = [c.stat().st_mtime_ns for c in chunks]
    assert _run(tmp_path, tiny_clip) == 0
    assert [c.stat().st_mtime_ns for c in chunks] == stamps


@pytest.mark.parametrize("extra, message", [
    (["--set", "classes.names=red square,green disc"], "class"),
    (["--set", "classes.names=a,a,b"], "duplicate"),
    (["--set", "pool.lmit=3"], "pool.limit"),
])
def test_bad_input_fails_with_one_clear_line_before_compute(tmp_path, tiny_clip, capsys, extra, message):
    _write_pool(tmp_path / "pool")
    assert _run(tmp_path, tiny_clip, *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("adapt: error:") and message in err.lower()
    assert not (tmp_path / "cache").exists()


def test_empty_folder_is_an_error(tmp_path, tiny_clip, capsys):
    (tmp_path / "pool").mkdir()
    assert _run(tmp_path, tiny_clip) == 2
    assert "empty" in capsys.readouterr().err.lower()


def test_methods_command_lists_every_method_with_its_config_and_description(capsys):
    assert cli.main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = [line.split()[:2] for line in lines[1:]
              if line.strip() and not line.startswith(("adapt", "PRESET"))]
    names = sorted(p.stem for p in Path("methods").glob("*.py") if not p.stem.startswith("_"))
    assert [n for n, _ in listed[:len(names)]] == names
    assert all(n == c for n, c in listed[:len(names)])  # one shipped config per method, same name
    row = next(line for line in lines if line.startswith("musc "))
    assert row.split(None, 2)[2] == make_method(load_config("musc")).description


def _rebuild(command: str):
    """The config a pasted `adapt run ...` command line builds (its --set overrides applied)."""
    argv = shlex.split(command.split("  #")[0])
    assert argv[:2] == ["adapt", "run"] and cli.build_parser().parse_args(argv[1:]).config == argv[2]
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    return apply_overrides(load_config(argv[2]), sets)


@pytest.mark.parametrize("spec, overrides", [
    ("zero_shot:fashion_mnist", ["runlocal=True"]),
    ("musc:defects,Bag,0.35", ["method_args.layers=[1, 2]", "method_args.rscin=off"]),
    ("s3a:digits", ["self_learning.epochs=0", "method_args.k=10", "pool.path=/tmp/a b",
                    "prompts.templates=['a {}.', \"it's a {}\"]", "classes.names=a,b"]),
    ("zlap", ["seed=3", "embed.cache_dir=/x", "pool.limit=7", "method_args.alpha=0.5"]),
])
def test_the_reported_command_rebuilds_the_config(spec, overrides):
    config = apply_overrides(load_config(spec), overrides)
    command = reproduce_command(config, "/tmp/w")
    assert "--workdir /tmp/w" in command and "#" not in command
    assert _rebuild(command).to_json() == config.to_json()
    changed = apply_overrides(load_config(spec), overrides[:-1])  # the check can fail: one fewer
    assert _rebuild(reproduce_command(changed)).to_json() != config.to_json()


def test_job_kind_and_few_labels_are_declared_fields_of_the_method():
    assert [make_method(load_config(n)).job for n in ("zero_shot", "musc", "s3a")] == \
        ["classify", "anomaly", "realistic"]
    assert make_method(load_config("zero_shot")).few_labels is None
    ssl = apply_overrides(load_config("pseudolabel"),
                          ["method_args.setting=ssl", "method_args.labels_per_class=2"])
    labels = np.repeat(np.arange(3), 10)
    few = make_method(ssl).few_labels(labels)
    assert [(few == c).sum() for c in range(3)] == [2, 2, 2] and (few >= 0).sum() == 6
    assert np.all(few[few >= 0] == labels[few >= 0])
    ul = apply_overrides(load_config("pseudolabel"), ["method_args.setting=ul"])
    assert make_method(ul).few_labels(labels) is None
