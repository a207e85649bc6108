"""The interface every method of `methods/` presents (optax style: a bundle of pure functions).

`methods/<name>.py` exposes `make(config) -> Method`. The engine embeds the pool and the classes,
then calls `method.run(inputs)` once.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

TRANSDUCTIVE = "transductive"
INDUCTIVE = "inductive"


@dataclasses.dataclass
class Head:
    """A deployable linear classifier on one image view.

    logits = scale * f(x) @ weights.T, with f(x) = normalize(x - center) when `normalize`, else x.
    view: "embedding" (the model's image embedding) or the name of an extra image view.
    """

    weights: np.ndarray  # (C, d)
    view: str = "embedding"
    center: np.ndarray | None = None  # (d,)
    normalize: bool = True
    scale: float = 1.0

    def logits(self, features: np.ndarray) -> np.ndarray:
        """features (N, d) -> logits (N, C), in float32 on the host."""
        x = np.asarray(features, np.float32)
        if self.center is not None:
            x = x - self.center
        if self.normalize:
            x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        return self.scale * x @ np.asarray(self.weights, np.float32).T

    def probs(self, features: np.ndarray) -> np.ndarray:
        """(N, d) -> (N, C) class probabilities: softmax of cosine logits, or the normalised
        scores of a non-negative map (normalize=False, e.g. the ImageNet-probability class map)."""
        z = self.logits(features)
        if not self.normalize:
            return z / np.maximum(z.sum(-1, keepdims=True), 1e-30)
        z = np.exp(z - z.max(-1, keepdims=True))
        return z / z.sum(-1, keepdims=True)


class EmbedOptions(NamedTuple):
    """How the job embeds images; methods that embed again (tuning, a second tower) reuse it."""

    cache_root: str | None = None
    batch_size: int = 64
    chunk_size: int = 1024
    workers: int = 4


class MethodInputs(NamedTuple):
    """What a method sees. Pool rows are padded to the mesh and sharded along `pool`.

    x: (Np, D) image embeddings, rows L2-normalised (zero rows where mask is False).
    mask: (Np,) True on real rows.
    class_weights: (C, D) class text embeddings (zero_shot.md), replicated.
    logit_scale: s.
    views: every image view (Np, d) by name, "embedding" (= x) included.
    class_texts: the `adapt.features.text.ClassTexts` of the run (prompts, class map onto a view).
    mesh: the device mesh.
    key: a PRNG key.
    The remaining fields serve tuning methods (model, pixels, checkpoints) and few-label settings.
    """

    x: jax.Array
    mask: jax.Array
    class_weights: jax.Array
    logit_scale: float
    views: dict[str, jax.Array]
    class_texts: Any
    mesh: Any
    key: jax.Array
    class_names: list | None = None  # the class names, in class-id order
    model: Any = None    # the frozen model (tuning methods)
    pool: Any = None     # the pool, for methods that read pixels; rows = pool items `kept`
    kept: Any = None     # (N,) pool item index of each real row
    workdir: Any = None  # the job's folder (checkpoints)
    progress: bool = True
    labels: Any = None   # (N,) known labels (-1 unknown); only few-label settings may read them
    seed: int = 0        # the run's seed (config.seed), for methods that initialise parameters
    embed: "EmbedOptions" = None  # how the job embeds images, for methods that embed again


class MethodOutputs(NamedTuple):
    """probs (N, C) for the real pool rows (each row on the simplex), predictions (N,), the
    deployable head, the setting the predictions belong to, and method-specific metrics."""

    probs: np.ndarray
    predictions: np.ndarray
    head: Head
    setting: str
    metrics: dict
    model_params: dict | None = None  # tuned model parameters by path, saved in the artifact
    model_setup: dict | None = None   # how to prepare the model before loading them (e.g. prompts)
    plots: dict | None = None         # file name -> function(path) writing an extra plot
    head_features: Any = None  # (N, d) the head's view under tuned parameters (default: views[head.view])
    rounds: list | None = None  # tuning rounds: dicts with pseudo_indices, pseudo_labels, predictions
                                # (N,), history (per-epoch rows); the engine scores them when labels exist


class Method(NamedTuple):
    name: str
    description: str
    run: Callable[[MethodInputs], MethodOutputs]
