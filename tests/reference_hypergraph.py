"""Dense NumPy/SciPy restatement of TMV-HLP as spec label_propagation.md B states it (float64,
N' x N' matrices, an O(N'^3) solve, as the official Matlab code), with our deliberate differences
(one propagation, memberships clipped at 0, the same CCA floor). The parity oracle of
tests/test_hypergraph.py and the reference side of experiments/graph_methods/bench_one.py.
"""
from __future__ import annotations

import numpy as np

def _unit_rows(a):
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _keep_top(values, k, n_pool):
    """Each row keeps its top k after skipping rank 1 (prototype rows, from n_pool on, keep 9k),
    less the pool rows (columns < n_pool) equal to rank 1's value or to the first left-out value
    (ours: equal pool rows kept or dropped together, free of the pool order; without ties the
    official list)."""
    kept = np.zeros_like(values)
    order = np.argsort(-values, axis=1, kind="stable")
    for r in range(values.shape[0]):
        m = k if r < n_pool else 9 * k
        ranked = values[r, order[r]]
        cols = order[r, 1:m + 1]
        out = ranked[m + 1] if m + 1 < ranked.size else -np.inf
        tied = (values[r, cols] == ranked[0]) | (values[r, cols] == out)
        cols = cols[~(tied & (cols < n_pool))]
        kept[r, cols] = values[r, cols]
    return kept


def zscore_rows_then_cols(g):
    g = (g - g.mean(1, keepdims=True)) / g.std(1, ddof=1, keepdims=True)
    return (g - g.mean(0, keepdims=True)) / g.std(0, ddof=1, keepdims=True)


def cca(views, floor=0.0, reg=1e-4):
    """Multi-view CCA by scipy's generalized eigh: (means, per-view projections scaled by lambda^4,
    eigenvalues), directions with lambda^4 < floor * max dropped."""
    import scipy.linalg

    dims = [v.shape[1] for v in views]
    x = np.concatenate(views, axis=1)
    cov_all = np.cov(x, rowvar=False)
    cov_diag = np.zeros_like(cov_all)
    cuts = np.cumsum([0] + dims)
    for a, b in zip(cuts[:-1], cuts[1:]):
        cov_all[a:b, a:b] += reg * np.eye(b - a)
        cov_diag[a:b, a:b] = cov_all[a:b, a:b]
    lam, w = scipy.linalg.eigh(cov_all, cov_diag)
    lam, w = lam[::-1], w[:, ::-1]
    weight = np.maximum(lam, 0) ** 4
    keep = weight >= floor * weight.max()
    proj = w[:, keep] * weight[keep]
    means = x.mean(0)
    return ([means[a:b] for a, b in zip(cuts[:-1], cuts[1:])],
            [proj[a:b] for a, b in zip(cuts[:-1], cuts[1:])], lam[keep])


def tmv_hlp(views, protos, k=10, alpha=0.35, refine_top=500, cca_floor=0.0, priors=None,
            hyper_share=0.75, official_delta=False, propagations=1):
    """Dense TMV-HLP as the spec states it, with our deliberate differences (a fixed number of
    propagations, the last kept; memberships clipped at 0; the same CCA floor). Returns F (N, C)
    and the dense pieces."""
    views = [np.asarray(v, np.float64) for v in views]
    n = views[0].shape[0]
    refined = []
    for v, p in zip(views, protos):
        if p is None:
            refined.append(None)
            continue
        cos = _unit_rows(np.asarray(p, np.float64)) @ _unit_rows(v).T
        # T = min(refine_top, N // C): never more than one class's share (issue 19)
        top = np.argsort(-cos, axis=1, kind="stable")[:, :min(refine_top, max(1, n // len(p)))]
        refined.append(v[top].mean(1))
    means, projs, _ = cca(views, cca_floor)
    emb = [(v - m) @ w for v, m, w in zip(views, means, projs)]
    pemb = [None if p is None else (p - m) @ w for p, m, w in zip(refined, means, projs)]
    shared = np.mean([p for p in pemb if p is not None], axis=0)
    nodes = [_unit_rows(np.concatenate([e, shared if p is None else p])) for e, p in zip(emb, pemb)]
    n_all, c = nodes[0].shape[0], shared.shape[0]
    sq = lambda a, b: (a ** 2).sum(1)[:, None] - 2 * a @ b.T + (b ** 2).sum(1)[None, :]  # noqa: E731
    off = ~np.eye(n_all, dtype=bool)
    ks = []
    for x in nodes:
        d = sq(x, x)
        kept = _keep_top(np.exp(-d / np.median(d[off])), k, n)
        ks.append((kept + kept.T) / 2)
    v_count = len(nodes)
    sim = np.zeros((v_count, v_count))
    for i in range(v_count):
        for j in range(v_count):
            if i != j:
                t = 1 / np.maximum(np.linalg.norm(nodes[i] - nodes[j], axis=1), 1e-12)
                sim[i, j] = t[t > 1 / np.sqrt(2)].sum()
    deg = sim.sum(1)
    pg = deg / deg.sum()
    prior = np.ones(v_count) if priors is None else np.asarray(priors, np.float64)
    cw = sum(prior[i] * pg[i] * ks[i] for i in range(v_count))
    hs, deltas = [], []
    for i in range(v_count):
        for j in range(v_count):
            if i == j:
                continue
            d = sq(nodes[i], nodes[j])
            g = _keep_top(zscore_rows_then_cols(np.exp(-d / np.median(d))), k, n)
            h_raw = (g + g.T) / 2
            h = (np.maximum(g, 0) + np.maximum(g, 0).T) / 2
            count = (h > 0).sum(1)
            total = (h_raw if official_delta else h).sum(1)
            deltas.append(np.where(count > 0, total / np.maximum(count, 1), 0.0))
            hs.append(h)
    dv = sum((dl[:, None] * h ** 2).sum(0) for dl, h in zip(deltas, hs))
    dv_m = np.where(dv > 0, 1 / np.sqrt(np.where(dv > 0, dv, 1)), 1.0)
    s_hyp = dv_m[:, None] * sum(h @ (dl[:, None] * h) for dl, h in zip(deltas, hs)) * dv_m[None, :]
    w = (1 - hyper_share) * cw + hyper_share * s_hyp
    dw = w.sum(1)
    dm = 1 / np.sqrt(np.where(dw > 0, dw, 1))
    s = dm[:, None] * w * dm[None, :]
    y = np.zeros((n_all, c))
    y[n:] = 2 * np.eye(c) - 1
    f = y
    for _ in range(propagations):  # the official loop: F <- (1 - alpha)(I - alpha S)^-1 F
        f = (1 - alpha) * np.linalg.solve(np.eye(n_all) - alpha * s, f)
    return f[:n], {"S": s, "W": w, "S_hyp": s_hyp, "cW": cw, "pg": pg, "nodes": nodes}
