"""Plain NumPy/SciPy restatements of the official graph algorithms (specs laplacian.md and
label_propagation.md), written from the specs and read against the official code, in float64.

They are the parity oracles of tests/test_zlap.py, test_laplacian.py and test_knn.py and the "reference" side of
experiments/graph_methods/benchmark.py, so they stay plain: loops and scipy.sparse as the official
code has them, no JAX. TMV-HLP's dense restatement is tests/reference_hypergraph.py.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg


def knn_numpy(keys: np.ndarray, queries: np.ndarray, k: int, chunk: int = 2048):
    """Exact inner-product kNN (the faiss.knn / IndexFlatIP stand-in): (indices, sims), each
    (Nq, k), sorted by decreasing similarity; chunked over queries so memory stays chunk x Nk."""
    idx_out = np.empty((queries.shape[0], k), np.int64)
    sim_out = np.empty((queries.shape[0], k), keys.dtype)
    for start in range(0, queries.shape[0], chunk):
        s = queries[start:start + chunk] @ keys.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        ps = np.take_along_axis(s, part, axis=1)
        order = np.argsort(-ps, axis=1, kind="stable")
        idx_out[start:start + chunk] = np.take_along_axis(part, order, axis=1)
        sim_out[start:start + chunk] = np.take_along_axis(ps, order, axis=1)
    return idx_out, sim_out


def knn_reference(queries: np.ndarray, keys: np.ndarray, k: int, exclude_self: bool = False):
    """Dense inner-product kNN in float64: (values (Nq, k), indices (Nq, k)), ties to the lower
    index (the oracle of adapt.graph.knn)."""
    s = np.asarray(queries, np.float64) @ np.asarray(keys, np.float64).T
    if exclude_self:
        np.fill_diagonal(s, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), order.astype(np.int32)


# ------------------------------------------------------------------------------------------ ZLaP
def zlap_graph(features, clf, k):
    """create_separate_graph: rows [C class rows (no edges, -1); N image rows], columns
    [k image neighbours incl. self (offset by C); min(k, C) classes]."""
    c = clf.shape[0]
    knn_im, sim_im = knn_numpy(features, features, min(k, features.shape[0]))
    knn_tx, sim_tx = knn_numpy(clf, features, min(k, c))
    knn = np.concatenate([knn_im + c, knn_tx], axis=1)
    sim = np.concatenate([sim_im, sim_tx], axis=1).astype(np.float64)
    knn = np.concatenate([-np.ones((c, knn.shape[1]), knn.dtype), knn])
    sim = np.concatenate([np.zeros((c, sim.shape[1])), sim])
    return knn, sim


def zlap_weights(knn, sim, c, gamma, scale_sim):
    sim = sim.copy()
    lo = hi = None
    if scale_sim:
        lo, hi = sim[knn != -1].min(), sim[knn != -1].max()
        sim = (sim - lo) / (hi - lo)
    sim[sim < 0] = 0
    to_class = (knn < c) & (knn != -1)
    sim[to_class] = sim[to_class] ** gamma
    return sim, lo, hi


def zlap_laplacian(knn, sim, alpha):
    """knn2laplacian: W = A + A^T, diagonal removed, D^-1/2 W D^-1/2 (zero degree -> 1)."""
    n = knn.shape[0]
    rows = np.repeat(np.arange(n), knn.shape[1])
    valid = knn.ravel() != -1
    a = sparse.csr_matrix((sim.ravel()[valid], (rows[valid], knn.ravel()[valid])), shape=(n, n))
    w = a + a.T
    w = w - sparse.diags(w.diagonal())
    d = np.asarray(w.sum(axis=1)).ravel()
    d[d == 0] = 1
    dm = sparse.diags(1.0 / np.sqrt(d))
    return sparse.eye(n) - alpha * (dm @ w @ dm), w


def zlap_linv(features, clf, k=5, gamma=5.0, alpha=0.3, scale_sim=False, tol=1e-6, maxiter=50):
    """get_Linv: per-class CG on L z = e_c. Returns (Z_all (C + N, C), lo, hi)."""
    c = clf.shape[0]
    knn, sim = zlap_graph(features, clf, k)
    sim, lo, hi = zlap_weights(knn, sim, c, gamma, scale_sim)
    lap, _ = zlap_laplacian(knn, sim, alpha)
    z = np.zeros((lap.shape[0], c))
    for cls in range(c):
        e = np.zeros(lap.shape[0])
        e[cls] = 1
        z[:, cls] = sparse_linalg.cg(lap, e, rtol=tol, maxiter=maxiter)[0]
    return z, lo, hi


def zlap_transductive(features, clf, **kw):
    """do_transductive_lp: scores (N, C) of the pool images."""
    z, _, _ = zlap_linv(features, clf, **kw)
    return z[clf.shape[0]:]


def zlap_inductive(unlabeled, clf, test, k=5, gamma=5.0, alpha=0.3, scale_sim=False, sparse_top1=False):
    """do_inductive_lp (one solve per test point) or do_sparse_inductive_lp (top-1 of Z_all)."""
    c = clf.shape[0]
    z, lo, hi = zlap_linv(unlabeled, clf, k=k, gamma=gamma, alpha=alpha, scale_sim=scale_sim,
                          tol=1e-10, maxiter=1000)
    knn_im, sim_im = knn_numpy(unlabeled, test, min(k, unlabeled.shape[0]))
    knn_tx, sim_tx = knn_numpy(clf, test, min(k, c))
    sim_im, sim_tx = sim_im.astype(np.float64), sim_tx.astype(np.float64)
    if scale_sim:  # ours scales then clips, as the transductive graph does
        sim_im, sim_tx = (sim_im - lo) / (hi - lo), (sim_tx - lo) / (hi - lo)
    sim_im, sim_tx = np.maximum(sim_im, 0), np.maximum(sim_tx, 0) ** gamma
    if sparse_top1:
        keep = z == z.max(axis=1, keepdims=True)
        z = np.where(keep, z, 0)
    knn = np.concatenate([knn_im + c, knn_tx], axis=1)
    sim = np.concatenate([sim_im, sim_tx], axis=1)
    return np.einsum("mj,mjc->mc", sim, z[knn])


# ------------------------------------------------------------------------------- LaplacianShot
def softmax_rows(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def lshot_affinity(x, knn):
    """create_affinity: sklearn kNN (Euclidean, the point itself first), binary, directed."""
    from sklearn.neighbors import NearestNeighbors

    n = x.shape[0]
    _, ind = NearestNeighbors(n_neighbors=knn).fit(x).kneighbors(x)
    rows = np.repeat(np.arange(n), knn - 1)
    return sparse.csc_matrix((np.ones(n * (knn - 1)), (rows, ind[:, 1:].ravel())), shape=(n, n))


def lshot_energy(y, unary, kernel, lam):
    """entropy_energy (E_code)."""
    pairwise = kernel.dot(y)
    return float((y * np.log(np.maximum(y, 1e-20)) + unary * y - lam * pairwise * y).sum())


def lshot_bound_update(unary, kernel, lam, iters=20, tol=1e-6, y0=None, clamp=None):
    """bound_update: returns (labels, Y, energy list). clamp = (rows, one-hot) held after each step."""
    old_e = float("inf")
    y = softmax_rows(-unary) if y0 is None else y0
    energies = []
    for i in range(iters):
        y = softmax_rows(-unary + lam * kernel.dot(y))
        if clamp is not None:
            y[clamp[0]] = clamp[1]
        e = lshot_energy(y, unary, kernel, lam)
        energies.append(e)
        if i > 1 and abs(e - old_e) <= tol * abs(old_e):
            break
        old_e = e
    return y.argmax(1), y, energies


def sq_dist(x, c):
    return (x ** 2).sum(1)[:, None] - 2 * x @ c.T + (c ** 2).sum(1)[None, :]


def rectify(support, queries, protos, temperature=10.0):
    """BD-CSPN proto_rect on X' = [S; X] (queries already shifted); empty class keeps its prototype."""
    xs = np.concatenate([support, queries])
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    cos = unit(xs) @ unit(protos).T
    w = softmax_rows(temperature * cos)
    pick = cos.argmax(1)
    out = protos.copy()
    for k in range(protos.shape[0]):
        rows = pick == k
        if rows.any():
            out[k] = (w[rows, k:k + 1] * xs[rows]).sum(0) / rows.sum()
    return out


# ------------------------------------------------------------------------------------------- SLK
def slk_sigma2(x, kernel, normalizer):
    d = sq_dist(x, x)
    return float(kernel.multiply(d).sum() / normalizer)


def mean_shift_one(x, c0, s2, tol=1e-5, maxit=1000):
    """MS: Gaussian mean-shift of one prototype over its members x."""
    c1 = c0
    for _ in range(maxit):
        w = np.exp(-sq_dist(c0[None], x)[0] / (2 * s2))
        c1 = w @ x / w.sum()
        if np.max(np.abs(c1 - c0)) < tol * np.max(np.abs(c0)):
            break
        c0 = c1.copy()
    return c1


def slk(x, kernel, protos, support_labels, lam, method="kmeans", lap=True, sigma2=1.0, clamp=True,
        max_outer=100, tol=1e-4, bound_iters=600, bound_tol=1e-7):
    """SLK as the spec restates it (soft K-means means with the Laplacian after step 0; supports
    first and held at their labels; empty-cluster guard). Returns (labels, prototypes, energies)."""
    k = protos.shape[0]
    m = len(support_labels)
    lam = lam if lap else 0.0
    labels = sq_dist(x, protos).argmin(1)
    labels[:m] = support_labels
    z = np.eye(k)[labels]
    sup_onehot = np.eye(k)[np.asarray(support_labels, int)]
    old_e, energies = float("inf"), []
    for i in range(max_outer):
        if method == "kmeans":
            if lap and i > 0:
                new_protos = (z.T @ x) / z.sum(0)[:, None]
            else:
                new_protos = protos.copy()
                for c in range(k):
                    if (labels == c).any():
                        new_protos[c] = x[labels == c].mean(0)
            unary = sq_dist(x, new_protos)
        else:
            new_protos = np.stack([mean_shift_one(x[labels == c], protos[c], sigma2) for c in range(k)])
            unary = -np.exp(-sq_dist(x, new_protos) / (2 * sigma2))
        if lap:
            y0 = softmax_rows(-unary)
            y0[:m] = sup_onehot
            new_labels, new_z, _ = lshot_bound_update(unary, kernel, lam, bound_iters, bound_tol, y0=y0,
                                                      clamp=(np.arange(m), sup_onehot) if clamp else None)
        else:
            new_labels = unary.argmin(1)
            new_labels[:m] = support_labels
            new_z = np.eye(k)[new_labels]
        e = float((new_z * unary).sum() - lam * (new_z * kernel.dot(new_z)).sum())
        energies.append(e)
        if len(np.unique(new_labels)) < k:  # empty-cluster guard: keep the previous state
            break
        protos, labels, z = new_protos, new_labels, new_z
        if i > 1 and abs(e - old_e) <= tol * abs(old_e):
            break
        old_e = e
    return labels, protos, energies


def centred_rectified(x, t, scale):
    """CL2N pool and the rectified prototypes m_c = normalize(sum_i softmax_c(s x_i . t_c) x_i), float64."""
    xc = np.asarray(x, np.float64) - np.asarray(x, np.float64).mean(0)
    xc /= np.linalg.norm(xc, axis=1, keepdims=True)
    s = scale * xc @ np.asarray(t, np.float64).T
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    m = p.T @ xc
    return xc, m / np.linalg.norm(m, axis=1, keepdims=True)
