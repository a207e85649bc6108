"""PerceptionCLIP: infer an image's contextual attributes with the model, then classify conditioned
on them (`prompts.context`: none | infer | marginal).

Paper: An, Zhu, Panaitescu-Liess, Mummadi, Huang, "PerceptionCLIP: Visual Classification by Inferring
and Conditioning on Contexts", ICLR 2024 (official code: umd-huang-lab/perceptionCLIP on GitHub).

A context z is one value per attribute family of `ATTRIBUTES` (the Cartesian product; the empty value
is the family's plain case), as text: "upside-down, dark, blurry". With the class prompt template t,
the (class y, context z) prompt is t with ", z" before its final period: "a photo of a {y}, z.".
The model's energy E(y, z; x) is the zero-shot score the zero_shot method uses: log(view(x) . m(y, z))
for models with a class map onto an image view (m: the prompt's map), s * x . t(y, z) otherwise.
  p(y | x, z) = softmax_y E(y, z; x)
  p(z | x) = softmax_z( logsumexp_y E(y, z; x) / tau )   ("class": the paper's ClassAttr), or
           = softmax_z( E(object, z; x) / tau )          ("pure": "a photo of an object, z.")
  infer:    p(y | x) = p(y | x, z*), z* = argmax_z p(z | x)
  marginal: p(y | x) = sum_z p(y | x, z) p(z | x)
Deviations from the official code: one built-in attribute set (below) instead of per-dataset sets; the
context is appended after the class prompt of every template (the official code also prefixes some
values, "a {quality} photo"); class descriptions (CuPL) are not conditioned. With the offline model's
WordNet grounding, a (y, z) prompt keeps its map on y's ImageNet support: a class grounded to a single
ImageNet class (Fashion-MNIST: 7 of 10) has the same map for every z, so only the others can change.
"""
from __future__ import annotations

import itertools

import numpy as np

from adapt.core.distributed import to_host
from adapt.features.text import fill

CONTEXT_MODES = ("none", "infer", "marginal")
INFER_FROM = ("class", "pure")
# Built-in contextual attributes (the paper's generic families, values as text; "" = the plain case).
# Written before any run; the set used is config `prompts.context_attributes`.
ATTRIBUTES = {
    "orientation": ("", "upside-down", "rotated"),
    "background": ("", "on a plain background", "in a natural scene"),
    "illumination": ("", "bright", "dark"),
    "quality": ("", "low resolution", "blurry"),
    "style": ("", "in black and white", "drawn as a sketch"),
}
OBJECT = "object"


def contexts(families) -> list[str]:
    """The contexts z of the attribute families, in product order; "" (all plain) first."""
    unknown = [f for f in families if f not in ATTRIBUTES]
    if unknown or not families:
        raise ValueError(f"prompts.context_attributes: unknown or empty {unknown}; choose from {sorted(ATTRIBUTES)}")
    return [", ".join(v for v in values if v) for values in itertools.product(*(ATTRIBUTES[f] for f in families))]


def with_context(template: str, name: str, z: str) -> str:
    """The class prompt of `template` with ", z" before its final period (z "" = the plain prompt)."""
    text = fill(template, name)
    if not z:
        return text
    stem, dot = (text[:-1], ".") if text.endswith(".") else (text, "")
    return f"{stem}, {z}{dot}"


def perception_probs(energy: np.ndarray, mode: str, temperature: float = 1.0,
                     object_energy: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """energy (N, K, Z) = E(y, z; x) -> (p(y | x) (N, K), p(z | x) (N, Z)).

    object_energy (N, Z): E(object, z; x) for the "pure" inference of z; None = "class" (logsumexp over y).
    """
    e = np.asarray(energy, np.float64)
    if object_energy is None:
        m = e.max(1, keepdims=True)
        z_score = (m + np.log(np.exp(e - m).sum(1, keepdims=True)))[:, 0]
    else:
        z_score = np.asarray(object_energy, np.float64)
    p_z = _softmax(z_score / temperature, axis=1)
    p_y_given_z = _softmax(e, axis=1)
    if mode == "marginal":
        p_y = np.einsum("nkz,nz->nk", p_y_given_z, p_z)
    elif mode == "infer":
        p_y = np.take_along_axis(p_y_given_z, p_z.argmax(1)[:, None, None], axis=2)[:, :, 0]
    else:
        raise ValueError(f"prompts.context must be one of {CONTEXT_MODES[1:]} here, not {mode!r}")
    return p_y.astype(np.float32), p_z.astype(np.float32)


def _softmax(a: np.ndarray, axis: int) -> np.ndarray:
    a = np.exp(a - a.max(axis, keepdims=True))
    return a / a.sum(axis, keepdims=True)


def prompt_energy(model, texts_, names, view, x, scale) -> np.ndarray:
    """E (N, P) of P prompts `texts_` about the class names `names` (None: no class name) on the
    images: log(view . map) with a class map (view (N, V)), else scale * x . t (x (N, D))."""
    kw = dict(names=list(names)) if getattr(model, "grounds_names", False) and names is not None else {}
    if view is not None:
        maps = np.asarray(model.class_map(list(texts_), **kw), np.float32)
        return np.log(np.maximum(view @ maps.T, 1e-30))
    emb = np.asarray(model.encode_texts(list(texts_), **kw), np.float32)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return scale * (x @ emb.T)


def context_energy(model, names, templates, zs, view, x, scale) -> np.ndarray:
    """E(y, z; x) (N, K, Z): each (y, z) the uniform template ensemble of its prompt's energy inputs
    (maps or embeddings averaged over templates before the score, as encode_classes ensembles)."""
    k, n_z, n_t = len(names), len(zs), len(templates)
    prompts = [with_context(t, y.replace("_", " "), z) for y in names for z in zs for t in templates]
    owners = [y for y in names for _ in range(n_z * n_t)]
    kw = dict(names=owners) if getattr(model, "grounds_names", False) else {}
    if view is not None:
        maps = np.asarray(model.class_map(prompts, **kw), np.float32).reshape(k * n_z, n_t, -1).mean(1)
        return np.log(np.maximum(view @ maps.T, 1e-30)).reshape(len(view), k, n_z)
    emb = np.asarray(model.encode_texts(prompts, **kw), np.float32)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    emb = emb.reshape(k * n_z, n_t, -1).mean(1)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return (scale * (x @ emb.T)).reshape(len(x), k, n_z)


def context_probs(config, model, texts, names, rows) -> tuple[np.ndarray, dict]:
    """PerceptionCLIP's p(y | x) (N, K) on the pool's real rows, and a record for the metrics.

    Scored in the class map's view when the model has one (as the zero_shot method's default head),
    else by cosine at the model's logit scale."""
    p = config.prompts
    mode, infer_from = p.context, p.get("context_infer", "class")
    if infer_from not in INFER_FROM:
        raise ValueError(f"prompts.context_infer must be one of {INFER_FROM}, not {infer_from!r}")
    zs = contexts(list(p.get("context_attributes", list(ATTRIBUTES))))
    n = len(rows.kept)
    view = to_host(rows.views[texts.view])[:n].astype(np.float32) if texts.view_weights is not None else None
    x = to_host(rows.x)[:n].astype(np.float32)
    scale = float(model.logit_scale)
    energy = context_energy(model, list(names), list(p.templates), zs, view, x, scale)
    obj = None
    if infer_from == "pure":
        obj = np.stack([prompt_energy(model, [with_context(t, OBJECT, z) for z in zs], None, view, x, scale)
                        for t in p.templates]).mean(0)
    temperature = float(p.get("context_temperature", 1.0))
    probs, p_z = perception_probs(energy, mode, temperature, obj)
    counts = np.bincount(p_z.argmax(1), minlength=len(zs))
    top = [(zs[i] or "(plain)", int(counts[i])) for i in np.argsort(-counts)[:5] if counts[i]]
    record = dict(mode=mode, infer_from=infer_from, temperature=temperature, n_contexts=len(zs),
                  head="class_map:" + texts.view if view is not None else "cosine",
                  most_inferred_contexts=top)
    return probs, record
