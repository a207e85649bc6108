"""NoLA stage 2 (spec nola.md): the confident subset of a zero-shot classifier and the labeller, a
small MLP on a second tower's features trained on that subset.

`confident_subset(probs, k)`: for each class c in order, the <= k images whose argmax is c with the
highest P_ic; a class that is nobody's argmax takes the images whose 2nd (then 3rd) prediction is
c, ranked by P_ic and relabelled c; none at all raises. The per-class lists are concatenated in
class order and repeated images dropped, the first occurrence kept (so an image that a fallback
class took keeps that label). Ties go to the lower index. This differs from
`adapt.tuning.pseudolabels.per_class_topk`, whose fallback only takes images no class has chosen.

The labeller h: D2 -> hidden -> ReLU -> C, PyTorch's default init (U(+-1/sqrt(fan_in)) for weights
and biases), plain CE, Adam, shuffled batches (last one partial), trained with `adapt.tuning.loop.fit`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adapt.tuning import loop as tuning
from adapt.tuning.pseudolabels import Selection, per_class_topk


def confident_k(n: int, c: int) -> int:
    """k = max(16, floor(0.2 N / C)), no upper cap."""
    return max(16, (2 * n) // (10 * c))


def confident_subset(probs: np.ndarray, k: int) -> Selection:
    """probs (N, C) -> Selection(indices (M,), labels (M,), counts (C,) after dedupe, fallback
    {class: rank used}); see the module docstring."""
    return per_class_topk(probs, k)


def init_mlp(seed: int, d_in: int, n_classes: int, hidden: int = 256) -> dict:
    """{"w1": (D2, H), "b1": (H,), "w2": (H, C), "b2": (C,)}, PyTorch Linear's default init, seeded."""
    rng = np.random.default_rng(seed)
    u = lambda fan_in, shape: rng.uniform(-fan_in ** -0.5, fan_in ** -0.5, shape).astype(np.float32)  # noqa: E731
    return {"w1": u(d_in, (d_in, hidden)), "b1": u(d_in, (hidden,)),
            "w2": u(hidden, (hidden, n_classes)), "b2": u(hidden, (n_classes,))}


def mlp_logits(params: dict, x: jax.Array) -> jax.Array:
    """(B, D2) -> (B, C)."""
    return jax.nn.relu(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def train_labeller(features: np.ndarray, labels: np.ndarray, n_classes: int, *, key, mesh, seed: int = 0,
                   epochs: int = 50, lr: float = 1e-3, batch_size: int = 32, hidden: int = 256,
                   progress: bool = True) -> tuning.FitResult:
    """Fits h on (features (M, D2), labels (M,)); returns the parameters and per-epoch history
    (loss, train_accuracy)."""
    def loss_fn(p, b, _key):
        logits = mlp_logits(p, b["x"])
        m = b["mask"].astype(jnp.float32)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, b["y"])
        acc = (logits.argmax(-1) == b["y"]) * m
        return jnp.sum(ce * m) / jnp.maximum(m.sum(), 1.0), {"train_accuracy": acc.sum() / jnp.maximum(m.sum(), 1.0)}

    params = init_mlp(seed, features.shape[1], n_classes, hidden)
    data = {"x": np.asarray(features, np.float32), "y": np.asarray(labels, np.int32)}
    return tuning.fit(loss_fn, params, data, optimizer=optax.adam(lr), epochs=epochs, batch_size=batch_size,
                      key=key, mesh=mesh, progress=progress, desc="NoLA labeller")


def label_pool(params: dict, features: np.ndarray, batch: int = 4096) -> np.ndarray:
    """(N, D2) -> (N, C) softmax probabilities of the labeller over the whole pool."""
    fn = jax.jit(lambda p, x: jax.nn.softmax(mlp_logits(p, x), -1))
    return np.concatenate([np.asarray(fn(params, jnp.asarray(features[s:s + batch], jnp.float32)))
                           for s in range(0, len(features), batch)])
