"""Runs that start from a finished classification run (`--set init.from=RUN_DIR`, or its
`classifier/` folder; issue #22): run A's model, with A's tuned parameters installed, embeds run B's
pool, and A's pool probabilities are B's prior where B's method has one (`Method.uses_prior`,
`MethodInputs.prior_probs`). B's artifact carries A's tuned parameters beside B's head.

Where B's prior comes from, the exact source first:
  A's `pool_probs.npz` (written beside predictions.csv by every classification run): A's own pool
     probabilities, matched to B's rows by item (`pool.location`); every row of B must be in it.
  Else (runs made before that file existed, or an artifact folder given alone): A's deployable head
     applied to B's features, which B embedded with A's tuned model. Equal to A's pool
     probabilities up to float rounding where those are the head's (tuning methods: pseudolabel,
     NoLA); not for transductive methods, whose head is an inductive summary of the pool. The
     metrics name the source and how often its argmax agrees with A's predictions.csv.
Checks, each a one-line error: the folder exists; it is a run or an artifact folder; the same frozen
model (weights hash); the same class names in the same order; the same pool (B's items among A's).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

import numpy as np

from adapt.output import artifact

POOL_PROBS = "pool_probs.npz"


class Start(NamedTuple):
    """The run a chained run starts from."""

    run_dir: Path | None  # the run folder (None: an artifact folder given alone)
    classifier: artifact.Classifier
    chain: list[str]  # the runs so far, "folder/method" each, A last


def open_start(path: str) -> Start:
    """The run at `path` (a run folder or its classifier folder); errors before any compute."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"init.from={path}: no such folder")
    if not p.is_dir():
        raise ValueError(f"init.from={path} is a file; give a finished run folder or its classifier/ folder")
    if (p / "classifier" / "meta.json").is_file():
        clf_dir, run_dir = p / "classifier", p
    elif (p / "meta.json").is_file():
        clf_dir, run_dir = p, p.parent if (p.parent / "predictions.csv").is_file() else None
    else:
        raise ValueError(f"init.from={path} is not a finished run (no classifier/meta.json) nor an "
                         "artifact folder (no meta.json)")
    clf = artifact.load(clf_dir)
    if clf.meta.get("method") in (None, "musc") or "head" not in clf.meta:
        raise ValueError(f"init.from={path} is not a classification run")
    here = f"{(run_dir or clf_dir).resolve()}/{clf.meta['method']}"
    before = list((clf.meta.get("metrics") or {}).get("chain") or [])[:-1]
    return Start(run_dir, clf, before + [here])


def prepare_model(start: Start, model) -> None:
    """Installs the start run's tuned parameters into the job's `model` (same frozen weights)."""
    m = start.classifier.meta["model"]
    if model.weights_hash != m["weights_hash"]:
        where = m.get("path") or "(empty: the offline default)"
        raise ValueError(
            f"init.from: {start.classifier.path} was made with model {m['id']} (weights "
            f"{m['weights_hash']}), this run loads {model.model_id} (weights {model.weights_hash}); "
            f"run with that run's model (model.kind={m.get('kind')}, model.path={where})")
    artifact.install_tuned(model, start.classifier.meta.get("model_setup") or {}, start.classifier.params)


def check_classes(start: Start, names) -> None:
    theirs = start.classifier.class_names
    if list(names) != theirs:
        raise ValueError(f"init.from: {start.classifier.path} classifies {theirs}, this run's classes are "
                         f"{list(names)}; give the same class names in the same order (classes.names)")


def _start_predictions(start: Start) -> dict[str, str] | None:
    """item -> predicted class name from the start run's predictions.csv, or None without one."""
    if start.run_dir is None or not (start.run_dir / "predictions.csv").is_file():
        return None
    with open(start.run_dir / "predictions.csv", newline="", encoding="utf-8") as f:
        return {r["path"]: r["predicted_class"] for r in csv.DictReader(f)}


def _check_pool(items: list[str], known, what: str) -> None:
    missing = [i for i in items if i not in known]
    if missing:
        raise ValueError(f"init.from: {len(missing)} of this run's {len(items)} images are not in the "
                         f"start run's pool ({what}; first: {missing[0]}); chain runs on the same pool")


def prior(start: Start, items: list[str], head_view: np.ndarray) -> tuple[np.ndarray, dict]:
    """(N, C) start probabilities of this run's rows `items` (N,) and a record of their source.
    head_view (N, d): this run's features in the start head's view (used without pool_probs.npz)."""
    stored = start.run_dir / POOL_PROBS if start.run_dir is not None else None
    predicted = _start_predictions(start)
    if stored is not None and stored.is_file():
        with np.load(stored) as z:
            index = {str(i): r for r, i in enumerate(z["items"])}
            _check_pool(items, index, POOL_PROBS)
            probs = np.asarray(z["probs"], np.float32)[[index[i] for i in items]]
        source = f"{stored}: the start run's pool probabilities, matched by item"
    else:
        if predicted is not None:
            _check_pool(items, predicted, "its predictions.csv")
        probs = start.classifier.head.probs(head_view).astype(np.float32)
        source = ("the start run's head on this run's features (embedded with its tuned model): the "
                  f"start run has no {POOL_PROBS}")
    record = {"source": source}
    names, predicted = start.classifier.class_names, predicted or {}
    same = [names[p] == predicted[i] for p, i in zip(probs.argmax(1), items) if i in predicted]
    if same:
        record["agreement_with_start_predictions"] = float(np.mean(same))
    return probs, record


def write_pool_probs(folder: Path, items: list[str], probs: np.ndarray) -> None:
    """The run's pool probabilities (N, C) by item, for runs that start from this one."""
    np.savez(folder / POOL_PROBS, items=np.asarray(items, dtype=str), probs=np.asarray(probs, np.float32))
