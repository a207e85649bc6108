"""Decision rules applied to a method's outputs: `apply_decision(config, out, context)`.

`decision.rule` picks one of RULES:
  argmax  the method's own predictions, unchanged (default)
  fudd    FuDD (adapt.features.fudd): among each image's top-k classes, decide with descriptions
          that differ between them (`decision.fudd_k`, `decision.fudd_descriptions`)
  loki    Loki's Fréchet-mean prediction (adapt.output.loki): argmin_y sum_c p(c|x) d(y, c)^2 with
          `decision.loki_metric` (auto | wordnet | text); `decision.loki_classes` (a file, one name
          a line, or comma-separated names) adds candidate classes that have no prompt: they are
          counted in the record (how many images Loki would give them), while the run's predictions
          stay over the prompted classes (the pool's labels and the artifact know those only).
The probabilities stay the method's (the posterior Loki reads); only the predictions change, so with
a rule other than argmax the predictions are no longer the argmax of the probabilities, and the
artifact's head (what `adapt predict` runs) still predicts by argmax.
"""
from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np

from adapt.core.method import MethodOutputs
from adapt.features.fudd import fudd_rule
from adapt.features.text import ClassTexts, encode_classes
from adapt.output import loki


class DecisionContext(NamedTuple):
    """What a rule may read: the frozen model, the class names, their texts, the pool rows
    x_host (N, D) (real rows, host), the job's config, and view (N, V): the image view of the class
    map (texts.view), host, or None (no class map)."""

    model: Any
    class_names: list
    texts: ClassTexts
    x_host: Any
    config: Any
    view: Any = None


def extra_classes(spec: str, prompted) -> list[str]:
    """Candidate names beyond the prompted ones from `decision.loki_classes` (file or comma list)."""
    if not spec:
        return []
    if os.path.isfile(spec):
        with open(spec) as f:
            names = [line.strip() for line in f if line.strip()]
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
    known = {n.lower() for n in prompted}
    return [n for n in dict.fromkeys(names) if n.lower() not in known]


def candidate_distances(metric: str, names, extra, context: DecisionContext) -> tuple[np.ndarray, str]:
    """(M, M) distances over names + extra and the metric used ("auto" resolved)."""
    if metric not in loki.METRICS:
        raise ValueError(f"decision.loki_metric must be one of {loki.METRICS}, got {metric!r}")
    everyone = list(names) + list(extra)
    if metric in ("auto", "wordnet"):
        offsets, synsets = loki.wordnet_synsets(everyone)
        if None not in offsets:
            return loki.wordnet_distances(offsets, synsets), "wordnet"
        if metric == "wordnet":
            missing = [n for n, o in zip(everyone, offsets) if o is None]
            raise ValueError(f"decision.loki_metric='wordnet' but WordNet does not know {missing}")
    emb = context.texts.weights
    if extra:
        c = context.config
        emb = np.concatenate([emb, encode_classes(context.model, extra, list(c.prompts.templates),
                                                  warn_identical=False).weights])
    return loki.text_distances(emb), "text"


def loki_rule(config, out: MethodOutputs, context: DecisionContext) -> tuple[MethodOutputs, dict]:
    d = config.decision
    names = list(context.class_names)
    extra = extra_classes(d.get("loki_classes", ""), names)
    dist, used = candidate_distances(d.get("loki_metric", "auto"), names, extra, context)
    k = len(names)
    preds = loki.loki_predict(out.probs, dist[:k, :k])
    record = dict(rule="loki", metric=used, changed=int((preds != out.predictions).sum()))
    if extra:
        full = loki.loki_predict(out.probs, dist[:, :k])
        record["unprompted_candidates"] = extra
        record["unprompted_predicted"] = {n: int((full == k + j).sum()) for j, n in enumerate(extra)}
    return out._replace(predictions=preds.astype(out.predictions.dtype)), record


def argmax_rule(config, out: MethodOutputs, context: DecisionContext) -> tuple[MethodOutputs, dict]:
    return out, dict(rule="argmax")


def _fudd_rule(config, out: MethodOutputs, context: DecisionContext) -> tuple[MethodOutputs, dict]:
    return fudd_rule(out, context)


RULES = {"argmax": argmax_rule, "fudd": _fudd_rule, "loki": loki_rule}


def apply_decision(config, out: MethodOutputs, context: DecisionContext) -> tuple[MethodOutputs, dict]:
    """The outputs after `config.decision.rule` and its record (metrics["decision"])."""
    rule = config.decision.rule if "decision" in config else "argmax"
    if rule not in RULES:
        raise ValueError(f"decision.rule must be one of {sorted(RULES)}, got {rule!r}")
    return RULES[rule](config, out, context)
