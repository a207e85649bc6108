"""The ImageNet side of the offline model's text tie: the 1000 classes, the texts that stand for
each (a prompt ensemble, by variant) and their MiniLM embeddings (1000, 384), cached.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from adapt import assets
from adapt.models.minilm import MiniLM

_TEXT_CACHE: dict[str, np.ndarray] = {}


def load_imagenet_classes(path: str | Path | None = None) -> list[dict]:
    """The 1000 ImageNet-1k classes in sorted-WNID order: {idx, wnid, name, synonyms, gloss}."""
    path = Path(path) if path else assets.path("imagenet_classes.json")
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing")
    classes = json.loads(path.read_text())
    if len(classes) != 1000 or [c["idx"] for c in classes] != list(range(1000)):
        raise ValueError(f"{path}: expected 1000 classes with idx 0..999 in order")
    return classes


def class_texts(c: dict, variant: str) -> list[str]:
    """The texts that represent ImageNet class c; several texts are averaged (prompt ensemble)."""
    syns = list(dict.fromkeys([c["name"], *c["synonyms"]]))
    variants = {
        "name": [c["name"]],
        "synonyms": syns,
        "name_gloss": [f"{c['name']}, {c['gloss']}"],
        "synonyms_gloss": syns + [f"{c['name']}, {c['gloss']}"],
        "photo_name": [f"a photo of a {c['name']}."],
        "photo_synonyms": [f"a photo of a {s}." for s in syns],
    }
    if variant not in variants:
        raise ValueError(f"unknown class-text variant {variant!r}; one of {sorted(variants)}")
    return variants[variant]


def ensemble_embed(minilm: MiniLM, groups: Sequence[Sequence[str]]) -> np.ndarray:
    """Embed each group of texts, average the normalised rows, renormalise: (len(groups), 384)."""
    flat = [t for g in groups for t in g]
    emb = minilm.encode(flat)
    owner = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    out = np.zeros((len(groups), emb.shape[1]), np.float32)
    np.add.at(out, owner, emb)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def imagenet_text_embeddings(minilm: MiniLM, classes: list[dict], variant: str, key: str,
                             cache_dir: Path | None) -> np.ndarray:
    """(1000, 384) ImageNet class text embeddings, cached in memory and as .npy under cache_dir."""
    if key in _TEXT_CACHE:
        return _TEXT_CACHE[key]
    path = cache_dir / f"imagenet_text_{key}.npy" if cache_dir else None
    if path is not None and path.is_file():
        emb = np.load(path)
    else:
        emb = ensemble_embed(minilm, [class_texts(c, variant) for c in classes])
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, emb)
            os.replace(tmp, path)
    _TEXT_CACHE[key] = emb
    return emb
