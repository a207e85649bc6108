"""TransCLIP-ZS and StatA's shared math: a Gaussian model of the pool, a text prior and a kNN
Laplacian term, solved by alternating parallel z updates and mean / variance updates.

Official code: MaxZanella/transduction-for-vlms (TransCLIP_solver/TransCLIP.py, TransCLIP_utils.py)
and MaxZanella/StatA (solvers/StatA.py). Notation: x (Np, D) unit pool rows sharded along `pool`,
mask (Np,) real rows, t (K, D) class embeddings, z (Np, K) soft assignments (0 on padding rows).

- Prior: log yhat = log_softmax(s x t^T) (official s = 100), kept in log space: yhat^lambda
  underflows in low precision, its log does not.
- Graph: W (Np, k) from `blocked_knn` (self excluded by index, so duplicates stay neighbours; the
  official top-(k+1)-drop-first drops a duplicate instead of the row itself when they tie), raw
  cosine weights, not symmetrised; the update uses (W z + W^T z) as two sparse products.
- z update (both methods, `Z_STEPS` parallel steps):
  log z_i = lambda_y log yhat_i + [u_i + lambda_L (T / 2k) (W z + W^T z)_i] / T + const, T = 50,
  with u_ik = l_ik (TransCLIP) or l_ik - 1/2 sum_d log var_kd (StatA) and
  l_ik = -1/2 sum_d (x_id - mu_kd)^2 / var_kd computed as three matmuls (never (Np, K, D)).
  Variances are floored at VAR_FLOOR (not official: the official code gives 0/0 = NaN on a feature
  dimension that is zero on every pool image, which CLIP features never are; our offline model's
  are, on small pools).
- Statistics (`moments`): mass_k = sum_i z_ik, S_k = sum_i z_ik x_i, Q_k = sum_i z_ik x_i^2 (matmuls
  over the sharded rows with the mask); sum_i z_ik (x_i - mu_k)^2 = Q_k - 2 mu_k S_k + mass_k mu_k^2.
Memory O(Np (k + K) + K D) per iteration.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from adapt.core import ops
from adapt.core.settings import check_at_least
from adapt.graph import sparse as graph
from adapt.graph.knn import blocked_knn

TEMPERATURE = 50.0  # the official 1/50 on the z-update exponent and 50/(2k) on the graph term
Z_STEPS = 5  # parallel z steps per outer iteration (official update_z max_iter)
INIT_TOP = 8  # TransCLIP-ZS: images per class in the initial means (official n_most_confident)
HIGHEST = lax.Precision.HIGHEST
MODELS = ("transclip", "stata")
VAR_FLOOR = 1e-12  # not official: a dimension zero on every pool image has variance 0 (0/0 there)


@dataclasses.dataclass(frozen=True)
class Settings:
    """The method_args TransCLIP and StatA share (values and meaning: configs/transclip.py)."""

    center: bool
    prior_scale: float
    k: int
    iterations: int
    lam_prior: float
    lam_laplacian: float
    block: int

    def __post_init__(self):
        check_at_least("k", self.k, 1)
        check_at_least("iterations", self.iterations, 0)
        check_at_least("prior_scale", self.prior_scale, 0.0)


class Gaussians(NamedTuple):
    mu: jax.Array  # (K, D) unit class means
    var: jax.Array  # (K, D) diagonal variances (TransCLIP: one shared row repeated)


class Moments(NamedTuple):
    mass: jax.Array  # (K,) sum_i z_ik
    first: jax.Array  # (K, D) sum_i z_ik x_i
    second: jax.Array  # (K, D) sum_i z_ik x_i^2


def knn_affinity(x, mask, k, *, mesh=None, block=1024) -> graph.Neighbours:
    """W: each real row -> its k most similar real rows (self excluded by index), raw cosines."""
    sim, idx = blocked_knn(x, x, k, exclude_self=True, block=block, key_mask=mask, mesh=mesh)
    return graph.from_knn(idx, sim, mask)


def affinity_term(nb: graph.Neighbours, z):
    """(W z + W^T z): z (Np, K) -> (Np, K)."""
    return graph.gather_sum(nb, z) + graph.scatter_sum(nb, z, z.shape[0])


def log_likelihood(x, g: Gaussians):
    """l_ik = -1/2 sum_d (x_id - mu_kd)^2 / var_kd as matmuls: x (Np, D) -> (Np, K)."""
    inv = 1.0 / g.var
    quad = jnp.einsum("nd,kd->nk", x * x, inv, precision=HIGHEST)
    cross = jnp.einsum("nd,kd->nk", x, g.mu * inv, precision=HIGHEST)
    # this grouping: `-0.5 * (quad - 2 cross + c[None])` came out all-NaN under jit on XLA CPU
    # (jax 0.10.2, N = 10,000, D = 1280) although every term was finite
    return -0.5 * quad + (cross - 0.5 * jnp.sum(g.mu * g.mu * inv, axis=1)[None, :])


def moments(x, z, mask) -> Moments:
    """Soft counts, first and second moments of the real rows under z (Np, K)."""
    w = z * mask[:, None].astype(z.dtype)
    return Moments(ops.pool_sum(w), jnp.matmul(w.T, x, precision=HIGHEST),
                   jnp.matmul(w.T, x * x, precision=HIGHEST))


def scatter(m: Moments, mu):
    """sum_i z_ik (x_i - mu_k)^2 per class and dimension: (K, D) (>= 0: the expansion's rounding
    is clipped)."""
    return jnp.maximum(m.second - 2.0 * mu * m.first + m.mass[:, None] * mu * mu, 0.0)


def z_steps(log_prior, unary, z, nb, mask, *, lam_prior, lam_laplacian, k, steps=Z_STEPS, support=None):
    """`steps` parallel z updates from z (Np, K); unary (Np, K) = l (minus StatA's log-det).
    support: (rows (Np,) bool, one-hot labels (Np, K)): those rows stay fixed (few-shot mode)."""
    coef = lam_laplacian * TEMPERATURE / (2.0 * k)

    def step(_, z):
        logits = lam_prior * log_prior + (unary + coef * affinity_term(nb, z)) / TEMPERATURE
        z = jnp.where(mask[:, None], jax.nn.softmax(logits, axis=1), 0.0)
        return z if support is None else jnp.where(support[0][:, None], support[1], z)

    return lax.fori_loop(0, steps, step, z)


def _log_odds_against(logits):
    """u_ik = logsumexp_{j != k} logits_ij - logits_ik (N, K): ranks rows like -softmax_ik without
    saturating where float32 rounds softmax_ik to 1.0 (the same rule as methods/laplacian.py)."""
    top = jnp.max(logits, axis=1, keepdims=True)
    is_top = jax.nn.one_hot(jnp.argmax(logits, axis=1), logits.shape[1], dtype=bool)
    second = jnp.max(jnp.where(is_top, -jnp.inf, logits), axis=1, keepdims=True)
    others = jnp.sum(jnp.where(is_top, 0.0, jnp.exp(logits - second)), axis=1, keepdims=True)
    total = jnp.sum(jnp.exp(logits - top), axis=1, keepdims=True)
    rest = jnp.maximum(total - jnp.exp(logits - top), 1.0)
    return jnp.where(is_top, second + jnp.log(others), top + jnp.log(rest)) - logits


def top_means(x, mask, logits, z, top=INIT_TOP):
    """TransCLIP-ZS initial means: mu_k = normalize(sum of z_ik x_i over the `top` rows most
    confident for k), rows ranked by the prior's log-odds (tie-free where z saturates): (K, D)."""
    odds = jnp.where(mask[:, None], _log_odds_against(logits), jnp.inf)
    _, rows = lax.top_k(-odds.T, min(top, x.shape[0]))  # (K, top)
    weights = jnp.take_along_axis(z.T, rows, axis=1) * mask[rows]
    return ops.l2_normalize(jnp.einsum("kt,ktd->kd", weights, x[rows], precision=HIGHEST))


def transclip_update(x, z, mask, g: Gaussians, text, row_weight=None) -> Gaussians:
    """mu_k = normalize(S_k / mass_k); one variance sum_ik z_ik (x_i - mu_k)^2 / sum_ik z_ik.
    row_weight (Np,): few-shot mode's weights (1 / n_query on queries, gamma 50 / n_support on
    supports) on every sum, as the official update_mu / update_sigma."""
    m = moments(x, z if row_weight is None else z * row_weight[:, None], mask)
    mu = ops.l2_normalize(m.first / m.mass[:, None])
    var = jnp.sum(scatter(m, mu), axis=0) / jnp.sum(m.mass)
    return Gaussians(mu, jnp.broadcast_to(jnp.maximum(var, VAR_FLOOR), mu.shape))


def stata_update(x, z, mask, g: Gaussians, text, var_init, alpha=1.0) -> Gaussians:
    """StatA: beta_k = n_k / (alpha + n_k) from hard counts; mu_k = normalize(beta_k muhat_k +
    (1 - beta_k) t_k); var_k = beta_k scatter_k / mass_k + (1 - beta_k)(var_init + (t_k - mu_k)^2)."""
    counts = jnp.sum(jax.nn.one_hot(jnp.argmax(z, axis=1), z.shape[1], dtype=z.dtype)
                     * mask[:, None], axis=0)
    beta = (counts / (alpha + counts + 1e-12))[:, None]
    m = moments(x, z, mask)
    mu_hat = ops.l2_normalize(m.first / m.mass[:, None])
    mu = ops.l2_normalize(beta * mu_hat + (1.0 - beta) * text)
    var = beta * scatter(m, mu) / m.mass[:, None] + (1.0 - beta) * (var_init + (text - mu) ** 2)
    return Gaussians(mu, jnp.maximum(var, VAR_FLOOR))


def _init(model, x, mask, logits, z, text, support=None):
    """(Gaussians, var_init (D,)) before the first z update. Few-shot (`support`): the means are
    the normalised sums of each class's support rows (official init_mu)."""
    d = x.shape[1]
    if model == "transclip":
        mu = top_means(x, mask, logits, z) if support is None else ops.l2_normalize(
            jnp.matmul((support[1] * support[0][:, None]).T, x, precision=HIGHEST))
        return Gaussians(mu, jnp.full(text.shape, 1.0 / d, x.dtype)), None
    n = jnp.sum(mask.astype(x.dtype))
    var_init = jnp.maximum(jnp.sum(scatter(moments(x, z, mask), text), axis=0) / n, VAR_FLOOR)
    return Gaussians(text, jnp.broadcast_to(var_init, text.shape)), var_init


def support_weights(mask, support, gamma):
    """Few-shot row weights (Np,): 1 / n_query on queries, gamma 50 / n_support on supports."""
    n_support = jnp.sum(support & mask)
    n_query = jnp.sum(mask) - n_support
    return jnp.where(support, gamma * TEMPERATURE / n_support, 1.0 / n_query) * mask


@functools.partial(jax.jit, static_argnames=("model", "k", "iterations", "lam_prior",
                                             "lam_laplacian", "alpha", "gamma"))
def solve(x, mask, text, nb, scale, *, model, k, iterations, lam_prior=1.0, lam_laplacian=1.0,
          alpha=1.0, prior=None, support=None, gamma=0.0):
    """iterations + 1 rounds of z updates with `iterations` Gaussian updates between them.
    prior (Np, K): yhat given (a chained run's start probabilities) instead of softmax(s x t^T).
    support (TransCLIP few-shot): (rows (Np,) bool, one-hot labels (Np, K)), fixed in z, weighted
    by `gamma` in the mean / variance updates.
    Returns (z (Np, K) after the last z update, Gaussians used by it, info dict of arrays)."""
    if prior is None:
        logits = scale * jnp.matmul(x, text.T, precision=HIGHEST)
    else:  # log yhat as the logits: the same yhat, z0 and ranking of the initial images
        logits = jnp.log(jnp.maximum(prior, jnp.finfo(x.dtype).tiny))
    log_prior = jax.nn.log_softmax(logits, axis=1)
    z0 = jnp.where(mask[:, None], jnp.exp(log_prior), 0.0)
    if support is not None:
        z0 = jnp.where(support[0][:, None], support[1], z0)
    g, var_init = _init(model, x, mask, logits, z0, text, support)
    row_weight = None if support is None else support_weights(mask, support[0], gamma)

    def z_round(g, z):
        unary = log_likelihood(x, g)
        if model == "stata":
            unary = unary - 0.5 * jnp.sum(jnp.log(g.var), axis=1)[None, :]
        return z_steps(log_prior, unary, z, nb, mask, lam_prior=lam_prior,
                       lam_laplacian=lam_laplacian, k=k, support=support)

    def outer(_, carry):
        g, z, _ = carry
        if model == "transclip":
            g = transclip_update(x, z, mask, g, text, row_weight)
        else:
            g = stata_update(x, z, mask, g, text, var_init, alpha)
        return g, z_round(g, z), z

    z1 = z_round(g, z0)
    g, z, z_prev = lax.fori_loop(0, iterations, outer, (g, z1, z0))
    info = {"last_change": jnp.max(jnp.abs(z - z_prev)), "prior_agreement":
            jnp.sum((jnp.argmax(z, 1) == jnp.argmax(logits, 1)) & mask) / jnp.sum(mask)}
    return z, g, info
