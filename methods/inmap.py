"""InMaP: image-space class proxies learned on the unlabeled pool from balanced text pseudo-labels.

Paper: Qian, Xu, Hu, "Intra-Modal Proxy Learning for Zero-Shot Visual Categorization with CLIP",
NeurIPS 2023 (official code: idstcv/InMaP on GitHub, main.py: `sinkhorn`, `image_opt`).

1. Pseudo-labels: P = sinkhorn(X T^T, tau_t) (`adapt.graph.sinkhorn`): softmax(x . t / 0.01)
   balanced to a uniform class marginal in 20 iterations (gamma > 0: the official power marginal).
2. Hardening: rows whose largest entry exceeds alpha = 0.6 become one-hot at their argmax.
3. Proxies W (C, D), initialised from the unit text embeddings T, by full-batch gradient steps on
   the cross-entropy of softmax(X W^T / tau_i) against the labels (tau_i 0.04):
   G = X^T softmax(X W^T / tau_i) - X^T Y; lr halves whenever |G|_F exceeds the previous |G|_F;
   W <- normalize_rows(W - lr / (n tau_i) G); 2000 steps from lr 10. The official code halves
   the step on a rising gradient norm and divides by n tau_i; the paper states neither.
The prediction is argmax x . w_c (official); probabilities are softmax(x W^T / tau_i), the model
the proxies were trained as, so the deployable head is W at scale 1 / tau_i.

The steps are one compiled `lax.fori_loop`. Sums over the pool: the rows are cut into fixed
blocks of `block` rows (row r in block r // block on any device count; the zero rows appended so
that the device count divides the blocks add nothing), the blocks are sharded along `pool` so a
block's partial X_b^T (P_b - Y_b) is one matmul on one device, and the blocks are added with
`mesh.pool_sum` (correctly rounded, order-free): 1 and 8 CPU devices gave the same bits here.
Deviations from the official code: G is summed as X^T (P - Y) rather than X^T P - X^T Y (equal in
exact arithmetic; the difference of two O(n) sums loses digits that the step lr / tau_i = 250
amplifies); the pool may be centred first (`center`, default off, as the official code uses raw
features); a Sinkhorn column with zero mass stays zero instead of NaN; float32 (as the official
code on the GPU). The official main.py also runs a first pass without Sinkhorn and prints both:
here that is `sinkhorn_iters=0`.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from adapt.core import ops
from adapt.core.distributed import to_host
from adapt.core.mesh import POOL
from adapt.core.method import TRANSDUCTIVE, Head, Method, MethodInputs, MethodOutputs
from adapt.core.settings import check_at_least, parse_method_args
from adapt.graph import outputs as graph_outputs
from adapt.graph.sinkhorn import sinkhorn

MOVE_TOL = 1e-6  # a proxy entry changing by more than this counts as a step that moved W
DESCRIPTION = "InMaP: image-space proxies learned from Sinkhorn-balanced text pseudo-labels"


@dataclasses.dataclass(frozen=True)
class Settings:
    """method_args of inmap; values and their meaning: configs/inmap.py."""

    tau_t: float
    tau_i: float
    lr: float
    iters: int
    sinkhorn_iters: int
    alpha: float
    gamma: float
    center: bool
    block: int

    def __post_init__(self):
        for name in ("tau_t", "tau_i", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"method_args.{name} must be > 0, got {getattr(self, name)!r}")
        check_at_least("iters", self.iters, 0)
        check_at_least("sinkhorn_iters", self.sinkhorn_iters, 0)
        check_at_least("gamma", self.gamma, 0.0)
        check_at_least("block", self.block, 1)


def _blocks(a: jax.Array, block: int, mesh) -> jax.Array:
    """(Np, ...) -> (Nb, block, ...), zero rows appended so that the device count divides Nb;
    the blocks are sharded along `pool`, so a block's sum never spans two devices."""
    devices = 1 if mesh is None else mesh.devices.size
    pad = (-a.shape[0]) % (block * devices)
    a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
    a = a.reshape(a.shape[0] // block, block, *a.shape[1:])
    if mesh is None:
        return a
    return jax.lax.with_sharding_constraint(a, NamedSharding(mesh, P(POOL)))


def _pool_gram(y: jax.Array, x: jax.Array) -> jax.Array:
    """y (Nb, b, C), x (Nb, b, D) -> Y^T X (C, D): one matmul per block, blocks by `pool_sum`."""
    return ops.pool_sum(jnp.einsum("nbc,nbd->ncd", y, x))


def harden(labels: jax.Array, alpha: float) -> jax.Array:
    """(N, C) soft labels -> rows whose maximum exceeds alpha replaced by one-hot at the argmax."""
    one_hot = jax.nn.one_hot(jnp.argmax(labels, axis=1), labels.shape[1], dtype=labels.dtype)
    return jnp.where(labels.max(axis=1, keepdims=True) > alpha, one_hot, labels)


@functools.partial(jax.jit, static_argnames=("iters", "block", "mesh"))
def learn_proxies(x, mask, init, labels, *, lr, tau, iters, alpha, block=256, mesh=None):
    """x (Np, D) pool rows, mask (Np,), init (C, D) unit rows, labels (Np, C) soft pseudo-labels
    -> (proxies (C, D) unit rows, info): the official `image_opt` as one compiled loop.
    info: final lr, halvings, gradient norm of the last step, rows hardened, the last step
    (1-based) that moved an entry of W by more than MOVE_TOL (renormalising alone moves < 1e-7)."""
    real = mask.astype(x.dtype)
    n = jnp.maximum(real.sum(), 1.0)
    hard = harden(labels, alpha) * real[:, None]
    xb, rb, yb = (_blocks(a, block, mesh) for a in (x, real, hard))

    def step(i, carry):
        w, step_size, prev_norm, halvings, last_move = carry
        prob = jax.nn.softmax(jnp.einsum("nbd,cd->nbc", xb, w) / tau, axis=-1) * rb[..., None]
        grad = _pool_gram(prob - yb, xb)  # = X^T prob - X^T Y, without the cancellation
        norm = jnp.linalg.norm(grad)
        rising = norm > prev_norm
        step_size = jnp.where(rising, step_size / 2.0, step_size)
        new_w = ops.l2_normalize(w - (step_size / (n * tau)) * grad)
        last_move = jnp.where(jnp.max(jnp.abs(new_w - w)) > MOVE_TOL, i + 1, last_move)
        return new_w, step_size, norm, halvings + rising.astype(jnp.int32), last_move

    dtype = x.dtype
    carry = (init.astype(dtype), jnp.asarray(lr, dtype), jnp.asarray(jnp.inf, dtype), jnp.int32(0),
             jnp.int32(0))
    w, step_size, norm, halvings, last_move = lax.fori_loop(0, iters, step, carry)
    hardened = jnp.sum((labels.max(axis=1) > alpha) & mask)
    return w, {"lr": step_size, "halvings": halvings, "grad_norm": norm, "hardened": hardened,
               "last_step_that_moved": last_move}


@jax.jit
def _probs(x, proxies, tau):
    return jax.nn.softmax(x @ proxies.T / tau, axis=1)


def make(config) -> Method:
    s = parse_method_args(Settings, config.method_args, "inmap")

    def run(inputs: MethodInputs) -> MethodOutputs:
        n = int(to_host(inputs.mask).sum())
        x, mean = graph_outputs.pool_features(inputs.x, inputs.mask, s.center)
        text = inputs.class_weights
        labels = sinkhorn(x @ text.T, inputs.mask, s.tau_t, s.sinkhorn_iters, s.gamma)
        proxies, info = learn_proxies(x, inputs.mask, text, labels, lr=s.lr, tau=s.tau_i,
                                      iters=s.iters, alpha=s.alpha, block=s.block,
                                      mesh=inputs.mesh)
        probs = graph_outputs.host_rows(_probs(x, proxies, s.tau_i), n)
        head = Head(weights=to_host(proxies).astype(np.float32),
                    center=None if mean is None else to_host(mean).astype(np.float32),
                    normalize=True, scale=1.0 / s.tau_i)
        label_mass = graph_outputs.host_rows(labels, n).sum(axis=0)
        metrics = {
            "settings": dataclasses.asdict(s), "centered": s.center,
            "final_lr": float(to_host(info["lr"])), "lr_halvings": int(to_host(info["halvings"])),
            "final_grad_norm": float(to_host(info["grad_norm"])),
            "hardened_rows": int(to_host(info["hardened"])),
            "last_step_that_moved_proxies": int(to_host(info["last_step_that_moved"])),
            "pseudo_label_class_mass": [float(v) for v in label_mass],
            "predictions_setting": TRANSDUCTIVE, "head": "learned proxies W at scale 1/tau_i (inductive)",
        }
        return MethodOutputs(probs, graph_outputs.predict(probs), head, TRANSDUCTIVE, metrics)

    return Method("inmap", DESCRIPTION, run, settings=s)
