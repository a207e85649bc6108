"""NumPy restatements of the official TransCLIP-ZS and StatA solvers, dense (O(N^2) memory), in
float64, written from MaxZanella/transduction-for-vlms (TransCLIP_solver/TransCLIP.py,
TransCLIP_utils.py: init_z, init_mu, init_sigma, build_affinity_matrix, Gaussian.forward, update_z,
update_mu, update_sigma) and MaxZanella/StatA (solvers/StatA.py: StatA_solver, init_cov, update_z,
update_beta, update_mu, update_cov). Line for line, with the (N, K, D) differences the official
code forms, so it is independent of the matmul expansion in adapt/graph/gaussian.py.

One knowing change, the declared deviation: the kNN graph drops the row itself by index instead of
the official `topk(k + 1)[:, 1:]` (which keeps the row and drops a duplicate when they tie); ties
among the remaining rows go to the lower index, as torch.topk does on CPU.
"""
from __future__ import annotations

import numpy as np

CHUNK = 2500  # the official chunk size of its (N, K, D) loops


def softmax(a):
    a = a - a.max(axis=1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=1, keepdims=True)


def affinity(x, n_neighbors):
    """Dense W (N, N): W[i, j] = x_i . x_j for the n_neighbors most similar j != i."""
    aff = x @ x.T
    n = x.shape[0]
    ranked = np.where(np.eye(n, dtype=bool), -np.inf, aff)
    knn = np.argsort(-ranked, axis=1, kind="stable")[:, :n_neighbors]
    w = np.zeros_like(aff)
    rows = np.repeat(np.arange(n), n_neighbors)
    w[rows, knn.ravel()] = aff[rows, knn.ravel()]
    return w


def gaussian_loglik(x, mu, var):
    """Gaussian.forward(no_exp=True): -1/2 sum_d (x - mu)^2 / var; var (D,) or (K, D)."""
    var = np.broadcast_to(var, mu.shape)
    return -0.5 * (((x[:, None, :] - mu[None]) ** 2) / var[None]).sum(axis=2)


def update_z(loglik, y_hat, z, w, lam_y, lam_l, n_neighbors, log_det=None, max_iter=5):
    for _ in range(max_iter):
        inter = loglik + lam_l * (50 / (n_neighbors * 2)) * (w.T @ z + w @ z)
        if log_det is not None:  # StatA: sigma.log().sum(dim=1)
            inter = inter - 0.5 * log_det[None, :]
        inter = inter - inter.max(axis=1, keepdims=True)
        inter = (y_hat ** lam_y) * np.exp(inter / 50)
        z = inter / inter.sum(axis=1, keepdims=True)
    return z


def transclip_init_mu(x, z, n_most_confident=8):
    k = z.shape[1]
    mu = np.zeros((k, x.shape[1]))
    for c in range(k):
        top = np.argsort(-z[:, c], kind="stable")[:n_most_confident]
        idx = np.sort(top)  # mask[:, c].nonzero(): ascending row order
        mu[c] = (x[idx] * z[idx, c][:, None])[:n_most_confident].mean(axis=0)
    return mu / np.linalg.norm(mu, axis=1, keepdims=True)


def transclip(x, t, *, scale=100.0, n_neighbors=3, max_iter=10):
    """Zero-shot TransCLIP: x (N, D) unit rows, t (K, D) -> z (N, K)."""
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    n, d = x.shape
    logits = scale * x @ t.T
    y_hat, z = softmax(logits), softmax(logits)
    mu = transclip_init_mu(x, z)
    std = np.full(d, 1.0 / d)
    w = affinity(x, n_neighbors)
    for k in range(max_iter + 1):
        z = update_z(gaussian_loglik(x, mu, std), y_hat, z, w, 1, 1, n_neighbors)
        if k == max_iter:
            break
        weights = z / n
        new_mu = (weights.T @ x) / (z.sum(axis=0) / n)[:, None]
        mu = new_mu / np.linalg.norm(new_mu, axis=1, keepdims=True)
        std = 0
        for s in range(0, n, CHUNK):
            zc, xc = z[s:s + CHUNK], x[s:s + CHUNK]
            std = std + (1 / n) * np.einsum("ij,ijk->k", zc, (xc[:, None, :] - mu[None]) ** 2)
        std = std / ((1 / n) * z.sum())
    return z


def stata_init_cov(x, t, z):
    n = z.shape[0]
    cov = 0
    for s in range(0, n, CHUNK):
        zc, xc = z[s:s + CHUNK], x[s:s + CHUNK]
        cov = cov + np.einsum("ij,ijk->k", zc, (xc[:, None, :] - t[None]) ** 2)
        cov = cov / n  # inside the loop, as in the official code
    return cov


def stata(x, t, *, scale=100.0, n_neighbors=3, max_iter=10, alpha=1.0, lam_y=1.0, lam_l=1.0):
    """StatA batch solver with hard beta: x (N, D) unit rows, t (K, D) -> z (N, K)."""
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    y_hat = softmax(scale * x @ t.T)
    z = y_hat.copy()
    mu = t.copy()
    init_cov = np.repeat(stata_init_cov(x, t, z)[None], t.shape[0], axis=0)
    cov = init_cov
    w = affinity(x, n_neighbors)
    for k in range(max_iter + 1):
        z = update_z(gaussian_loglik(x, mu, cov), y_hat, z, w, lam_y, lam_l, n_neighbors,
                     log_det=np.log(cov).sum(axis=1))
        if k == max_iter:
            break
        counts = np.bincount(np.argmax(z, axis=1), minlength=z.shape[1])
        beta = (counts / (alpha + counts + 1e-12))[:, None]
        m = (z.T @ x) / z.sum(axis=0)[:, None]
        m = m / np.linalg.norm(m, axis=1, keepdims=True)
        m = beta * m + (1 - beta) * t
        mu = m / np.linalg.norm(m, axis=1, keepdims=True)
        c = ((x[:, None, :] - mu[None]) ** 2 * z[:, :, None]).sum(axis=0) / z.sum(axis=0)[:, None]
        cov = beta * c + (1 - beta) * (init_cov + (t - mu) ** 2)
    return z


def transclip_fewshot(x, t, labels, *, gamma=0.002, lam=0.5, scale=100.0, n_neighbors=3, max_iter=10):
    """TransCLIP few-shot (TransCLIP_utils.py update_z, update_mu, update_sigma, init_mu, one gamma):
    x (N, D) unit pool rows, labels (N,) with -1 on queries -> z (N, K), supports one-hot.

    Our declared reformulation of the official stacking: the supports are pool rows, so queries and
    supports are stacked [queries; supports] in z AND in W (one kNN graph over the whole pool, self
    excluded by index); the official stacks W as [supports; queries] against z [queries; supports]."""
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    q, s = np.flatnonzero(labels < 0), np.flatnonzero(labels >= 0)
    order = np.concatenate([q, s])
    xq, xs, nq, ns = x[q], x[s], len(q), len(s)
    k, d = t.shape[0], x.shape[1]
    onehot = np.eye(k)[labels[s]]
    y_hat = softmax(scale * xq @ t.T)
    z = y_hat.copy()
    mu = onehot.T @ xs  # init_mu: the sum of each class's shots
    mu = mu / np.linalg.norm(mu, axis=1, keepdims=True)
    std = np.full(d, 1.0 / d)
    w = affinity(x[order], n_neighbors)
    for it in range(max_iter + 1):
        loglik = gaussian_loglik(xq, mu, std)
        zz = np.concatenate([z, onehot])
        for _ in range(5):  # update_z
            inter = loglik + (50 / (n_neighbors * 2)) * (w.T @ zz + w @ zz)[:nq]
            inter = inter - inter.max(axis=1, keepdims=True)
            inter = (y_hat ** lam) * np.exp(inter / 50)
            zz[:nq] = inter / inter.sum(axis=1, keepdims=True)
        z = zz[:nq]
        if it == max_iter:
            break
        new_mu = (z / nq).T @ xq + (gamma * 50 / ns) * onehot.T @ xs  # update_mu
        new_mu = new_mu / ((z / nq).sum(axis=0) + gamma * 50 / ns * onehot.sum(axis=0))[:, None]
        mu = new_mu / np.linalg.norm(new_mu, axis=1, keepdims=True)
        std = (1 / nq) * np.einsum("ij,ijk->k", z, (xq[:, None, :] - mu[None]) ** 2)  # update_sigma
        std = std + (gamma * 50 / ns) * np.einsum("ij,ijk->k", onehot, (xs[:, None, :] - mu[None]) ** 2)
        std = std / ((1 / nq) * z.sum() + gamma * 50 / ns * onehot.sum())
    out = np.zeros((len(x), k))
    out[q], out[s] = z, onehot
    return out
