"""The tuning loop the tuning methods share (pseudolabel, NoLA, S3A).

`fit` trains a pytree of parameters on rows of host arrays: each epoch is one jit-compiled
`lax.scan` over its steps; the global batch is sharded along the pool axis and the parameters are
replicated, so gradients are averaged over devices by XLA. Randomness depends only on
(key, epoch, step, position in the global batch), never on the device count. After each epoch the
parameters, optimizer state and history go to an orbax checkpoint; a rerun with the same arguments
resumes from the last one and ends bit-identical to an uninterrupted run.

How long a fit runs is planned by `plan_epochs`: the epochs asked for, each made of several shuffled
passes over the rows when one pass gives fewer than `min_steps_per_epoch` optimizer steps (a floor
in steps, so a small pool gets as many updates per round as a large one: at least epochs x floor).
0 = one pass an epoch. (A floor per epoch rather than per fit: shortening a run's epochs shortens it.)

The loss is `loss_fn(params, batch, key) -> (loss, aux)` over one global batch: `batch` holds the
(B, ...) rows of every data array plus "mask" (B,) (False on padding rows of the last, partial
batch); per-example keys are `jax.random.fold_in(key, i)` with i the row's position in the batch.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from adapt.core import mesh as mesh_lib


def warmup_cosine(base_lr: float, warmup_epochs: int, epochs: int) -> Callable[[jax.Array], jax.Array]:
    """Per-epoch LR: linear warm-up lr * (e + 1) / w for epochs 0..w-1, then cosine from lr to 0
    at epoch `epochs` (pseudolabel_prompt_tuning.md). Constant within an epoch."""
    def lr(epoch):
        e = jnp.asarray(epoch, jnp.float32)
        warm = base_lr * (e + 1.0) / max(warmup_epochs, 1)
        t = (e - warmup_epochs) / max(epochs - warmup_epochs, 1)
        cos = 0.5 * base_lr * (1.0 + jnp.cos(jnp.pi * jnp.clip(t, 0.0, 1.0)))
        return jnp.where(e < warmup_epochs, warm, cos)
    return lr


def sgd(base_lr: float, epochs: int, steps_per_epoch: int, *, warmup_epochs: int = 5,
        momentum: float = 0.9, weight_decay: float = 0.1) -> optax.GradientTransformation:
    """PyTorch-style SGD (weight decay added to the gradient before momentum) on the per-epoch
    warm-up + cosine schedule."""
    per_epoch = warmup_cosine(base_lr, warmup_epochs, epochs)
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.sgd(lambda step: per_epoch(step // steps_per_epoch), momentum=momentum))


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """How long one fit runs: `epochs` (the LR schedule's unit, one checkpoint each), each of `passes`
    shuffled passes over the rows, so `steps_per_epoch` optimizer steps an epoch and `steps` in all;
    `rule` says which setting decided: "epochs" (one pass gave at least `min_steps_per_epoch`
    steps) or "min_steps_per_epoch" (the floor added passes)."""

    epochs: int
    warmup_epochs: int
    passes: int
    steps_per_epoch: int
    steps: int
    rule: str
    min_steps_per_epoch: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def steps_per_pass(n_rows: int, batch_size: int, drop_last: bool = False) -> int:
    """Optimizer steps of one pass over n_rows rows (`fit`'s batch is min(batch_size, n_rows))."""
    if drop_last:
        return max(n_rows // batch_size, 1)
    return max(-(-n_rows // max(min(batch_size, n_rows), 1)), 1)


def plan_epochs(n_rows: int, batch_size: int, epochs: int, warmup_epochs: int = 0, min_steps_per_epoch: int = 0,
                drop_last: bool = False) -> EpochPlan:
    """`epochs` epochs of P passes each, P the fewest (>= 1) giving at least `min_steps_per_epoch`
    steps an epoch: the number of optimizer steps no longer shrinks with the pool, the LR schedule
    (per epoch) and the checkpoints (one per epoch) keep their shape, and with P = 1 the fit is the
    plain one."""
    if epochs < 1 or min_steps_per_epoch < 0 or warmup_epochs < 0:
        raise ValueError(f"need epochs >= 1, warmup_epochs >= 0, min_steps_per_epoch >= 0; got {epochs}, "
                         f"{warmup_epochs}, {min_steps_per_epoch}")
    per_pass = steps_per_pass(n_rows, batch_size, drop_last)
    passes = max(1, -(-min_steps_per_epoch // per_pass))
    return EpochPlan(epochs, warmup_epochs, passes, passes * per_pass, epochs * passes * per_pass,
                     "min_steps_per_epoch" if passes > 1 else "epochs", min_steps_per_epoch)


@dataclasses.dataclass
class FitResult:
    params: object
    history: list[dict]  # one row per epoch: epoch, loss, aux means, lr, seconds, images_per_s
    resumed_from: int     # epochs restored from a checkpoint or passed in (0 = fresh start)
    opt_state: object = None


@functools.lru_cache(maxsize=8)  # fit() called epoch by epoch (self-learning) reuses the compiled epoch
def _epoch_fn(loss_fn, optimizer, mesh, n_steps: int, batch: int):
    rows = mesh_lib.pool_sharding(mesh)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def run(params, opt_state, data, order, valid, key):
        def step(carry, xs):
            params, opt_state = carry
            idx, ok, i = xs
            b = {k: jax.lax.with_sharding_constraint(jnp.take(v, idx, axis=0), rows) for k, v in data.items()}
            b["mask"] = jax.lax.with_sharding_constraint(ok, rows)
            (loss, aux), grads = grad_fn(params, b, jax.random.fold_in(key, i))
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), (loss, aux)

        xs = (order.reshape(n_steps, batch), valid.reshape(n_steps, batch), jnp.arange(n_steps))
        (params, opt_state), (loss, aux) = jax.lax.scan(step, (params, opt_state), xs)
        return params, opt_state, loss, aux

    return jax.jit(run)


def epoch_order(key: jax.Array, epoch: int, n: int, batch: int, pad_to: int, drop_last: bool, passes: int = 1):
    """Row indices (steps * pad_to,) and validity of one epoch: `passes` permutations, the first from
    (key, epoch), the others from a NumPy generator seeded with the bits of (key, epoch, 1) (cheap
    for hundreds of passes), each cut into global batches of `batch` rows, each batch padded to
    `pad_to` (a multiple of the mesh size) with masked repeats of row 0."""
    k = jax.random.fold_in(key, epoch)
    perms = [np.asarray(jax.random.permutation(k, n))]
    if passes > 1:
        rng = np.random.default_rng(np.asarray(jax.random.key_data(jax.random.fold_in(k, 1))).ravel().tolist())
        perms += [rng.permutation(n) for _ in range(passes - 1)]
    steps = n // batch if drop_last else -(-n // batch)
    orders, valids = [], []
    for perm in perms:
        order = np.zeros((max(steps, 1), pad_to), np.int32)
        valid = np.zeros((max(steps, 1), pad_to), bool)
        for s in range(steps):
            part = perm[s * batch:(s + 1) * batch]
            order[s, :len(part)], valid[s, :len(part)] = part, True
        orders.append(order.reshape(-1))
        valids.append(valid.reshape(-1))
    return np.concatenate(orders), np.concatenate(valids), passes * max(steps, 1)


def fit(loss_fn, params, data: dict[str, np.ndarray], *, optimizer: optax.GradientTransformation,
        epochs: int, batch_size: int, key: jax.Array, mesh, checkpoint_dir: str | Path | None = None,
        progress: bool = True, desc: str = "train", drop_last: bool = False,
        on_epoch: Callable[[int, object], dict] | None = None, opt_state=None,
        history: list[dict] | None = None, passes: int = 1) -> FitResult:
    """Trains `params` for `epochs` over the rows of `data` (arrays with the same first dim N).

    The data arrays are replicated on every device (fine up to a few GB: cached features or
    preprocessed images); each step gathers its batch and shards it along the pool axis.
    `on_epoch(epoch, params) -> dict` adds entries to that epoch's history row (e.g. pool accuracy
    of pseudo-labels). To continue a run in memory (data changing between epochs), pass the previous
    result's `opt_state` and `history`: training resumes at epoch len(history). `passes`: shuffled
    passes over the rows per epoch (`plan_epochs`).
    Returns the final parameters, optimizer state and history.
    """
    n = len(next(iter(data.values())))
    if n == 0:
        raise ValueError("nothing to train on: the data arrays have no rows")
    if any(len(v) != n for v in data.values()):
        raise ValueError(f"data arrays differ in length: { {k: len(v) for k, v in data.items()} }")
    batch = min(batch_size, n) if not drop_last else batch_size
    pad_to = mesh_lib.padded_size(batch, mesh)
    params = mesh_lib.replicate(params, mesh)
    opt_state = mesh_lib.replicate(optimizer.init(params) if opt_state is None else opt_state, mesh)
    device_data = {k: mesh_lib.replicate(np.asarray(v), mesh) for k, v in data.items()}
    ckpt = Checkpoints(checkpoint_dir) if checkpoint_dir else None
    history = list(history or [])
    start = len(history)
    if ckpt is not None and ckpt.latest() is not None:
        params, opt_state, history = ckpt.restore(params, opt_state)
        start = len(history)
    epoch_fn = None
    bar = tqdm(total=epochs, initial=start, desc=desc, unit="epoch", disable=not progress)
    for epoch in range(start, epochs):
        order, valid, steps = epoch_order(key, epoch, n, batch, pad_to, drop_last, passes)
        if epoch_fn is None or steps != epoch_fn[1]:
            epoch_fn = (_epoch_fn(loss_fn, optimizer, mesh, steps, pad_to), steps)
        t = time.perf_counter()
        params, opt_state, loss, aux = epoch_fn[0](params, opt_state, device_data, jnp.asarray(order),
                                                   jnp.asarray(valid), jax.random.fold_in(key, 10_000 + epoch))
        loss = float(jnp.mean(loss))
        secs = time.perf_counter() - t
        row = dict(epoch=epoch, loss=loss, seconds=secs, images_per_s=int(valid.sum()) / max(secs, 1e-9),
                   **{k: float(jnp.mean(v)) for k, v in aux.items()})
        if on_epoch is not None:
            row.update(on_epoch(epoch, params))
        history.append(row)
        if ckpt is not None:
            ckpt.save(epoch + 1, params, opt_state, history)
        bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{row['images_per_s']:.0f}")
        bar.update(1)
    bar.close()
    return FitResult(params, history, start, opt_state)


class Checkpoints:
    """Orbax checkpoints of (params, opt_state) with the JSON history, one per finished epoch;
    the last two are kept. Saves are synchronous, so a killed job loses at most the running epoch."""

    def __init__(self, directory):
        self.manager = ocp.CheckpointManager(
            Path(directory).absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True, enable_async_checkpointing=False))

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, params, opt_state, history: list[dict]) -> None:
        a = ocp.args
        self.manager.save(step, args=a.Composite(state=a.StandardSave({"params": params, "opt": opt_state}),
                                                 history=a.JsonSave({"rows": history})))
        self.manager.wait_until_finished()

    def restore(self, params, opt_state):
        a = ocp.args
        got = self.manager.restore(self.latest(), args=a.Composite(
            state=a.StandardRestore({"params": params, "opt": opt_state}), history=a.JsonRestore()))
        return got.state["params"], got.state["opt"], list(got.history["rows"])


def n_params(tree) -> int:
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(tree)))
