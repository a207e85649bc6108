"""FuDD: decide among each image's ambiguous classes with descriptions that tell those classes apart
(`decision.rule = "fudd"`, after any method).

Paper: Esfandiarpoor, Bach, "Follow-Up Differential Descriptions: Language Models Resolve Ambiguities
for Image Classification", ICLR 2024 (official code: BatsResearch/fudd on GitHub).

For image i, A_i = the top-k classes of the method's probabilities (`decision.fudd_k`). Every
unordered pair {a, b} inside some A_i (the pair set) has differential descriptions: sentences of a
that do not hold for b, and of b that do not hold for a. Class a's representation for image i is the
mean of the embeddings of all its descriptions against the other classes of A_i (the prompt
DESCRIPTION_TEMPLATE filled with the class and the description), renormalised; a class with none
keeps its class embedding. The decision is the argmax over A_i of s * x . rep (models with a class map
onto an image view, as the zero_shot head: of view(x) . rep with rep the mean description map); the output
probabilities keep the method's total mass on A_i and share it by softmax over A_i of those logits
(classes outside A_i keep the method's probability), so the argmax of the new rows is the decision.

Descriptions (`decision.fudd_descriptions`):
  "wordnet" (offline): for the pair (a, b), a's WordNet definition clauses that b's definition lacks,
    and "a kind of h" for each h on a's first-hypernym path (nearest first, at most MAX_HYPERNYMS)
    that is not on b's path nor b's own synset: differences only.
  a pair file (JSON, made once by an LLM, then offline; `python -m adapt.realistic.fudd_pairs`):
    {"format": "adapt-fudd-pairs/1", "generator": {...},
     "pairs": [{"classes": [a, b], "descriptions": {a: [...], b: [...]}}, ...]}
Deviations from the official code: the official prompts ask an LLM for each pair of the top-k
(GPT-3.5) and use the descriptions alone as prompts; here each description is prefixed with its class
prompt (DESCRIPTION_TEMPLATE); models with a class map are scored in its view (as zero_shot does).
With the offline model's WordNet grounding (`decision.fudd_grounded`, default True), a description
keeps its map on its class's ImageNet support, so classes grounded to one ImageNet class get the same
representation whatever the description (Fashion-MNIST: T-shirt/top and Shirt both = jersey).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from adapt.core.method import MethodOutputs
from adapt.data.classes import normalise
from adapt.vocab import wordnet
from adapt.vocab.wordnet_descriptions import choose_synset, read_noun_index

FORMAT = "adapt-fudd-pairs/1"
DESCRIPTION_TEMPLATE = "a photo of a {cls}, {description}."
MAX_HYPERNYMS = 3
WORDNET = "wordnet"


def ambiguous_sets(probs: np.ndarray, k: int) -> np.ndarray:
    """(N, K) probabilities -> (N, min(k, K)) class ids of each row's top-k, most probable first."""
    k = min(int(k), probs.shape[1])
    return np.argsort(-np.asarray(probs), axis=1, kind="stable")[:, :k]


def pair_set(sets: np.ndarray) -> list[tuple[int, int]]:
    """The unordered class pairs (a < b) that share some row of `sets` (N, k), sorted."""
    s = np.sort(sets, axis=1)
    pairs = {(int(r[i]), int(r[j])) for r in np.unique(s, axis=0)
             for i in range(len(r)) for j in range(i + 1, len(r))}
    return sorted(pairs)


@functools.lru_cache(maxsize=1)
def _wordnet():
    return read_noun_index(), wordnet.read_noun_synsets()


def _path(offset, synsets) -> list[str]:
    """The first-hypernym path above `offset`, nearest first (offsets)."""
    out = []
    while synsets[offset].hypernyms and len(out) < 32:
        offset = synsets[offset].hypernyms[0]
        out.append(offset)
    return out


def wordnet_differences(a: str, b: str, index=None, synsets=None) -> list[str]:
    """Descriptions of class name a that do not hold for b (module docstring); [] when WordNet lacks a."""
    if synsets is None:
        index, synsets = _wordnet()
    sa, sb = choose_synset(a, index, synsets)[1], choose_synset(b, index, synsets)[1]
    if sa is None:
        return []
    own_b = set(wordnet.gloss_phrases(synsets[sb].definition)) if sb else set()
    out = [c for c in wordnet.gloss_phrases(synsets[sa].definition) if c not in own_b]
    other = set(_path(sb, synsets)) | {sb} if sb else set()
    kinds = [o for o in _path(sa, synsets) if o not in other][:MAX_HYPERNYMS]
    return out + [f"a kind of {synsets[o].lemmas[0].replace('_', ' ')}" for o in kinds]


def read_pair_file(path) -> tuple[dict[tuple[str, str], dict[str, list[str]]], str]:
    """A pair file -> ({(norm a, norm b): {norm name: descriptions}} in both orders, its path)."""
    obj = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or not isinstance(obj.get("pairs"), list):
        raise ValueError(f"{path}: expected a JSON object with \"format\": \"{FORMAT}\" and a \"pairs\" list")
    out = {}
    for entry in obj["pairs"]:
        a, b = (normalise(c) for c in entry["classes"])
        got = {normalise(k): [str(s).strip() for s in v if str(s).strip()] for k, v in entry["descriptions"].items()}
        for key in ((a, b), (b, a)):
            slot = out.setdefault(key, {a: [], b: []})
            for name in (a, b):
                slot[name] = slot[name] + got.get(name, [])
    return out, str(path)


def pair_descriptions(names, pairs, source: str) -> dict[tuple[int, int], tuple[list[str], list[str]]]:
    """{(a, b): (a's descriptions against b, b's against a)} for class-id pairs."""
    if source == WORDNET:
        return {(a, b): (wordnet_differences(names[a], names[b]), wordnet_differences(names[b], names[a]))
                for a, b in pairs}
    book, _ = read_pair_file(source)
    out = {}
    for a, b in pairs:
        na, nb = normalise(names[a]), normalise(names[b])
        got = book.get((na, nb), {})
        out[(a, b)] = (got.get(na, []), got.get(nb, []))
    return out


def description_sums(model, names, described, grounded: bool = True, use_map: bool = False):
    """({(a, b): sum of a's description vectors against b} (both orders), {(a, b): count}). Vectors:
    unit embeddings (D,), or with `use_map` the model's class maps (V,) of the descriptions."""
    texts, owners, keys = [], [], []
    for (a, b), (da, db) in described.items():
        for cls, other, ds in ((a, b, da), (b, a, db)):
            for d in ds:
                texts.append(DESCRIPTION_TEMPLATE.format(cls=names[cls].replace("_", " "), description=d))
                owners.append(names[cls])
                keys.append((cls, other))
    if not texts:
        return {}, {}
    kw = dict(names=owners) if grounded and getattr(model, "grounds_names", False) else {}
    if use_map:
        vecs = np.asarray(model.class_map(texts, **kw), np.float32)
    else:
        vecs = np.asarray(model.encode_texts(texts, **kw), np.float32)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    sums, counts = {}, {}
    for key, e in zip(keys, vecs):
        sums[key] = sums.get(key, 0) + e
        counts[key] = counts.get(key, 0) + 1
    return sums, counts


def _scores(feats, members, sums, counts, fallback, scale, use_map):
    """(n, k) distribution over `members` for the rows `feats`: softmax of s * x . rep (cosine), or
    the normalised view . rep (class map; rep = the mean description map)."""
    reps = []
    for a in members:
        keys = [(a, b) for b in members if b != a and (a, b) in sums]
        total = sum((sums[key] for key in keys), np.zeros(feats.shape[1]))
        if use_map:
            n = sum(counts[key] for key in keys)
            reps.append(total / n if n else fallback[a])
        else:
            norm = np.linalg.norm(total)
            reps.append(total / norm if norm > 1e-12 else fallback[a])
    z = feats @ np.stack(reps).T
    if use_map:
        return z / np.maximum(z.sum(1, keepdims=True), 1e-30)
    z = np.exp(scale * (z - z.max(1, keepdims=True)))
    return z / z.sum(1, keepdims=True)


def fudd_decide(feats: np.ndarray, probs: np.ndarray, sets: np.ndarray, sums: dict, fallback: np.ndarray,
                scale: float, counts: dict | None = None, use_map: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """feats (N, D) embeddings (or (N, V) the class map's view with `use_map`), probs (N, K), sets (N, k)
    -> (new probs (N, K), predictions (N,)) (module docstring). fallback (K, D | V): class rows."""
    out = np.array(probs, np.float32, copy=True)
    pred = np.empty(len(feats), np.int64)
    key_sets, inverse = np.unique(np.sort(sets, axis=1), axis=0, return_inverse=True)
    for g, members in enumerate(key_sets):
        rows = np.flatnonzero(inverse.ravel() == g)
        dist = _scores(feats[rows], members, sums, counts or {}, fallback, scale, use_map)
        mass = probs[rows][:, members].sum(1, keepdims=True)
        out[np.ix_(rows, members)] = mass * dist
        pred[rows] = members[dist.argmax(1)]
    return out, pred


def fudd_rule(out: MethodOutputs, context) -> tuple[MethodOutputs, dict]:
    """The "fudd" decision rule of adapt.output.decision: out's probabilities -> FuDD's decision."""
    d = context.config.decision
    k, source = int(d.get("fudd_k", 3)), str(d.get("fudd_descriptions", WORDNET))
    names = list(context.class_names)
    probs = np.asarray(out.probs, np.float32)
    sets = ambiguous_sets(probs, k)
    pairs = pair_set(sets)
    described = pair_descriptions(names, pairs, source)
    view = getattr(context, "view", None)
    use_map = view is not None and getattr(context.texts, "view_weights", None) is not None
    sums, counts = description_sums(context.model, names, described, bool(d.get("fudd_grounded", True)), use_map)
    feats = np.asarray(view if use_map else context.x_host, np.float32)
    fallback = np.asarray(context.texts.view_weights if use_map else context.texts.weights, np.float32)
    new_probs, pred = fudd_decide(feats, probs, sets, sums, fallback, float(context.model.logit_scale),
                                  counts, use_map)
    record = dict(rule="fudd", k=int(sets.shape[1]), descriptions=source, n_pairs=len(pairs),
                  head="class_map" if use_map else "cosine",
                  n_descriptions=int(sum(counts.values())),
                  classes_without_descriptions=sorted({names[a] for (a, b) in described for a in (a, b)}
                                                      - {names[c] for (c, _) in counts}),
                  changed=float((pred != np.asarray(out.predictions)).mean()))
    return out._replace(probs=new_probs, predictions=pred), record
