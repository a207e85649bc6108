"""Teacher-student self-learning over a vocabulary (S3A's second part, spec s3a.md), on the shared
tuning loop.

The student is the model's tunable visual side (`adapt.tuning.prompted`, prompt "visual"); the teacher is
an EMA of it whose decay ramps linearly from 0.999 to 0.9998 over the first 2000 steps. Per batch,
with p_T = softmax(s * teacher(x_weak) @ T_V^T) (s = `scale`: 100, the official code's constant
`logits = 100 * x @ classifier`, whatever the model's own logit scale; the port used the model's
scale, 35 for the offline default model, which flattens p_T over 20,000 words so that max p_T
almost never passed tau and the confident-teacher share was ~0, issue 28), y = argmax p_T and m = [max p_T > tau]:
    L = w_ins * sum(m * CE(student(x_strong), y)) / max(sum(m), 1) + w_str * mean CE(student(x_strong), s(x)).
From epoch `warmup_epochs` on, before each epoch, the structural labels s(x) are recomputed from the
teacher's pool features by `restructure(features) -> s` (Vote-Realign from the offline partition).
Each epoch's history row records the confident share and `structural_fit`, the share of rows whose
student argmax is s(x) (label-free: how far the student reproduces its structural labels).
Parameters and teacher live in one pytree {"student", "teacher"}; `ema_teacher` wraps the student's
optimizer so that each step also moves the teacher, and `adapt.tuning.loop.fit` checkpoints both.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adapt.tuning import loop as tuning


def ema_decay(step, start=0.999, end=0.9998, ramp=2000):
    return start + (end - start) * jnp.minimum(step / ramp, 1.0)


def ema_teacher(inner: optax.GradientTransformation, decay=ema_decay) -> optax.GradientTransformation:
    """Optimizer over {"student", "teacher"}: `inner` updates the student; the teacher moves to
    d * teacher + (1 - d) * new student, d = decay(step)."""
    def init(params):
        return (inner.init(params["student"]), jnp.zeros((), jnp.int32))

    def update(grads, state, params):
        inner_state, step = state
        u, inner_state = inner.update(grads["student"], inner_state, params["student"])
        d = decay(step)
        new_student = optax.apply_updates(params["student"], u)
        ut = jax.tree.map(lambda t, s: (1.0 - d) * (s - t), params["teacher"], new_student)
        return {"student": u, "teacher": ut}, (inner_state, step + 1)

    return optax.GradientTransformation(init, update)


def self_learn(prompted, vocab_weights: jax.Array, structural: np.ndarray,
               restructure: Callable[[np.ndarray], np.ndarray], *, epochs: int, batch_size: int = 128,
               lr: float = 1e-3, weight_decay: float = 0.05, tau: float = 0.5, w_ins: float = 1.0,
               w_str: float = 0.25, warmup_epochs: int = 2, augment: str = "weak", key, mesh,
               checkpoint_dir: str | Path | None = None, progress: bool = True, seed: int = 0,
               min_steps_per_epoch: int = 0, scale: float | None = None):
    """Runs the self-learning epochs. vocab_weights (|V|, D); structural (n,) vocabulary indices;
    `min_steps_per_epoch`: a floor on optimizer steps an epoch (`adapt.tuning.loop.plan_epochs`: more
    passes over the pool per epoch, the restructuring still once per epoch).
    `scale`: the logit scale of teacher and student over the vocabulary (None: the model's own).
    Returns (student params, teacher params, history rows, structural labels of the last epoch)."""
    n = len(structural)
    plan = tuning.plan_epochs(n, batch_size, epochs, 0, min_steps_per_epoch)
    sched = optax.cosine_decay_schedule(lr, plan.steps, alpha=1e-3)
    opt = ema_teacher(optax.adamw(sched, weight_decay=weight_decay))
    weights = jnp.asarray(vocab_weights)
    scale = float(scale) if scale else prompted.scale

    def loss_fn(params, b, key):
        kw, ks = jax.random.split(key)
        t = jax.lax.stop_gradient(prompted.features(params["teacher"], b, kw, "none"))
        p_t = jax.nn.softmax(scale * t @ weights.T, axis=-1)
        y, conf = p_t.argmax(-1), p_t.max(-1)
        logits = scale * prompted.features(params["student"], b, ks, augment) @ weights.T
        mask = b["mask"].astype(logits.dtype)
        m = (conf > tau).astype(logits.dtype) * mask
        ins = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        st = optax.softmax_cross_entropy_with_integer_labels(logits, b["s"])
        loss = w_ins * jnp.sum(ins * m) / jnp.maximum(m.sum(), 1.0) + w_str * jnp.sum(st * mask) / mask.sum()
        fits = ((logits.argmax(-1) == b["s"]) * mask).sum() / mask.sum()  # the student reproduces s(x)
        return loss, {"confident_fraction": m.sum() / mask.sum(), "structural_fit": fits}

    student = prompted.init(seed)
    params = {"student": student, "teacher": jax.tree.map(jnp.copy, student)}
    history, s, opt_state = [], np.asarray(structural), None
    for epoch in range(epochs):
        if epoch >= max(warmup_epochs, 1):
            s = np.asarray(restructure(prompted.embed_all(params["teacher"])))
        data = dict(prompted.data, s=s.astype(np.int32))
        res = tuning.fit(loss_fn, params, data, optimizer=opt, epochs=epoch + 1, batch_size=batch_size,
                         key=key, mesh=mesh, checkpoint_dir=checkpoint_dir, progress=False, passes=plan.passes,
                         desc="self-learning", opt_state=opt_state, history=history)
        params, history, opt_state = res.params, res.history, res.opt_state
        history[-1].update(passes=plan.passes, steps=plan.steps_per_epoch)  # the schedule that ran
        if progress:
            h = history[-1]
            print(f"self-learning epoch {epoch + 1}/{epochs}: loss {h['loss']:.4f}, "
                  f"confident {h['confident_fraction']:.3f}, fits s(x) {h['structural_fit']:.3f}, "
                  f"{h['images_per_s']:.0f} img/s", flush=True)
    return params["student"], params["teacher"], history, s
