"""Zero-shot baseline: prompt-template ensembles and class descriptions (spec zero_shot.md).

Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
ICML 2021 (official code: openai/CLIP on GitHub); class descriptions as in CuPL (Pratt et al., ICCV 2023).

The classifier is the class text embeddings T (C, D): logits = s * X T^T. Models that carry their
own class map onto an image view (the offline default maps a text onto ImageNet classes) are scored
in that view by default (`method_args.head = "auto"`); `head = "cosine"` forces s * X T^T.
With `prompts.context` set (PerceptionCLIP, adapt/features/perception.py) the pool's rows are the job's
context-conditioned probabilities (`MethodInputs.prior_probs`); the deployable head stays the plain one.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from adapt.core.distributed import to_host
from adapt.core.method import INDUCTIVE, Head, Method, MethodInputs, MethodOutputs
from adapt.core.settings import check_choice, parse_method_args

DESCRIPTION = "zero-shot classifier from prompt-template ensembles and class descriptions"
HEADS = ("auto", "cosine", "class_map")


@dataclasses.dataclass(frozen=True)
class Settings:
    """method_args of zero_shot; values and their meaning: configs/zero_shot.py."""

    head: str

    def __post_init__(self):
        check_choice("head", self.head, HEADS)


def make(config) -> Method:
    s = parse_method_args(Settings, config.method_args, "zero_shot")
    head_kind = s.head
    use_context = config.prompts.get("context", "none") != "none"  # a chained prior is not ours to return

    def run(inputs: MethodInputs) -> MethodOutputs:
        texts = inputs.class_texts
        n = int(to_host(inputs.mask).sum())
        use_map = texts.view_weights is not None and head_kind in ("auto", "class_map")
        if head_kind == "class_map" and texts.view_weights is None:
            raise ValueError("method_args.head='class_map' but this model has no class map")
        if use_map:
            head = Head(weights=texts.view_weights, view=texts.view, normalize=False, scale=1.0)
        else:
            head = Head(weights=np.asarray(inputs.class_weights), scale=inputs.logit_scale)
        # The same host-side head the artifact deploys, so `adapt predict` reproduces these rows.
        probs = head.probs(to_host(inputs.views[head.view])[:n])
        metrics = {"head": "class_map:" + texts.view if use_map else "cosine"}
        if use_context and inputs.prior_probs is not None:
            probs = np.asarray(inputs.prior_probs, np.float32)
            metrics["pool_probs"] = "prompts.context (PerceptionCLIP); the head is the plain zero-shot one"
        return MethodOutputs(probs, probs.argmax(1), head, INDUCTIVE, metrics)

    return Method("zero_shot", DESCRIPTION, run, settings=s)
