"""The class side of every classification job: `build_class_texts(config, model, classes, rows)`.

With every option off it is `adapt.features.text.encode_classes` unchanged. The options (config):
  prompts.template_set  ""  prompts.templates as given | "clip80": the 80 CLIP ImageNet templates
                        (adapt/assets/clip_templates.json)
  prompts.weighting     uniform | zpe: templates weighted by ZPE scores on the pool (adapt.features.zpe)
  prompts.zpe_top       zpe: 0 = softmax weights over every template; n = uniform over the n best
  classes.synonyms      none | frequent | ensemble: REAL-Prompt names (adapt.features.synonyms)

With an option on, per template t, class c and name variant s of c (its synonyms):
  e[t, c] = mean_s normalize(E(fill(t, s)))      E: the model's text embedding (D,) in image space
  v[t, c] = mean_s M(fill(t, s))                 M: the model's class map onto its view, if it has one
  weights[c] = normalize(sum_t w_t e[t, c]);  view_weights[c] = sum_t w_t v[t, c]
w_t = 1/T (uniform) or ZPE's, scored with each template's classifier normalize(e[t]) on the pool.
Models that ground a text through its class name (the offline model) get the variant s as the name:
the prompt's text and its grounding both use the synonym. Class descriptions are not combined with
these options (a ValueError says so).
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from adapt import assets
from adapt.core import distributed
from adapt.features.synonyms import class_name_variants
from adapt.features.text import ClassTexts, encode_classes, fill, identical_classes
from adapt.features.zpe import zpe_scores, zpe_weights

TEMPLATE_SETS = ("", "clip80")
WEIGHTINGS = ("uniform", "zpe")


@dataclasses.dataclass
class BuiltClassTexts(ClassTexts):
    """ClassTexts plus `record`: what the options did (template weights, names used), for metrics."""

    record: dict = dataclasses.field(default_factory=dict)


def clip80_templates() -> list[str]:
    with open(assets.path("clip_templates.json")) as f:
        return list(json.load(f)["templates"])


def templates_of(config) -> list[str]:
    """The templates `prompts.template_set` names ("" = prompts.templates)."""
    which = config.prompts.get("template_set", "")
    if which not in TEMPLATE_SETS:
        raise ValueError(f"prompts.template_set must be one of {TEMPLATE_SETS}, got {which!r}")
    return clip80_templates() if which == "clip80" else list(config.prompts.templates)


def options_on(config) -> bool:
    p, c = config.prompts, config.classes
    return bool(p.get("template_set", "")) or p.get("weighting", "uniform") != "uniform" or \
        c.get("synonyms", "none") != "none"


def build_class_texts(config, model, classes, rows) -> ClassTexts:
    """The class texts of the job: classes (names, descriptions), rows (the embedded pool, used by ZPE)."""
    templates = templates_of(config)
    if not options_on(config):
        return encode_classes(model, classes.names, templates, classes.descriptions, config.prompts.beta)
    if classes.descriptions:
        raise ValueError("prompts.template_set / prompts.weighting / classes.synonyms are not combined "
                         "with class descriptions (classes.descriptions); drop one of them")
    weighting, top = config.prompts.get("weighting", "uniform"), int(config.prompts.get("zpe_top", 0))
    if weighting not in WEIGHTINGS:
        raise ValueError(f"prompts.weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    variants = class_name_variants(list(classes.names), config.classes.get("synonyms", "none"))
    x = None
    if weighting == "zpe":
        x = distributed.to_host(rows.x)[:len(rows.kept)]
    return ensemble_texts(model, list(classes.names), variants, templates, x, top)


def template_embeddings(model, variants, templates):
    """(T, C, D) e and (T, C, V) v (None without a class map) of the module docstring."""
    texts = [fill(t, s.replace("_", " ")) for t in templates for vs in variants for s in vs]
    kw = dict(names=[s for _ in templates for vs in variants for s in vs]) if getattr(
        model, "grounds_names", False) else {}
    emb = np.asarray(model.encode_texts(texts, **kw), np.float32)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
    view = np.asarray(model.class_map(texts, **kw), np.float32) if hasattr(model, "class_map") else None
    # rows are ordered (template, class, variant): average each (template, class) block of variants
    starts = np.cumsum([0] + [len(vs) for vs in variants] * len(templates))[:-1]
    counts = np.array([len(vs) for vs in variants] * len(templates), np.float32)[:, None]

    def pooled(a):
        return (np.add.reduceat(a, starts, axis=0) / counts).reshape(len(templates), len(variants), -1)

    return pooled(emb), None if view is None else pooled(view)


def _normalize(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


def ensemble_texts(model, names, variants, templates, x=None, top: int = 0) -> BuiltClassTexts:
    """The class texts of the module docstring; x (N, D) pool rows turns ZPE weighting on."""
    emb, view = template_embeddings(model, variants, templates)
    record = dict(templates=len(templates), weighting="uniform",
                  names_used={n: list(v) for n, v in zip(names, variants) if list(v) != [n]})
    w = np.full(len(templates), 1.0 / len(templates))
    if x is not None:
        scores = zpe_scores(x, _normalize(emb), float(model.logit_scale))
        w = zpe_weights(scores, top)
        best = np.argsort(-w, kind="stable")[:5]
        record.update(weighting=f"zpe (top {top})" if top else "zpe (softmax)",
                      zpe_best=[[templates[i], round(float(w[i]), 4)] for i in best],
                      zpe_effective_templates=round(float(1.0 / np.sum(w ** 2)), 2))
    weights = _normalize(np.einsum("t,tcd->cd", w, emb))
    view_weights = None if view is None else np.einsum("t,tcv->cv", w, view)
    prompts = [[fill(t, s.replace("_", " ")) for t in templates for s in vs] for vs in variants]
    prompt_weights = [[float(w[t]) / len(vs) for t in range(len(templates)) for _ in vs] for vs in variants]
    identical = identical_classes(weights, names) if len(names) <= 5000 else []
    return BuiltClassTexts(weights=weights, view_weights=view_weights,
                           view=getattr(model, "class_map_view", None) if view is not None else None,
                           prompts=prompts, prompt_weights=prompt_weights, identical=identical,
                           record=record)
