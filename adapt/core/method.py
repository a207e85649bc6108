"""The interface every method of `methods/` presents (optax style: a bundle of pure functions).

`methods/<name>.py` exposes `make(config) -> Method`; `adapt.registry.make_method(config)` calls it.
`Method.job` names the job kind that runs the method, and each kind has its inputs and outputs here:
  classify   (adapt.engine)          MethodInputs -> MethodOutputs
  anomaly    (adapt.anomaly.job)     AnomalyInputs -> AnomalyOutputs
  realistic  (adapt.realistic.job)   RealisticInputs -> RealisticOutputs
The job sets up the pool, the mesh and the model, calls `method.run(inputs)` once, then scores and
writes. A method never imports a job and never reads the config outside `make`.
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

    logits = scale * f(x) @ weights.T [+ bias], with f(x) = normalize(x - center) when `normalize`, else x.
    view: "embedding" (the model's image embedding) or the name of an extra image view.
    """

    weights: np.ndarray  # (C, d)
    view: str = "embedding"
    center: np.ndarray | None = None  # (d,)
    normalize: bool = True
    scale: float = 1.0
    bias: np.ndarray | None = None  # (C,) added to the logits (GDA's class constants); None: none

    def logits(self, features: np.ndarray) -> np.ndarray:
        """features (N, d) -> logits (N, C), in float32 on the host."""
        x = np.asarray(features, np.float32)
        if self.center is not None:
            x = x - self.center
        if self.normalize:
            x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        z = self.scale * x @ np.asarray(self.weights, np.float32).T
        return z if self.bias is None else z + np.asarray(self.bias, np.float32)

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
    prior_probs: np.ndarray | None = None  # (N, C) host: a chained run's start probabilities
    # (`init.from`), aligned with the real rows; None when the run is not chained


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


class PoolTooSmall(ValueError):
    """The pool has too few images for the method (e.g. mutual scoring)."""


class AnomalyInputs(NamedTuple):
    """What an anomaly method sees: the pool and the frozen model; it extracts its own features
    (e.g. patch maps of the layers it wants) with the job's embedding options on the mesh."""

    model: Any
    pool: Any
    mesh: Any
    embed: EmbedOptions = EmbedOptions()
    progress: bool = True
    seed: int = 0


class AnomalyOutputs(NamedTuple):
    """scores (N,) final image scores, raw_scores (N,) before any refinement (MuSc: RsCIN), maps
    (N, H, W) pixel anomaly maps, layer_maps: per-layer patch-grid maps (N, h_l, w_l), info: the
    settings used (recorded in metrics.json); kept (N,) pool item of each scored row, embeddings
    (N, D) unit image embeddings (the job's kNN baseline), skipped [(item, reason)] items that did
    not decode, image_size: the side H = W of the pixel maps."""

    scores: np.ndarray
    raw_scores: np.ndarray
    maps: np.ndarray
    layer_maps: list
    info: dict
    kept: Any = None
    embeddings: Any = None
    skipped: tuple | list = ()
    image_size: int = 0


class RealisticInputs(NamedTuple):
    """What a realistic-setting method sees (class names unknown): pool rows and a vocabulary.

    x: (Np, D) image embeddings, unit rows, sharded along `pool`; mask: (Np,) True on real rows.
    weights: (|V|, D) the vocabulary classifier T_V, replicated; vocab: its
    `adapt.vocab.vocabulary.Vocabulary` (names, definitions). kept: (N,) pool item of each real row.
    The model, pool and embedding options serve methods that tune the model on the pool.
    """

    x: jax.Array
    mask: jax.Array
    weights: jax.Array
    vocab: Any
    mesh: Any
    key: jax.Array
    model: Any
    pool: Any
    kept: np.ndarray
    seed: int = 0
    embed: EmbedOptions = EmbedOptions()
    workdir: Any = None
    progress: bool = True


class RealisticOutputs(NamedTuple):
    """predictions: name -> (N,) vocabulary indices of each real row (the method's own and its
    stages'; the job adds the zero-shot baselines); partition (N,) final cluster of each row and
    kmeans_partition (N,) the first one; words (K,) cluster -> vocabulary index; candidates: per
    cluster its top voted words; k, k_given; info: what the method records in metrics.json
    (under `cvpr`); head, features (N, d), class_names, model_params, model_setup: the deployable
    classifier and the view it reads; tuning: its record in metrics.json (None when not tuned);
    block: rows / words per similarity tile, for the job's baselines over the vocabulary; output:
    the key of `predictions` that the head deploys (predictions.csv's word)."""

    predictions: dict
    partition: np.ndarray
    kmeans_partition: np.ndarray
    words: np.ndarray
    candidates: list
    k: int
    k_given: bool
    info: dict
    head: Head
    features: np.ndarray
    class_names: list
    model_params: dict | None = None
    model_setup: dict | None = None
    tuning: dict | None = None
    block: int = 1024
    output: str = "s3a_cvpr"


CLASSIFY, ANOMALY, REALISTIC = "classify", "anomaly", "realistic"


class Method(NamedTuple):
    """A method: `run(inputs)` of its job kind's inputs -> outputs (see the module docstring).

    job: "classify" | "anomaly" | "realistic". settings: the validated method_args.
    few_labels: for methods with a few-label setting, (N,) pool labels -> (N,) the labels the
    method may see (-1 unknown), or None; the classification job calls it when the pool has labels.
    uses_prior: the method starts from `MethodInputs.prior_probs` when a run is chained (its prior
    or starting labels); methods without one ignore it and the chained run's report says so.
    """

    name: str
    description: str
    run: Callable[[Any], Any]
    job: str = CLASSIFY
    settings: Any = None
    few_labels: Callable[[np.ndarray], np.ndarray | None] | None = None
    uses_prior: bool = False
