"""Multi-view embedding for TMV-HLP (spec label_propagation.md B, step 0 and the view weights).

- `refine_rows`, `mean_of_rows`: each class prototype of a view becomes the mean of its top-T most
  cosine-similar pool rows in that view (the official self-training step, T = 500); the mean is an
  order-free sum, taken after the CCA projection (linear) in `project_nodes`, which embeds the pool
  rows and the prototypes as the graph's nodes.
- `multiview_cca`: C_all w = lambda C_diag w over the concatenated, centred views (1e-4 I added to
  each view's diagonal block of both), solved via the Cholesky factor of C_diag and a symmetric
  eigh (JAX has no generalized eigh; the (d, d) eigenproblem runs on the host in float64, and so do
  the pool moments, so that the device count and the row order move them by ~1e-16 only). View i is
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

from adapt.core import mesh as mesh_lib
from adapt.core.distributed import to_host

CCA_REG = 1e-4
NODE_DIM_MULTIPLE = 16  # node width r padded up to this: a few kept directions more or less, one compile


@functools.partial(jax.jit, static_argnames=("top",))
def refine_rows(view, mask, protos, *, top):
    """view (Np, d), protos (C, d) -> (C, top) int32: the ids of the `top` pool rows most
    cosine-similar to each prototype, best first (padding rows never chosen; equal cosines go to
    the lower row id)."""
    unit = lambda a: a / jnp.maximum(jnp.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    cos = jnp.where(mask[None, :], unit(protos) @ unit(view).T, -jnp.inf)
    return lax.top_k(cos, top)[1]


@functools.partial(jax.jit, static_argnames=("mesh",))
def mean_of_rows(x, rows, count, mesh=None):
    """x (Np, r), rows (C, top) from `refine_rows`, count a traced int <= top -> (C, r): the mean of
    x over the first `count` ids of each list. The sum is `mesh.pool_sum` (correctly rounded, so
    free of the rows' order): prototypes that select the same rows come out bitwise equal, and a
    prototype of one row (count 1) is that row's own bits, whatever the device count or the pool
    order. Unequal rounding there made such exactly tied nodes swap places in the kNN lists.
    mesh: the gathered rows (C x top, small) are kept whole on every device of it."""
    keep = (jnp.arange(rows.shape[1]) < count).astype(x.dtype)
    picked = x[rows.T] * keep[:, None, None]  # (top, C, r)
    if mesh is not None:
        picked = lax.with_sharding_constraint(picked, mesh_lib.replicated(mesh))
    return mesh_lib.pool_sum(picked) / count.astype(x.dtype)


def _moments(views, mask, chunk=8192):
    """Pool mean (d,) and covariance (d, d) of the concatenated views over real rows (ddof 1), in
    float64 on the host (rows gathered, products summed in chunks of `chunk` rows). A float32
    covariance reduced on the devices changes by ~1e-7 with the device count and the row order, and
    the regularised CCA magnifies that ~100-fold where a view direction has little variance (node
    Gram matrices 5e-5 apart at N = 20, README 1e, eighth session); in float64 the change is ~1e-16."""
    rows = np.flatnonzero(to_host(mask))
    parts = [to_host(v)[rows] for v in views]
    n = rows.size
    mean = np.concatenate([p.sum(0, dtype=np.float64) for p in parts]) / n
    cov = np.zeros((mean.size, mean.size))
    for a in range(0, n, chunk):
        xc = np.concatenate([p[a:a + chunk] for p in parts], axis=1).astype(np.float64) - mean
        cov += xc.T @ xc
    return mean, cov / max(n - 1, 1)


def multiview_cca(views, mask, floor=1e-4):
    """views: list of (Np, d_i) arrays (pool rows, padding masked by mask (Np,)).

    Returns (means: list of (d_i,), projections: list of (d_i, r) float32 already scaled by
    lambda^4, then zero columns up to a multiple of NODE_DIM_MULTIPLE; eigenvalues (kept,)
    float64, cov_all, cov_diag (float64, for tests))."""
    dims = [int(v.shape[1]) for v in views]
    mean, cov = _moments(views, mask)
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
    proj = np.pad(proj, ((0, 0), (0, -proj.shape[1] % NODE_DIM_MULTIPLE)))  # zero columns: same distances
    means = [np.asarray(mean[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    projs = [proj[a:b].astype(np.float32) for a, b in zip(cuts[:-1], cuts[1:])]
    return means, projs, lam[keep], cov_all, cov_diag, w[:, keep]


@functools.partial(jax.jit, static_argnames=("pad", "mesh"))
def project_nodes(views, rows, count, means, projs, mask, *, pad, mesh):
    """views: V pool views (Np, d_i); rows: per view the (C, top) lists of `refine_rows` or None;
    means, projs: of `multiview_cca`. Returns the nodes (V, Np + C + pad, r): pool rows, then the
    C prototypes, then `pad` zero rows, projected and row-normalised (padding rows zero).

    A prototype is the mean of its first `count` rows taken after the projection ((mean - m) W =
    mean((v - m) W)), so a prototype that equals a pool node (count 1) or another prototype (the same
    rows) has exactly its bits and ties with it in the kNN lists whatever the rounding; views
    without prototypes take the mean of the others' projected prototypes (the official rule)."""
    pool = [(v - m) @ w for v, m, w in zip(views, means, projs)]
    own = [None if r is None else mean_of_rows(e, r, count, mesh) for e, r in zip(pool, rows)]
    known = [p for p in own if p is not None]
    shared = sum(known) / len(known)
    keep = jnp.concatenate([mask, jnp.ones(known[0].shape[0], bool), jnp.zeros(pad, bool)])
    out = [jnp.concatenate([e, shared if p is None else p, jnp.zeros((pad, e.shape[1]), e.dtype)])
           for e, p in zip(pool, own)]
    unit = [e / jnp.maximum(jnp.linalg.norm(e, axis=1, keepdims=True), 1e-12) for e in out]
    return jnp.stack([e * keep[:, None] for e in unit])


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
