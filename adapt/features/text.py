"""Class text embeddings from templates and descriptions (prompt ensembles; spec zero_shot.md)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings

import numpy as np


@dataclasses.dataclass
class ClassTexts:
    """The class side of a zero-shot classifier.

    weights: (C, D) class embeddings, rows L2-normalised, in image-embedding space.
    view_weights: (C, V) the model's class map onto one of its image views (e.g. ImageNet
      probabilities of the offline model), or None for models without one.
    prompts: the prompts of each class, in order.
    """

    weights: np.ndarray
    view_weights: np.ndarray | None
    view: str | None
    prompts: list[list[str]]
    prompt_weights: list[list[float]]
    identical: list[list[str]] = dataclasses.field(default_factory=list)  # see identical_classes


def fill(template: str, name: str) -> str:
    """Substitutes the class name into the template's single `{}` placeholder."""
    if template.count("{}") != 1:
        raise ValueError(f"template {template!r} must contain exactly one '{{}}' placeholder")
    return template.replace("{}", name)


def build_prompts(names, templates, descriptions=None, beta=-1.0):
    """Prompts and their ensemble weights per class.

    beta < 0: uniform over templates and descriptions together (CLIP / CuPL recipe).
    beta in [0, 1]: templates share 1 - beta, descriptions share beta.
    """
    prompts, weights = [], []
    for name in names:
        shown = name.replace("_", " ")
        tmpl = [fill(t, shown) for t in templates]
        desc = list(descriptions[name]) if descriptions else []
        if beta < 0 or not desc or not tmpl:
            w = [1.0] * (len(tmpl) + len(desc))
        else:
            w = [(1 - beta) / len(tmpl)] * len(tmpl) + [beta / len(desc)] * len(desc)
        total = sum(w)
        if not w or total <= 0:
            raise ValueError(f"class {name!r} has no prompt with positive weight")
        prompts.append(tmpl + desc)
        weights.append([x / total for x in w])
    return prompts, weights


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def identical_classes(weights: np.ndarray, names, tol: float = 1e-6) -> list[list[str]]:
    """Groups of class names whose embeddings coincide (cosine > 1 - tol): no classifier built on
    these embeddings alone can tell them apart (the argmax of a tie takes the first)."""
    sim = weights @ weights.T
    groups, seen = [], set()
    for i in range(len(names)):
        same = [j for j in i + np.flatnonzero(sim[i, i:] > 1 - tol) if j not in seen]
        seen.update(same)
        if len(same) > 1:
            groups.append([names[j] for j in same])
    return groups


def encode_classes(model, names, templates, descriptions=None, beta=-1.0,
                   warn_identical: bool = True) -> ClassTexts:
    """Embeds every prompt once and ensembles per class: t_c = normalize(sum_p w_p e_p).

    warn_identical: find classes with the same embedding (e.g. the offline model grounds "T-shirt/top"
    and "Shirt" both to ImageNet's jersey), warn and list them in `identical`; skipped for large
    vocabularies (off, or more than 5,000 names: the check is a C x C matrix)."""
    prompts, weights = build_prompts(names, templates, descriptions, beta)
    flat = [p for ps in prompts for p in ps]
    # models that tie a text through its class name (the offline model's WordNet grounding) get it
    kw = dict(names=[n for n, ps in zip(names, prompts) for _ in ps]) if getattr(
        model, "grounds_names", False) else {}
    emb = np.asarray(model.encode_texts(flat, **kw), np.float32)
    has_map = hasattr(model, "class_map")
    view_emb = np.asarray(model.class_map(flat, **kw), np.float32) if has_map else None
    rows, view_rows, start = [], [], 0
    for w in weights:
        w = np.asarray(w, np.float32)[:, None]
        rows.append((w * _normalize(emb[start:start + len(w)])).sum(0))
        if has_map:
            view_rows.append((w * view_emb[start:start + len(w)]).sum(0))
        start += len(w)
    class_weights = _normalize(np.stack(rows))
    identical = identical_classes(class_weights, list(names)) if warn_identical and len(names) <= 5000 else []
    for group in identical:
        warnings.warn(f"classes {group} have identical text embeddings (the model ties them to the "
                      f"same thing); only the first can be predicted from text alone. Give them "
                      f"distinguishing descriptions, or for the offline model try "
                      f"--set model.grounding=none", stacklevel=2)
    return ClassTexts(
        weights=class_weights,
        view_weights=np.stack(view_rows) if has_map else None,
        view=getattr(model, "class_map_view", None) if has_map else None,
        prompts=prompts, prompt_weights=weights, identical=identical)


def descriptions_sha256(descriptions) -> str | None:
    if not descriptions:
        return None
    return hashlib.sha256(json.dumps(descriptions, sort_keys=True).encode()).hexdigest()

