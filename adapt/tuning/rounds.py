"""The round machinery the tuning methods share (pseudolabel's rounds, NoLA's stages).

A tuning method trains a prompted model (`adapt.tuning.prompted`) in rounds: it selects pseudo-labels,
fits the parameters on them (`fit_round`: `adapt.tuning.loop.fit` with one checkpoint folder per round,
so a rerun resumes), predicts the pool and keeps a `round_record` for the engine, which scores the
rounds when labels exist (`adapt.tuning.report`). At the end, `export_tuned` turns the final parameters
into the deployable head and the tuned model parameters, and `tuned_outputs` into `MethodOutputs`.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adapt.core.method import TRANSDUCTIVE, Head, MethodInputs, MethodOutputs
from adapt.tuning import loop as tuning


def run_fingerprint(config) -> str:
    """12 hex digits of the config's JSON: runs of one config share checkpoints, other configs do not."""
    return hashlib.sha256(config.to_json().encode()).hexdigest()[:12]


def checkpoint_root(workdir, fingerprint: str) -> Path | None:
    """workdir/checkpoints/<fingerprint>, or None without a workdir (no checkpoints)."""
    return Path(workdir) / "checkpoints" / fingerprint if workdir else None


def masked_cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array, *, weights=None,
                         targets=None) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy and accuracy over the real rows of one batch.

    logits (B, C), labels (B,) int, mask (B,) (False on padding rows), weights (B,) per-row weights
    of the loss (default 1), targets (B, C) soft targets in place of the labels (e.g. smoothed).
    Returns (sum of weighted CE over real rows / their count, share of real rows whose argmax is the label).
    """
    if targets is None:
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    else:
        ce = optax.softmax_cross_entropy(logits, targets)
    m = mask.astype(ce.dtype)
    loss = jnp.sum(ce * m if weights is None else ce * weights * m) / jnp.maximum(m.sum(), 1.0)
    accuracy = jnp.sum((logits.argmax(-1) == labels) * m) / jnp.maximum(m.sum(), 1.0)
    return loss, accuracy


def smoothed_ce_loss(prompted, scale: float, n_classes: int, smoothing: float, augment: str, labels_fn=None):
    """loss(params {"visual", "head"}, batch, key): CE with label smoothing `smoothing` of
    scale * f(view) @ head^T against batch["y"] over the real rows (NoLA's stage 3: scale the model's;
    LaFTer's student: 1, logits W g). `labels_fn(batch)` replaces the cached labels batch["y"] (NoLA's
    benchmark of recomputing them every step). Aux: the batch's agreement with y."""
    def loss_fn(p, b, key):
        logits = scale * prompted.features(p["visual"], b, key, augment) @ p["head"].T
        y = b["y"] if labels_fn is None else labels_fn(b)
        targets = optax.smooth_labels(jax.nn.one_hot(y, n_classes), smoothing)
        loss, agreement = masked_cross_entropy(logits, y, b["mask"], targets=targets)
        return loss, {"agreement": agreement}
    return loss_fn


def adamw_no_bias_decay(lr: float, weight_decay: float) -> optax.GradientTransformation:
    """AdamW (betas 0.9, 0.999), constant LR, no decay on parameters whose path names "bias"
    (the optimizer of NoLA's stage 3 and LaFTer's student)."""
    def decay(params):
        return jax.tree_util.tree_map_with_path(lambda path, _: "bias" not in jax.tree_util.keystr(path), params)
    return optax.adamw(lr, b1=0.9, b2=0.999, weight_decay=weight_decay, mask=decay)


def fit_round(loss_fn, params, data: dict[str, np.ndarray], inputs: MethodInputs, *, name: str,
              checkpoints: Path | None, optimizer: optax.GradientTransformation, epochs: int,
              batch_size: int, key: jax.Array, desc: str, passes: int = 1) -> tuning.FitResult:
    """Fits one round on the pool's mesh; its checkpoints go to checkpoints/name (none without a root).
    `passes` over the rows per epoch: `adapt.tuning.loop.plan_epochs`."""
    return tuning.fit(loss_fn, params, data, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
                      key=key, mesh=inputs.mesh, progress=inputs.progress, desc=desc, passes=passes,
                      checkpoint_dir=checkpoints / name if checkpoints else None)


def round_record(number: int, k: int, indices: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                 history: list[dict], *, stage: str | None = None, resumed_epochs: int | None = None,
                 **selection) -> dict:
    """One round as the engine reads it: the pseudo-labels it trained on (indices (M,), labels (M,)),
    the pool predictions (N,) after it, the training history; `selection` adds the method's own
    facts about the selection (counts, fallback, ...), kept in this order."""
    record: dict[str, Any] = {"round": number}
    if stage is not None:
        record["stage"] = stage
    record.update(k=k, pseudo_indices=indices, pseudo_labels=labels, **selection, predictions=predictions,
                  history=history)
    if resumed_epochs is not None:
        record["resumed_epochs"] = resumed_epochs
    return record


class TunedModel(NamedTuple):
    """A prompted model's final state: its head, the tuned model parameters by path (None when the
    image tower is untouched), how to prepare the model for them, and the tuned image features
    (N, d) of the pool (None when the image tower is untouched)."""

    head: Head
    model_params: dict | None
    model_setup: dict | None
    features: np.ndarray | None

    def parameters_note(self) -> str:
        return f"tuned model parameters: {sorted(self.model_params) if self.model_params else 'none'}"


def export_tuned(prompted, params, head_weights=None) -> TunedModel:
    """Writes `params` into the model (`prompted.export`); `head_weights` (C, D) replaces the head's
    class weights (a head trained beside the prompts); the pool is embedded again when the image
    tower was tuned."""
    head, model_params, setup = prompted.export(params)
    if head_weights is not None:
        head = dataclasses.replace(head, weights=np.asarray(head_weights, np.float32))
    features = prompted.embed_all(params) if model_params else None
    return TunedModel(head, model_params, setup, features)


def tuned_outputs(probs: np.ndarray, tuned: TunedModel, metrics: dict, rounds: list[dict]) -> MethodOutputs:
    """The transductive outputs of a tuning method: probs (N, C) and their argmax, the tuned head and
    parameters, the rounds."""
    return MethodOutputs(probs, probs.argmax(1), tuned.head, TRANSDUCTIVE, metrics,
                         model_params=tuned.model_params, model_setup=tuned.model_setup,
                         head_features=tuned.features, rounds=rounds)
