"""Model soups (Wortsman et al., "Model soups: averaging weights of multiple fine-tuned models
improves accuracy without increasing inference time", ICML 2022; official code:
mlfoundations/model-soups): one classifier whose tuned parameters are the average of several runs'.

Ingredients are run folders (or their `classifier/` folders) that differ only in `seed`: the same
method, model (id and weights hash), class names, head (view, normalize, scale), model set-up, config
(every key but `seed`), tensor names and shapes. Anything else is an incompatibility, reported with
what differs and in which run. Every tensor of the artifacts is averaged: the head (weights, center,
bias) and the tuned model parameters (`params.*`, e.g. visual prompts).

- uniform soup: the plain mean over all ingredients; needs no labels.
- greedy soup: ingredients sorted by held-out accuracy, each added when the soup's held-out accuracy
  does not drop (the paper's rule, ties kept). It needs labelled held-out images, so it belongs to the
  few-label setting only; the caller gives the scoring function (adapt/cli.py: labelled image files).
The soup is written as `OUT/classifier` (loadable by `adapt predict` and `artifact.load`) with
`OUT/soup.json` naming its ingredients; meta.json keeps the first ingredient's config and records
the soup under `metrics.soup`.
"""
from __future__ import annotations

import csv
import datetime
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from safetensors.numpy import load_file, save_file

from adapt.output import artifact

VARYING_KEYS = ("seed",)  # config keys in which ingredients may differ


class Ingredient(NamedTuple):
    """One run's artifact: its folder, meta.json and tensors by name."""

    path: Path
    meta: dict
    tensors: dict


def read(run_dir) -> Ingredient:
    """A run folder (holding classifier/) or a classifier folder -> its checked artifact."""
    path = Path(run_dir)
    if not (path / "meta.json").is_file() and (path / "classifier").is_dir():
        path = path / "classifier"
    clf = artifact.load(path)  # validates meta.json and the head
    return Ingredient(path, clf.meta, load_file(str(path / "classifier.safetensors")))


def _flat(d, prefix="") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
    return out


def _differ(a, b) -> list[str]:
    fa, fb = _flat(a), _flat(b)
    return sorted(k for k in set(fa) | set(fb) if k not in VARYING_KEYS and fa.get(k, "<absent>") != fb.get(k, "<absent>"))


def incompatibility(first: Ingredient, other: Ingredient) -> str | None:
    """What keeps `other` out of a soup with `first` (one line), or None."""
    checks = [("method", first.meta.get("method"), other.meta.get("method")),
              ("model", {k: first.meta["model"].get(k) for k in ("id", "weights_hash")},
               {k: other.meta["model"].get(k) for k in ("id", "weights_hash")}),
              ("class names", first.meta["class_names"], other.meta["class_names"]),
              ("head", first.meta["head"], other.meta["head"]),
              ("model set-up", first.meta.get("model_setup"), other.meta.get("model_setup"))]
    for what, a, b in checks:
        if a != b:
            return f"different {what}: {str(a)[:120]} vs {str(b)[:120]}"
    keys = _differ(first.meta.get("config") or {}, other.meta.get("config") or {})
    if keys:
        return f"different config beyond {', '.join(VARYING_KEYS)}: {', '.join(keys[:8])}"
    if sorted(first.tensors) != sorted(other.tensors):
        return f"different tensor names: {sorted(set(first.tensors) ^ set(other.tensors))[:6]}"
    for name, v in first.tensors.items():
        if v.shape != other.tensors[name].shape:
            return f"parameter {name} has shape {other.tensors[name].shape}, not {v.shape}"
    return None


def check_compatible(ingredients: list[Ingredient]) -> None:
    """ValueError naming the first incompatible run and what differs."""
    if len(ingredients) < 1:
        raise ValueError("a soup needs at least one run")
    for other in ingredients[1:]:
        why = incompatibility(ingredients[0], other)
        if why:
            raise ValueError(f"runs {ingredients[0].path} and {other.path} cannot be souped: {why}")


def uniform(tensor_sets: list[dict]) -> dict:
    """The mean of each tensor over the sets (accumulated in float64, stored in its own dtype)."""
    return {name: (sum(np.asarray(t[name], np.float64) for t in tensor_sets) / len(tensor_sets))
            .astype(v.dtype) for name, v in tensor_sets[0].items()}


def greedy(ingredients: list[Ingredient], score: Callable[[dict], float]):
    """The greedy soup: -> (tensors, indices of the ingredients kept, their scores, the soup's score).
    `score(tensors)` is the held-out accuracy of a classifier with those tensors."""
    alone = [score(i.tensors) for i in ingredients]
    order = sorted(range(len(ingredients)), key=lambda j: -alone[j])
    kept, best = [order[0]], alone[order[0]]
    for j in order[1:]:
        trial = score(uniform([ingredients[k].tensors for k in kept + [j]]))
        if trial >= best:
            kept, best = kept + [j], trial
    return uniform([ingredients[k].tensors for k in kept]), kept, alone, best


def write(out, ingredients: list[Ingredient], tensors: dict, info: dict) -> Path:
    """Writes OUT/classifier (the souped artifact, atomically) and OUT/soup.json; returns the former."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(ingredients[0].meta)
    meta["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record = dict(info, runs=[str(i.path) for i in ingredients],
                  seeds=[(i.meta.get("config") or {}).get("seed") for i in ingredients])
    meta["metrics"] = {"soup": record}
    tmp = Path(tempfile.mkdtemp(prefix=".classifier.", dir=out))
    os.chmod(tmp, 0o755)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / "classifier.safetensors"))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=float))
    artifact._swap_in(tmp, out / "classifier")
    (out / "soup.json").write_text(json.dumps(record, indent=1))
    return out / "classifier"


def read_labelled(csv_path, class_names: list) -> tuple[list[str], np.ndarray]:
    """A CSV of held-out images with a header `path,class` (class names as the runs name them) ->
    (image paths, labels (M,)); ValueError on an unknown class or an empty file."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "class"} <= set(rows[0]):
        raise ValueError(f"{csv_path}: needs a header `path,class` and at least one row")
    index = {n: i for i, n in enumerate(class_names)}
    unknown = sorted({r["class"] for r in rows} - set(index))
    if unknown:
        raise ValueError(f"{csv_path}: classes {unknown[:5]} are not among the runs' classes")
    base = Path(csv_path).parent
    return [str(base / r["path"]) for r in rows], np.asarray([index[r["class"]] for r in rows])


def held_out_scorer(first: Ingredient, images: list[str], labels: np.ndarray) -> Callable[[dict], float]:
    """score(tensors): accuracy on the labelled `images` of `first`'s classifier with those tensors
    (written to a temporary artifact and loaded, so the model is set up as `adapt predict` does)."""
    def score(tensors: dict) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            path = write(tmp, [first], tensors, {"kind": "candidate"})
            kept, pred, _, _ = artifact.load(path).predict_files(images)
            return float((pred == labels[kept]).mean()) if len(kept) else 0.0
    return score
