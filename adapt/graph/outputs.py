"""Pieces every graph method shares around its core: the pool it works on, and what it hands back.

- `pool_features`: the pool embeddings a method works on, optionally centred on the pool mean
  (CL2N: x <- normalize(x - mu)); the same transductive step as `centered_zero_shot_accuracy`.
- `soft_mean_head`: the deployable inductive classifier, W_c = normalize(sum_i y_ic x_i) in the
  space the method worked in (`center` = mu when it centred).
- `rectified_prototypes`: the class embeddings moved into the pool's image space by one soft
  assignment step, m_c = normalize(sum_i softmax_c(s x_i . t_c) x_i) (BD-CSPN's rectification
  without supports; InMaP-style image proxies without the gradient steps). Image-image cosines do
  not suffer the modality gap that image-text cosines do.
  `class_prototypes` picks between them and the class embeddings by name.
- `row_normalize` / `host_rows`: scores -> probabilities on the simplex, real rows on the host.
- `padded_inputs`: a small pool padded with masked rows to a fixed minimum, so that every pool up
  to that size runs one compilation per mesh (the masked rows change no result).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from adapt.core import mesh as mesh_lib
from adapt.core import ops
from adapt.core.distributed import to_host
from adapt.core.method import Head, MethodInputs

MIN_GRAPH_POOL = 2  # a kNN graph needs at least one neighbour per image


def padded_inputs(inputs: MethodInputs, min_rows: int) -> MethodInputs:
    """inputs with x, mask and every view padded at the end by masked zero rows to at least
    `min_rows` rows (a multiple of the device count); unchanged when they already have as many."""
    rows = mesh_lib.padded_size(max(int(inputs.x.shape[0]), int(min_rows)), inputs.mesh)
    if rows == inputs.x.shape[0]:
        return inputs
    sharding = mesh_lib.pool_sharding(inputs.mesh)

    def pad(a):
        a = np.asarray(to_host(a))
        return jax.device_put(np.concatenate([a, np.zeros((rows - a.shape[0], *a.shape[1:]), a.dtype)]), sharding)

    return inputs._replace(x=pad(inputs.x), mask=pad(inputs.mask),
                           views={name: pad(v) for name, v in inputs.views.items()})


def require_graph_pool(n: int, method: str) -> None:
    """Refuses a pool too small for a graph: a clear error naming the minimum pool size."""
    if n < MIN_GRAPH_POOL:
        raise ValueError(f"{method} needs a pool of at least {MIN_GRAPH_POOL} images (each image needs "
                         f"a neighbour in the graph), got {n}")


def centers_with(center: bool, prototype_source: str) -> bool:
    """Whether a graph method centres the pool: `center` for image-space prototypes (rectified,
    pseudo), never against the class text embeddings ("text"): centred images against uncentred
    text embeddings mix two spaces (spec laplacian.md A.1: text mode uses plain L2; ZLaP's
    official text-classifier graph is on raw cosines)."""
    return bool(center) and prototype_source != "text"


def pool_features(x: jax.Array, mask: jax.Array, center: bool) -> tuple[jax.Array, jax.Array | None]:
    """x (Np, D) rows L2-normalised -> (features (Np, D), mean (D,) or None); padding rows stay 0."""
    if not center:
        return x, None
    xc, mu = ops.centered(x, mask)
    return xc, mu


@jax.jit
def _soft_means(x, y, mask):
    """normalize(sum_n w_nc x_n) (C, D), each class summed by `ops.pool_sum` (device-count free)."""
    w = y * mask[:, None].astype(y.dtype)
    sums = jax.lax.map(lambda w_c: ops.pool_sum(w_c[:, None] * x), w.T)
    return ops.l2_normalize(sums)


@jax.jit
def rectified_prototypes(x: jax.Array, mask: jax.Array, class_weights: jax.Array,
                         scale: float) -> jax.Array:
    """x (Np, D) pool features, class_weights (C, D) unit rows -> (C, D) unit image prototypes."""
    return _soft_means(x, jax.nn.softmax(scale * x @ class_weights.T, axis=1), mask)


PROTOTYPE_SOURCES = ("text", "rectified")


def class_prototypes(source: str, x: jax.Array, mask: jax.Array, class_weights: jax.Array,
                     scale: float, prior: np.ndarray | None = None) -> jax.Array:
    """(C, D) class prototypes of a graph method: the class embeddings ("text") or their
    `rectified_prototypes` on the pool x (Np, D) at the model's logit scale ("rectified").
    prior (N, C) host, a chained run's start probabilities (`init.from`): "rectified" takes the
    soft means under them instead of under the text softmax; "text" ignores it."""
    if source == "text":
        return class_weights
    if source == "rectified" and prior is not None:
        prior = np.asarray(prior, np.float32)
        return _soft_means(x, jnp.asarray(np.pad(prior, ((0, x.shape[0] - len(prior)), (0, 0)))), mask)
    if source == "rectified":
        return rectified_prototypes(x, mask, class_weights, scale)
    raise ValueError(f"prototype source must be one of {PROTOTYPE_SOURCES}, not {source!r}")


def soft_mean_head(x: jax.Array, y: jax.Array, mask: jax.Array, mean: jax.Array | None,
                   scale: float) -> Head:
    """Head with weights (C, D) = normalized soft class means of the features x (Np, D) under the
    assignments y (Np, C); `center` is the mean the features were centred on (or None)."""
    weights = to_host(_soft_means(x, y, mask)).astype(np.float32)
    center = None if mean is None else to_host(mean).astype(np.float32)
    return Head(weights=weights, center=center, normalize=True, scale=float(scale))


@jax.jit
def row_normalize(scores: jax.Array) -> jax.Array:
    """Non-negative scores (N, C) -> rows on the simplex; an all-zero row becomes uniform."""
    s = jnp.maximum(scores, 0.0)
    total = s.sum(axis=1, keepdims=True)
    return jnp.where(total > 0, s / jnp.where(total > 0, total, 1.0), 1.0 / s.shape[1])


TIE_TOLERANCE = 1e-5  # scores this close (relative to the row's largest magnitude) are tied


def predict(scores: np.ndarray) -> np.ndarray:
    """scores (N, C) -> (N,) the lowest class index among those within TIE_TOLERANCE x max|row|
    of the row maximum: numpy's argmax tie-breaking, made deterministic where tied classes differ
    only by float32 rounding (which changes with the device count)."""
    scores = np.asarray(scores, np.float64)
    top = scores.max(axis=1, keepdims=True)
    scale = np.abs(scores).max(axis=1, keepdims=True)
    return np.argmax(scores >= top - TIE_TOLERANCE * scale, axis=1)


def host_rows(a: jax.Array, n: int) -> np.ndarray:
    """The first n (real) rows of a sharded (Np, ...) array, as float32 NumPy."""
    return to_host(a).astype(np.float32)[:n]


def summary(trace: np.ndarray) -> dict:
    """A short JSON-able summary of an energy or residual trace."""
    trace = to_host(trace).astype(np.float64)
    if trace.size == 0:
        return {"first": None, "last": None, "min": None, "monotone_non_increasing": None}
    monotone = trace.size == 1 or bool(np.all(np.diff(trace) <= 1e-9 * np.abs(trace[:-1]).max()))
    return {"first": float(trace[0]), "last": float(trace[-1]), "min": float(trace.min()),
            "monotone_non_increasing": monotone}
