"""Multi-view embedding for TMV-HLP (spec label_propagation.md B, step 0 and the view weights).

- `refine_prototypes`: each class prototype of a view becomes the mean of its top-T most
  cosine-similar pool rows in that view (the official self-training step, T = 500).
- `multiview_cca`: C_all w = lambda C_diag w over the concatenated, centred views (1e-4 I added to
  each view's diagonal block of both), solved via the Cholesky factor of C_diag and a symmetric
  eigh (JAX has no generalized eigh; the (d, d) eigenproblem runs on the host in float64). View i is
  embedded as v_i W_i diag(lambda^4). Directions with lambda^4 below `floor` times the largest are
  dropped (their share of any squared distance is below floor^2; the official code keeps all).
- `view_agreement_weights`: PG_i from the per-node agreement t = 1/|x^i - x^j| > 1/sqrt(2).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax import lax

from adapt.core.distributed import to_host

CCA_REG = 1e-4


@functools.partial(jax.jit, static_argnames=("top",))
def refine_prototypes(view, mask, protos, *, top, count=None):
    """view (Np, d), protos (C, d) -> (C, d): mean of the `top` pool rows most cosine-similar to
    each prototype (padding rows never chosen); with `count` (a traced int <= top), of the first
    `count` of them (one compilation for every count)."""
    unit = lambda a: a / jnp.maximum(jnp.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    cos = jnp.where(mask[None, :], unit(protos) @ unit(view).T, -jnp.inf)
    _, rows = lax.top_k(cos, top)
    if count is None:
        return view[rows].mean(axis=1)
    keep = (jnp.arange(top) < count).astype(view.dtype)
    return jnp.einsum("ctd,t->cd", view[rows], keep) / count.astype(view.dtype)


@jax.jit
def _moments(views, mask):
    """Pool mean (d,) and covariance (d, d) of the concatenated views, over real rows (ddof 1)."""
    x = jnp.concatenate(views, axis=1)
    w = mask.astype(x.dtype)[:, None]
    n = w.sum()
    mean = jnp.sum(w * x, axis=0) / n
    xc = (x - mean) * w
    return mean, lax.dot_general(xc, xc, (((0,), (0,)), ((), ())),
                                 precision=lax.Precision.HIGHEST) / (n - 1.0)


def multiview_cca(views, mask, floor=1e-4):
    """views: list of (Np, d_i) arrays (pool rows, padding masked by mask (Np,)).

    Returns (means: list of (d_i,), projections: list of (d_i, r) float32 already scaled by
    lambda^4, eigenvalues (r,) float64, cov_all, cov_diag (float64, for tests))."""
    dims = [int(v.shape[1]) for v in views]
    mean, cov = _moments(tuple(jnp.asarray(v) for v in views), jnp.asarray(mask))
    cov = to_host(cov).astype(np.float64)
    cuts = np.cumsum([0] + dims)
    cov_all = cov.copy()
    cov_diag = np.zeros_like(cov)
    for a, b in zip(cuts[:-1], cuts[1:]):
        cov_all[a:b, a:b] += CCA_REG * np.eye(b - a)
        cov_diag[a:b, a:b] = cov_all[a:b, a:b]
    chol = np.linalg.cholesky(cov_diag)
    half = scipy.linalg.solve_triangular(chol, cov_all, lower=True)
    sym = scipy.linalg.solve_triangular(chol, half.T, lower=True)
    lam, vecs = np.linalg.eigh(0.5 * (sym + sym.T))
    lam, vecs = lam[::-1], vecs[:, ::-1]
    w = scipy.linalg.solve_triangular(chol.T, vecs, lower=False)
    weight = np.maximum(lam, 0.0) ** 4
    keep = weight >= floor * weight.max()
    proj = w[:, keep] * weight[keep]
    mean = to_host(mean)
    means = [np.asarray(mean[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    projs = [proj[a:b].astype(np.float32) for a, b in zip(cuts[:-1], cuts[1:])]
    return means, projs, lam[keep], cov_all, cov_diag, w[:, keep]


@jax.jit
def view_agreement_weights(nodes, mask):
    """nodes: (V, N', r) row-normalised views of the same nodes -> PG (V,), the share of each view
    in sum_i deg_i, deg_i = sum_{j != i} sum_a t_a [t_a > 1/sqrt(2)], t_a = 1/|x_a^i - x_a^j|."""
    v = nodes.shape[0]
    deg = [jnp.zeros((), nodes.dtype) for _ in range(v)]
    for i in range(v):
        for j in range(i + 1, v):
            t = 1.0 / jnp.maximum(jnp.linalg.norm(nodes[i] - nodes[j], axis=-1), 1e-12)
            s = jnp.sum(jnp.where((t > 1.0 / jnp.sqrt(2.0)) & mask, t, 0.0))
            deg[i], deg[j] = deg[i] + s, deg[j] + s
    deg = jnp.stack(deg)
    return deg / jnp.maximum(deg.sum(), 1e-30)


@functools.partial(jax.jit, static_argnames=("chunk",))
def _pair_sq_dist(xa, xb, a, b, *, chunk=8192):
    """|xa[a_i] - xb[b_i]|^2 for index vectors a, b (S,) padded to a multiple of chunk."""
    def block(ij):
        return jnp.sum((xa[ij[0]] - xb[ij[1]]) ** 2, axis=1)

    return lax.map(block, (a.reshape(-1, chunk), b.reshape(-1, chunk))).ravel()


def pair_median(xa, xb, mask, same_view, *, exact_limit=2000, samples=200_000, seed=0):
    """Median of |xa_a - xb_b|^2 over node pairs of valid rows (a != b within one view).

    Exact up to `exact_limit` valid nodes, else over `samples` pairs drawn with a fixed seed (the
    declared estimate of the spec above 20k nodes; our cut is lower to keep the step cheap: a
    quantile from 200k pairs is off by about 0.2 percentile points)."""
    rows = np.flatnonzero(to_host(mask))
    if rows.size <= exact_limit:
        a_all, b_all = to_host(xa).astype(np.float64)[rows], to_host(xb).astype(np.float64)[rows]
        d = (a_all ** 2).sum(1)[:, None] - 2 * a_all @ b_all.T + (b_all ** 2).sum(1)[None, :]
        if same_view:
            d = d[~np.eye(rows.size, dtype=bool)]
        return float(np.median(d))
    rng = np.random.default_rng(seed)
    a = rows[rng.integers(0, rows.size, samples)]
    b = rows[rng.integers(0, rows.size, samples)]
    if same_view:
        a, b = a[a != b], b[a != b]
    chunk = 8192
    pad = (-a.size) % chunk
    d = _pair_sq_dist(jnp.asarray(xa), jnp.asarray(xb), jnp.asarray(np.r_[a, a[:pad]], jnp.int32),
                      jnp.asarray(np.r_[b, b[:pad]], jnp.int32), chunk=chunk)
    return float(np.median(to_host(d)[:a.size]))
