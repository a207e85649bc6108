"""Decision rules after the method (`decision.rule`): argmax of the method's probabilities, or a
rule that re-decides from them (fudd: adapt.features.fudd).

apply_decision(config, out, context) -> (MethodOutputs, record): the record goes into
metrics["decision"]; the job keeps the method's own argmax accuracy as `accuracy_before_decision`.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from adapt.core.method import MethodOutputs
from adapt.features.fudd import fudd_rule


class DecisionContext(NamedTuple):
    """What a rule may read besides the method's outputs.

    x_host: (N, D) pool embeddings of the real rows, host; texts: the run's ClassTexts;
    view: (N, V) the image view of the class map (texts.view), host, or None (no class map)."""

    model: Any
    class_names: list
    texts: Any
    x_host: np.ndarray
    config: Any
    view: np.ndarray | None = None


def _argmax(out: MethodOutputs, context: DecisionContext) -> tuple[MethodOutputs, dict]:
    return out, {"rule": "argmax"}


RULES = {"argmax": _argmax, "fudd": fudd_rule}


def apply_decision(config, out: MethodOutputs, context: DecisionContext) -> tuple[MethodOutputs, dict]:
    """The config's decision rule applied to the method's outputs."""
    rule = config.get("decision", {}).get("rule", "argmax") if hasattr(config, "get") else "argmax"
    if rule not in RULES:
        raise ValueError(f"decision.rule must be one of {sorted(RULES)}, not {rule!r}")
    return RULES[rule](out, context)
