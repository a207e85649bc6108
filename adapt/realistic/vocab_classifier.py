"""The vocabulary text classifier T_V (|V|, D): every name embedded once, cached on disk.

T_V is built like a zero-shot class classifier (adapt.features.text.encode_classes, uniform prompt-template
ensemble) over tens of thousands of names: in chunks of names, with a progress bar, each chunk
written atomically to `<cache_root>/vocabulary/<key>/chunk_NNNNN.npz`, so an interrupted build
resumes at the first missing chunk. The key hashes the model id, its weights hash, the vocabulary's
names (in order) and the templates; definitions and synonyms do not change T_V and are not in it.
Models with a class map onto an image view (the offline default) also get the map of every name,
`view_weights` (|V|, d_view), for the model's own zero-shot head.

Cost with the offline default model: one MiniLM pass per prompt, about 100 prompts/s on 2 CPU
cores, so the 20,404-name built-in vocabulary with one template takes a few minutes, once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from adapt.features.text import encode_classes
from adapt.vocab.vocabulary import Vocabulary

CACHE_FORMAT = 1


@dataclasses.dataclass
class VocabularyClassifier:
    weights: np.ndarray  # (|V|, D) float32, rows L2-normalised, image-embedding space
    view_weights: np.ndarray | None  # (|V|, d_view) the model's class map of each name, or None
    view: str | None  # the image view view_weights apply to
    key: str  # cache key
    templates: tuple[str, ...]


def cache_key(model, vocab: Vocabulary, templates) -> str:
    parts = [CACHE_FORMAT, model.model_id, model.weights_hash, vocab.names_sha256(), list(templates)]
    if getattr(model, "text_hash", ""):  # text-side settings that weights_hash does not cover
        parts.append(model.text_hash)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def _save_atomic(path: Path, **arrays) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def encode_vocabulary(model, vocab: Vocabulary, templates, *, cache_root: str | os.PathLike,
                      chunk: int = 2048, progress: bool = True,
                      write: bool = True) -> VocabularyClassifier:
    """T_V for `vocab` under `templates` (each with one `{}`), from the cache when present.

    write: False on processes other than the writer (they compute missing chunks but do not store).
    """
    templates = tuple(templates)
    if not templates:
        raise ValueError("the vocabulary classifier needs at least one prompt template")
    key = cache_key(model, vocab, templates)
    folder = Path(cache_root) / "vocabulary" / key
    if write:
        folder.mkdir(parents=True, exist_ok=True)
        meta = dict(model=model.model_id, weights_hash=model.weights_hash, n_names=len(vocab),
                    names_sha256=vocab.names_sha256(), templates=list(templates), source=vocab.source)
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    names = vocab.names
    starts = range(0, len(names), chunk)
    rows, view_rows, view = [], [], None
    bar = tqdm(total=len(names), desc="vocabulary classifier", unit="name", disable=not progress)
    for i, start in enumerate(starts):
        path = folder / f"chunk_{i:05d}.npz"
        if path.is_file():
            with np.load(path) as z:
                w, vw = z["weights"], (z["view_weights"] if "view_weights" in z else None)
            view = getattr(model, "class_map_view", None) if vw is not None else view
        else:
            texts = encode_classes(model, names[start:start + chunk], list(templates), warn_identical=False)
            w, vw, view = texts.weights, texts.view_weights, texts.view
            if write:
                extra = {} if vw is None else {"view_weights": vw.astype(np.float32)}
                _save_atomic(path, weights=w.astype(np.float32), **extra)
        rows.append(np.asarray(w, np.float32))
        if vw is not None:
            view_rows.append(np.asarray(vw, np.float32))
        bar.update(min(chunk, len(names) - start))
    bar.close()
    weights = np.concatenate(rows)
    view_weights = np.concatenate(view_rows) if len(view_rows) == len(rows) else None
    return VocabularyClassifier(weights, view_weights, view if view_weights is not None else None,
                                key, templates)
