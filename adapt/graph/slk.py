"""SLK: Laplacian-regularised prototype clustering (spec laplacian.md B; imtiazziko/SLK-few-shot).

Alternates a prototype step (K-means means, or K-modes by mean-shift) with an assignment step (the
Laplacian bound updates of `graph_bound`, or the hard nearest prototype without the Laplacian),
until the relative change of the Laplacian K-prototypes energy is <= tol (after step 2) or an
empty cluster appears (then the previous labels and prototypes are restored). Support rows (few-shot)
are nodes of the graph and are held at their labels.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from adapt.graph import sparse as graph
from adapt.graph.bound import bound_update, hard_means, mean_shift, soft_means, squared_distances


class SlkResult(NamedTuple):
    y: jax.Array  # (Np, C) final assignments (soft with the Laplacian, one-hot without)
    labels: jax.Array  # (Np,) int32
    prototypes: jax.Array  # (C, D)
    energies: jax.Array  # (max_outer,) energy after each outer step, NaN after the stop
    iterations: jax.Array  # () outer steps executed
    emptied: jax.Array  # () True if the empty-cluster guard fired


def _unary(x, protos, prototype_step, sigma2):
    d2 = squared_distances(x, protos)
    if prototype_step == "kmeans":
        return d2
    return -jnp.exp(-d2 / (2.0 * sigma2))


def slk_energy(unary, z, nb, lam, mask):
    """Clustering term sum z o a minus lam sum_k z_k^T W z_k, over the real rows."""
    m = mask[:, None].astype(z.dtype)
    return jnp.sum(m * (z * unary - lam * z * graph.gather_sum(nb, z)))


@functools.partial(jax.jit, static_argnames=("prototype_step", "laplacian", "clamp_support",
                                             "max_outer", "bound_iters"))
def slk(x, mask, nb, protos0, support_rows, support_onehot, lam, sigma2, *, prototype_step="kmeans",
        laplacian=True, clamp_support=True, max_outer=100, tol=1e-4, bound_iters=600, bound_tol=1e-7):
    """x (Np, D) nodes (supports first in few-shot, marked by support_rows (Np,) with their one-hot
    labels support_onehot (Np, C)); nb the kNN W; protos0 (C, D) initial prototypes."""
    c = protos0.shape[0]
    weights = mask.astype(x.dtype)
    lam = lam if laplacian else 0.0

    def force(labels):
        return jnp.where(support_rows, jnp.argmax(support_onehot, 1), labels).astype(jnp.int32)

    def onehot(labels):
        return jax.nn.one_hot(labels, c, dtype=x.dtype)

    labels0 = force(jnp.argmin(squared_distances(x, protos0), axis=1))
    energies = jnp.full((max_outer,), jnp.nan, x.dtype)
    state = (0, protos0, labels0, onehot(labels0), jnp.array(jnp.inf, x.dtype), jnp.array(False),
             energies, jnp.array(False))

    def cond(s):
        return (s[0] < max_outer) & ~s[5]

    def body(s):
        t, protos, labels, z, old_e, _, energies, _ = s
        if prototype_step == "kmeans":
            hard = hard_means(x, labels, weights, c, protos)
            new_protos = lax.cond((t > 0) & laplacian, lambda: soft_means(x, z, weights), lambda: hard)
        else:
            new_protos = mean_shift(x, labels, weights, protos, sigma2)
        unary = _unary(x, new_protos, prototype_step, sigma2)
        if laplacian:
            y0 = jnp.where(support_rows[:, None], support_onehot, graph.masked_softmax(-unary))
            res = bound_update(unary, nb, lam, mask, y0, max_iters=bound_iters, tol=bound_tol,
                               clamp_rows=support_rows if clamp_support else None,
                               clamp_to=support_onehot, start_from_unary=False)
            new_z = res.y
            new_labels = jnp.argmax(new_z, axis=1).astype(jnp.int32)
        else:
            new_labels = force(jnp.argmin(unary, axis=1))
            new_z = onehot(new_labels)
        e = slk_energy(unary, new_z, nb, lam, mask)
        counts = jnp.sum(onehot(new_labels) * weights[:, None], axis=0)
        emptied = jnp.any(counts == 0)
        stop = emptied | ((t > 1) & (jnp.abs(e - old_e) <= tol * jnp.abs(old_e)))
        keep = lambda new, old: jnp.where(emptied, old, new)  # noqa: E731  (the guard)
        return (t + 1, keep(new_protos, protos), keep(new_labels, labels), keep(new_z, z),
                jnp.where(stop, old_e, e), stop, energies.at[t].set(e), emptied)

    t, protos, labels, z, _, _, energies, emptied = lax.while_loop(cond, body, state)
    return SlkResult(z, labels, protos, energies, t, emptied)
