"""Conformance of every method (issue #18 item 5): what each job promises, checked the same way for
every name in `methods.names()`, through the public entry `adapt.engine.run(config, workdir)` and the
files it writes. A new method is covered by adding its name: the set-up is chosen per job KIND
("classify" | "anomaly" | "realistic"), never per method.

Per kind:
- classify: every row of the probability table on the simplex, the prediction its argmax under the
  project's tie rule (scores within 1e-5 x max|row| of the row maximum are tied; the lowest class
  index wins), predictions.csv agreeing with that table; the same predictions on 1 and 8 devices.
- anomaly: one finite score per pool image (scores.csv); the same scores on 1 and 8 devices.
- realistic: every prediction a word of the vocabulary the test gives; the same words on 1 and 8.
- every kind: a second run with the same seed writes the same files (timings and dates aside), and
  a misspelt `method_args` key is an error whose message names the real key.

Pools: real images and the real embedded offline default model. classify and realistic: the
Fashion-MNIST preset, POOL_SIZE images; anomaly: the seeded CutPaste `defects,Trouser` preset,
POOL_SIZE images. The realistic job gets a small vocabulary file (the built-in WordNet one takes
25 minutes to embed). One embedding cache serves the whole module, so only the first run embeds.

Shortening rule, the same for every method: every config key named `rounds`, `iterations` or
`iters` or ending in `epochs` (method_args.epochs, labeller_epochs, warmup_epochs, rounds;
self_learning.epochs; the EM / mean-variance / gradient iterations of gda, transclip, stata, inmap)
is capped at 1, and every floor of optimizer steps (`min_steps_per_epoch`, which would otherwise add shuffled
passes to reach it) is set to 0. Measured on 32 images on this 2-core machine: NoLA at its defaults (50 + 50 epochs) takes
25-45 s a run, the pseudo-label tuner (10 rounds x 150 epochs) did not finish in 8 minutes, S3A's
self-learning (10 epochs) adds 8-30 s; capped, each run is a few seconds. The checks here are about
the shape of the outputs, not about how well a method adapts, so one epoch is as good as fifty.

The full probability table is not in predictions.csv (it keeps the predicted class's confidence
only), so a classification run is watched at the point where that file is written
(`adapt.output.report.write_predictions`): the table it receives is checked, and the file is checked
to be that table.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import inspect
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import methods
from adapt import engine, models, registry
from adapt.core.config import all_keys, load_config
from adapt.output import report as output_report

POOL_SIZE = 32
DEVICE_COUNTS = (1, 8)
PRESET = {"classify": "fashion_mnist", "realistic": "fashion_mnist", "anomaly": "defects,Trouser"}
VOCABULARY = ["trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot",
              "cat", "car", "banana", "airplane", "guitar"]
SUM_TOLERANCE = 1e-5  # a float32 row of C <= 16 normalised entries sums to 1 within C * 2^-24 < 1e-6
TIE_TOLERANCE = 1e-5  # the project's tie rule (relative to the row's largest magnitude)
# MuSc's scores on 1 and 8 devices: the same float32 sums, added in another order when the pool's
# rows are split over 8 devices (a score: a mean over a rank window of the other images' nearest-patch
# distances, then a max over pixels): relative rounding below N * 2^-24 ~ 2e-6 for N = 32, plus the 6 decimals
# scores.csv prints (5e-7). 1e-5 absolute + 1e-5 relative (scores lie in [0.5, 1.1] here) leaves a
# margin of 5 over that and is still below the smallest gap between two images' scores (9e-5).
SCORE_ATOL = SCORE_RTOL = 1e-5
VOLATILE_KEYS = {"seconds", "images_per_s", "created", "finished"}  # timings and dates
VOLATILE_LINE = "Seconds per stage"  # report.md's timing line


def _job_kind(config) -> str:
    """"classify" | "anomaly" | "realistic": the kind of job the config's method runs."""
    return registry.make_method(config).job


def _shorten(config) -> None:
    """Caps every key named `rounds`, `iterations` or `iters` or ending in `epochs` at 1 and sets every
    floor of optimizer steps (a key starting with `min_steps`) to 0 (see the module docstring)."""
    for key in all_keys(config):
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        value = node[leaf]
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        if (leaf in ("rounds", "iterations", "iters") or leaf.endswith("epochs")) and value > 1:
            node[leaf] = 1
        elif leaf.startswith("min_steps") and value != 0:  # -1: "auto" (a floor chosen per model)
            node[leaf] = 0


def _misspelt(key: str) -> str:
    """`key` with one letter changed (its middle letter, or the next letter after it)."""
    i = next(j for j in range(len(key) // 2, len(key)) if key[j].isalpha())
    return key[:i] + ("q" if key[i] != "q" else "x") + key[i + 1:]


def _config(name: str, devices: int, folder: Path):
    """The method's shipped config on the tiny pool of its job kind, on `devices` devices."""
    kind = _job_kind(load_config(name))
    config = load_config(f"{name}:{PRESET[kind]}")
    config.pool.limit = POOL_SIZE
    config.embed.cache_dir = str(folder / "cache")
    config.embed.num_devices = devices
    if kind == "realistic":
        vocabulary = folder / "vocabulary.txt"
        vocabulary.write_text("\n".join(VOCABULARY) + "\n")
        config.vocabulary.file = str(vocabulary)
    _shorten(config)
    return config


@contextlib.contextmanager
def _watch_prediction_tables():
    """Records (pred (N,), probs (N, C), class names) each time predictions.csv is written with
    `adapt.output.report.write_predictions`, wherever our modules hold that function."""
    original = output_report.write_predictions
    signature = inspect.signature(original)
    seen = []

    def watched(*args, **kwargs):
        bound = signature.bind(*args, **kwargs).arguments
        seen.append((np.asarray(bound["pred"]), np.asarray(bound["probs"]), list(bound["names"])))
        return original(*args, **kwargs)

    holders = [m for m in list(sys.modules.values()) if m is not None
               and getattr(m, "__name__", "").startswith(("adapt", "methods"))
               and getattr(m, "write_predictions", None) is original]
    for module in holders:
        module.write_predictions = watched
    try:
        yield seen
    finally:
        for module in holders:
            module.write_predictions = original


class Run:
    def __init__(self, workdir: Path, kind: str, tables: list):
        self.workdir, self.kind, self.tables = workdir, kind, tables

    def rows(self, file: str) -> list[dict]:
        with open(self.workdir / file, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def column(self, file: str, key: str, value: str) -> dict:
        """{row[key]: row[value]} of a CSV output."""
        return {r[key]: r[value] for r in self.rows(file)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("conformance")


@pytest.fixture(scope="module")
def fresh_model_copies():
    """Each run gets its own deep copy of a frozen model loaded once per (kind, path, grounding):
    loading the offline model costs seconds a run, a copy a fraction of that, and no run can see
    what another run did to its model (tuning methods attach prompts and device-placed state)."""
    loaded, load = {}, models.load_model

    def load_copy(*args):
        if args not in loaded:
            loaded[args] = load(*args)
        return copy.deepcopy(loaded[args])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models, "load_model", load_copy)
        yield


@pytest.fixture(scope="module")
def run_job(folder, fresh_model_copies):
    """run_job(name, devices, repeat=0) -> Run: one job per (name, devices, repeat), shared."""
    done = {}

    def run(name: str, devices: int, repeat: int = 0) -> Run:
        if (name, devices, repeat) not in done:
            config = _config(name, devices, folder)
            workdir = folder / f"{name}_{devices}dev_{repeat}"
            with _watch_prediction_tables() as tables:
                engine.run(config, workdir, progress=False)
            done[name, devices, repeat] = Run(workdir, _job_kind(config), tables)
        return done[name, devices, repeat]

    return run


# ---- checkers (independent of the code under test) ---------------------------------------------

def simplex_argmax_problems(probs, pred) -> list[str]:
    """What is wrong with a probability table probs (N, C) and its predictions pred (N,): rows off
    the simplex, predictions other than the row's argmax under the tie rule (lowest tied index)."""
    probs, pred = np.asarray(probs, np.float64), np.asarray(pred)
    if probs.ndim != 2 or pred.shape != (probs.shape[0],):
        return [f"shapes: probs {probs.shape}, predictions {pred.shape}"]
    problems = []
    if not np.isfinite(probs).all():
        problems.append(f"non-finite entries in rows {np.flatnonzero(~np.isfinite(probs).all(1))[:5]}")
    negative = np.flatnonzero((probs < 0).any(1))
    if negative.size:
        problems.append(f"negative entries in rows {negative[:5]}")
    off = np.flatnonzero(np.abs(probs.sum(1) - 1.0) > SUM_TOLERANCE)
    if off.size:
        problems.append(f"rows {off[:5]} sum to {probs.sum(1)[off[:5]]}, not 1")
    tied = probs >= probs.max(1, keepdims=True) - TIE_TOLERANCE * np.abs(probs).max(1, keepdims=True)
    expected = np.argmax(tied, axis=1)  # the first True: the lowest index among the tied maxima
    wrong = np.flatnonzero(pred != expected)
    if wrong.size:
        problems.append(f"rows {wrong[:5]} predict {pred[wrong[:5]]}, their argmax is {expected[wrong[:5]]}")
    return problems


def _without_volatile(value):
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


def comparable_outputs(workdir: Path) -> dict:
    """The job's results by file (predictions.csv, scores.csv, metrics.json, report.md,
    classifier/), timings and dates left out, the run's own folder written as WORKDIR (report.md's
    command names it)."""
    out = {}
    for name in ("predictions.csv", "scores.csv", "metrics.json", "report.md"):
        if (workdir / name).exists():
            out[name] = (workdir / name).read_bytes()
    for path in sorted((workdir / "classifier").glob("*")) if (workdir / "classifier").is_dir() else []:
        out[f"classifier/{path.name}"] = path.read_bytes()
    for name, data in out.items():
        if name.endswith(".json"):
            out[name] = _without_volatile(json.loads(data))
        elif name.endswith(".md"):
            text = data.decode().replace(str(workdir), "WORKDIR")
            out[name] = [ln for ln in text.splitlines() if not ln.startswith(VOLATILE_LINE)]
    return out


def _differences(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


# ---- the checks, for every method --------------------------------------------------------------

@pytest.mark.parametrize("name", methods.names())
def test_outputs_keep_the_jobs_promises(name, run_job):
    run = run_job(name, 8)
    metrics = json.loads((run.workdir / "metrics.json").read_text())
    assert metrics["n_images"] == POOL_SIZE
    if run.kind == "classify":
        _check_classification(run)
    elif run.kind == "anomaly":
        rows = run.rows("scores.csv")
        assert len(rows) == POOL_SIZE and len({r["item"] for r in rows}) == POOL_SIZE
        scores = np.array([float(r["score"]) for r in rows])
        assert np.isfinite(scores).all(), scores
    elif run.kind == "realistic":
        rows = run.rows("predictions.csv")
        assert len(rows) == POOL_SIZE
        for r in rows:
            assert r["predicted_word"] in VOCABULARY, r
            assert VOCABULARY[int(r["vocabulary_index"])] == r["predicted_word"], r
    else:
        pytest.fail(f"{name}: unknown job kind {run.kind!r}")


def _check_classification(run: Run):
    assert len(run.tables) == 1, "engine.run wrote predictions.csv other than through " \
                                 "adapt.output.report.write_predictions: update _watch_prediction_tables"
    pred, probs, names = run.tables[0]
    assert probs.shape == (POOL_SIZE, len(names))
    assert simplex_argmax_problems(probs, pred) == []
    rows = run.rows("predictions.csv")
    assert [r["predicted_class"] for r in rows] == [names[p] for p in pred]
    assert [r["confidence"] for r in rows] == [f"{probs[i, p]:.6f}" for i, p in enumerate(pred)]
    confidence = np.array([float(r["confidence"]) for r in rows])
    assert (confidence >= 1 / len(names) - 1e-6).all() and (confidence <= 1 + 1e-6).all()
    meta = json.loads((run.workdir / "classifier" / "meta.json").read_text())
    assert meta["class_names"] == names


@pytest.mark.parametrize("name", methods.names())
def test_same_results_on_1_and_8_devices(name, run_job):
    one, eight = (run_job(name, d) for d in DEVICE_COUNTS)
    if one.kind == "classify":
        assert one.column("predictions.csv", "path", "predicted_class") == \
               eight.column("predictions.csv", "path", "predicted_class")
    elif one.kind == "realistic":
        assert one.column("predictions.csv", "path", "predicted_word") == \
               eight.column("predictions.csv", "path", "predicted_word")
    else:
        a, b = (r.column("scores.csv", "item", "score") for r in (one, eight))
        assert a.keys() == b.keys()
        items = sorted(a)
        np.testing.assert_allclose([float(b[i]) for i in items], [float(a[i]) for i in items],
                                   rtol=SCORE_RTOL, atol=SCORE_ATOL)


@pytest.mark.parametrize("name", methods.names())
def test_same_seed_same_files(name, run_job):
    first, second = run_job(name, 8), run_job(name, 8, repeat=1)
    assert _differences(comparable_outputs(first.workdir), comparable_outputs(second.workdir)) == []


@pytest.mark.parametrize("name", methods.names())
def test_misspelt_method_arg_names_the_real_key(name, folder):
    config = _config(name, 8, folder)
    if not config.method_args.keys():
        pytest.skip(f"{name} has no method_args")
    key = sorted(config.method_args.keys(), key=lambda k: (-len(k), k))[0]  # the longest: unambiguous
    with config.unlocked():
        config.method_args[_misspelt(key)] = config.method_args[key]
    try:
        engine.run(config, folder / f"{name}_misspelt", progress=False)
        failure = f"method_args.{_misspelt(key)} (for {key}) was accepted"
    except (ValueError, KeyError) as e:  # a config error (ValueError; KeyError from a mapping)
        if key in str(e):
            return
        failure = f"method_args.{_misspelt(key)}: {type(e).__name__} not naming {key!r}: {e}"
    pytest.fail(failure)


# ---- the checks can fail -----------------------------------------------------------------------

def test_checker_accepts_a_good_table_and_the_lowest_tied_index():
    probs = np.array([[0.2, 0.5, 0.3], [0.4, 0.2, 0.4], [0.25, 0.25 + 1e-7, 0.5 - 1e-7]], np.float32)
    assert simplex_argmax_problems(probs, np.array([1, 0, 2])) == []
    assert simplex_argmax_problems(np.array([[0.5, 0.5 + 1e-6, 0.0]]), np.array([0])) == []


@pytest.mark.parametrize("probs, pred, problem", [
    ([[0.6, 0.5, -0.1]], [0], "negative"),
    ([[0.6, 0.3, 0.0]], [0], "sum to"),
    ([[0.2, 0.5, 0.3]], [2], "argmax is [1]"),
    ([[0.4, 0.2, 0.4]], [2], "argmax is [0]"),  # a tie goes to the lowest index
    ([[0.5, 0.5 + 1e-6, 0.0]], [1], "argmax is [0]"),  # within the tie tolerance: tied
    ([[0.5, 0.5]], [0, 1], "shapes"),
    ([[math.nan, 1.0]], [1], "non-finite"),
])
def test_checker_rejects_a_bad_table(probs, pred, problem):
    problems = simplex_argmax_problems(np.array(probs), np.array(pred))
    assert any(problem in p for p in problems), problems


def test_comparison_sees_a_changed_prediction_and_ignores_timings(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, seconds, label in ((a, 1.0, "coat"), (b, 2.0, "coat")):
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "seconds": {"embed": seconds}}))
        (folder / "report.md").write_text(f"# run\n{VOLATILE_LINE}: embed {seconds}\n")
        (folder / "predictions.csv").write_text(f"path,predicted_class,confidence\nx.png,{label},0.9\n")
    assert _differences(comparable_outputs(a), comparable_outputs(b)) == []
    (b / "predictions.csv").write_text("path,predicted_class,confidence\nx.png,bag,0.9\n")
    assert _differences(comparable_outputs(a), comparable_outputs(b)) == ["predictions.csv"]


def test_misspelling_changes_one_letter():
    for key in ("head", "labeller_batch_size", "k_list", "q_q"):
        wrong = _misspelt(key)
        assert wrong != key and len(wrong) == len(key)
        assert sum(x != y for x, y in zip(wrong, key)) == 1
