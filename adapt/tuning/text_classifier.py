"""A linear classifier trained on text alone (LaFTer's stage 1, spec lafter.md).

Every class text (a filled template or a description sentence) is embedded on its own and
L2-normalised: the text set T (M, D) with labels y (M,). A bias-free linear map W (C, D) is trained
on it with full-batch steps of label-smoothed cross-entropy on W (t_i + eps_i), eps_i ~ N(0, std^2 I)
drawn afresh every step and added after the normalisation (the noisy vector is not renormalised),
AdamW (betas 0.9, 0.999, eps 1e-8, decoupled weight decay on W), constant LR. W starts from
PyTorch's default for `nn.Linear(D, C, bias=False)`: U(-1/sqrt(D), 1/sqrt(D)).

The whole run is one jitted `lax.scan`; step s draws its noise from `fold_in(key, s)`
(`step_noise`), so a restatement can replay the exact draws.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax


class TextSet(NamedTuple):
    """The text training set: texts (M,) in class order, embeddings (M, D) unit rows, labels (M,)."""

    texts: list[str]
    embeddings: np.ndarray
    labels: np.ndarray

    def counts(self, n_classes: int) -> list[int]:
        return np.bincount(self.labels, minlength=n_classes).tolist()


class TextClassifier(NamedTuple):
    """weights (C, D) after the last step; history: the loss every `log_every` steps and at the last (0-based
    "epoch" = step: each step is one full-batch pass), the last row with the clean-text accuracy."""

    weights: np.ndarray
    history: list[dict]


def embed_text_set(model, class_names: Sequence[str], texts_per_class: Sequence[Sequence[str]]) -> TextSet:
    """Embeds every text of every class individually (no pooling), rows L2-normalised.
    A model that ties a text to its class name (the offline default's WordNet grounding) gets the name."""
    texts = [t for ts in texts_per_class for t in ts]
    labels = np.asarray([c for c, ts in enumerate(texts_per_class) for _ in ts], np.int32)
    kw = dict(names=[class_names[c] for c in labels]) if getattr(model, "grounds_names", False) else {}
    emb = np.asarray(model.encode_texts(texts, **kw), np.float32)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return TextSet(texts, emb, labels)


def torch_linear_init(key: jax.Array, n_classes: int, dim: int) -> jax.Array:
    """(C, D) weights drawn as PyTorch initialises nn.Linear(D, C): U(-1/sqrt(D), 1/sqrt(D))."""
    bound = 1.0 / np.sqrt(dim)
    return jax.random.uniform(key, (n_classes, dim), jnp.float32, -bound, bound)


def step_noise(key: jax.Array, step, shape, std: float) -> jax.Array:
    """The Gaussian noise (M, D) added to the text embeddings at `step`."""
    return std * jax.random.normal(jax.random.fold_in(key, step), shape, jnp.float32)


def smoothed_ce(logits: jax.Array, labels: jax.Array, n_classes: int, smoothing: float) -> jax.Array:
    """Mean of (1 - e) NLL + e mean_c(-log p_c): torch's CrossEntropyLoss(label_smoothing=e)."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, n_classes), smoothing)
    return optax.softmax_cross_entropy(logits, targets).mean()


def text_adamw(lr: float, weight_decay: float) -> optax.GradientTransformation:
    """torch.optim.AdamW: betas (0.9, 0.999), eps 1e-8 outside the root, decoupled decay."""
    return optax.adamw(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay)


@functools.partial(jax.jit, static_argnames=("steps", "n_classes", "lr", "weight_decay", "noise_std", "smoothing"))
def _fit(w0, t, y, noise_key, *, steps, n_classes, lr, weight_decay, noise_std, smoothing):
    """`steps` full-batch AdamW steps from w0 (C, D) on t (M, D) + noise: (W, losses (steps,)).
    Module-level and jitted on its static settings, so runs of one shape compile once."""
    opt = text_adamw(lr, weight_decay)

    def step(carry, s):
        w, opt_state = carry
        noisy = t + step_noise(noise_key, s, t.shape, noise_std)
        loss, grad = jax.value_and_grad(lambda w: smoothed_ce(noisy @ w.T, y, n_classes, smoothing))(w)
        upd, opt_state = opt.update(grad, opt_state, w)
        return (optax.apply_updates(w, upd), opt_state), loss

    (w, _), losses = jax.lax.scan(step, (w0, opt.init(w0)), jnp.arange(steps))
    return w, losses


def train_text_classifier(text_set: TextSet, n_classes: int, *, steps: int, lr: float, weight_decay: float,
                          noise_std: float, smoothing: float, key: jax.Array, log_every: int = 50,
                          init: np.ndarray | None = None) -> TextClassifier:
    """Trains W (C, D) on the text set: `steps` full-batch AdamW steps on noisy embeddings.
    `key` is split into the init key (unless `init` is given) and the noise key (see `keys`)."""
    init_key, noise_key = keys(key)
    t, y = jnp.asarray(text_set.embeddings), jnp.asarray(text_set.labels)
    w0 = torch_linear_init(init_key, n_classes, t.shape[1]) if init is None else jnp.asarray(init, jnp.float32)
    w, losses = _fit(w0, t, y, noise_key, steps=int(steps), n_classes=int(n_classes), lr=float(lr),
                     weight_decay=float(weight_decay), noise_std=float(noise_std), smoothing=float(smoothing))
    losses = np.asarray(losses)
    clean = np.asarray(t @ w.T).argmax(1)
    logged = sorted({*range(0, steps, max(1, log_every)), steps - 1}) if steps else []
    history = [{"epoch": int(s), "loss": float(losses[s])} for s in logged]  # one full-batch step = one epoch
    if history:
        history[-1]["text_accuracy"] = float((clean == text_set.labels).mean())
    return TextClassifier(np.asarray(w), history)


def keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(init key, noise key) of a stage-1 run."""
    return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
