"""A direct, unblocked NumPy restatement of the official MuSc algorithm (xrli-U/MuSc, b76b93d).

Written from the algorithm, step by step as the official code performs it, with no blocking, no
symmetry and no shortcut: LayerNorm over (C, h, w) per image, zero-padded r x r unfold, adaptive
average pooling of the (C, r, r) patch vector down to C values, L2 normalisation; per image i the
Euclidean distances of its patches to every patch of every other image, the minimum over patches,
the ascending sort over images and the mean of the ranks [k_min, k_max); averaging over r and
layers; bilinear upsampling with align_corners=True; the maximum of the map; RsCIN with explicit
masking and row normalisation. float64 unless asked otherwise.

`official_msm` restates the official `compute_scores_fast` loop (per image: one cdist against all
other images' patches) in NumPy; it is the speed reference of experiments/musc/.
"""
from __future__ import annotations

import math

import numpy as np


def layer_norm_image(t: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """t (h, w, C) -> LayerNorm over all of (C, h, w), no affine (a fresh torch LayerNorm)."""
    mu = t.mean()
    var = ((t - mu) ** 2).mean()
    return (t - mu) / np.sqrt(var + eps)


def lnamd(maps: np.ndarray, r: int, dtype=np.float64) -> np.ndarray:
    """maps (N, h, w, C) -> (N, h*w, C) unit vectors, the official LNAMD for one layer."""
    n, h, w, c = maps.shape
    pad = (r - 1) // 2
    out = np.zeros((n, h * w, c), dtype)
    for i in range(n):
        x = layer_norm_image(maps[i].astype(dtype))
        xp = np.zeros((h + 2 * pad, w + 2 * pad, c), dtype)
        xp[pad:pad + h, pad:pad + w] = x
        for y in range(h):
            for x_ in range(w):
                window = xp[y:y + r, x_:x_ + r]  # (r, r, C)
                flat = window.transpose(2, 0, 1).reshape(-1)  # unfold order: (C, r, r)
                pooled = flat.reshape(c, r * r).mean(axis=1)  # adaptive_avg_pool1d, C*r*r -> C
                out[i, y * w + x_] = pooled
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def rank_window(n: int, frac: float = 0.3, frac_min: float = 0.0, rounding: str = "floor_min1"):
    m = n - 1
    hi = int(frac * m) if rounding != "ceil" else math.ceil(frac * m)
    lo = int(frac_min * m) if rounding != "ceil" else math.ceil(frac_min * m)
    if rounding != "floor":
        hi = max(hi, lo + 1)
    return lo, hi


def msm(z: np.ndarray, frac: float = 0.3, frac_min: float = 0.0, rounding: str = "floor_min1") -> np.ndarray:
    """z (N, P, C) unit rows -> (N, P): per image, all distances to every other image's patches."""
    n, p, c = z.shape
    lo, hi = rank_window(n, frac, frac_min, rounding)
    out = np.zeros((n, p), z.dtype)
    for i in range(n):
        cols = []
        for j in range(n):
            if j == i:
                continue
            d = np.sqrt(((z[i][:, None, :] - z[j][None, :, :]) ** 2).sum(-1))  # (P, P)
            cols.append(d.min(axis=1))
        dist = np.sort(np.stack(cols, axis=1), axis=1)  # (P, N - 1) ascending
        out[i] = dist[:, lo:hi].mean(axis=1)
    return out


def official_msm(z: np.ndarray, frac: float = 0.3, frac_min: float = 0.0, rows=None) -> np.ndarray:
    """The official `compute_scores_fast` loop in NumPy: per image i, cdist (P, (N-1)P) by the
    matmul expansion (as torch.cdist does for large inputs), min over patches, the k_max smallest
    over images, interval mean. z (N, P, C) -> (N, P); `rows` limits the loop to some images."""
    n, p, c = z.shape
    lo, hi = int(frac_min * (n - 1)), max(1, int(frac * (n - 1)))
    sq = (z * z).sum(-1)  # (N, P)
    out = np.zeros((n, p), np.float64)
    for i in range(n) if rows is None else rows:
        ref = np.concatenate([z[:i], z[i + 1:]]).reshape(-1, c)
        sq_ref = np.concatenate([sq[:i], sq[i + 1:]]).reshape(-1)
        d2 = sq[i][:, None] + sq_ref[None, :] - 2.0 * (z[i] @ ref.T)
        d = np.sqrt(np.maximum(d2, 0.0)).reshape(p, n - 1, p).min(axis=-1)  # (P, N - 1)
        part = np.partition(d, hi - 1, axis=1)[:, :hi]
        out[i] = np.sort(part, axis=1)[:, lo:hi].mean(axis=1)
    return out


def upsample_align_corners(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """a (h, w) -> (H, W) bilinear, align_corners=True, one output pixel at a time."""
    h, w = a.shape
    big_h, big_w = size
    out = np.zeros(size, np.float64)
    for y in range(big_h):
        fy = y * (h - 1) / (big_h - 1) if big_h > 1 else 0.0
        y0 = min(int(math.floor(fy)), max(h - 2, 0))
        y1, ty = min(y0 + 1, h - 1), fy - y0
        for x in range(big_w):
            fx = x * (w - 1) / (big_w - 1) if big_w > 1 else 0.0
            x0 = min(int(math.floor(fx)), max(w - 2, 0))
            x1, tx = min(x0 + 1, w - 1), fx - x0
            out[y, x] = ((1 - ty) * (1 - tx) * a[y0, x0] + (1 - ty) * tx * a[y0, x1]
                         + ty * (1 - tx) * a[y1, x0] + ty * tx * a[y1, x1])
    return out


def rscin(scores: np.ndarray, feats: np.ndarray, k_list=(1, 2, 3)) -> np.ndarray:
    """The official RsCIN / MMO: keep the k most similar images per row (self included)."""
    s = (scores - scores.min()) / (scores.max() - scores.min())
    w = feats @ feats.T
    n = w.shape[0]
    results = []
    for k in k_list:
        masked = w.copy()
        for i in range(n):
            drop = np.argsort(w[i])[: n - k]  # the n - k smallest entries are zeroed
            masked[i, drop] = 0.0
        d = np.diag(1.0 / masked.sum(axis=1))
        results.append(d @ masked @ s)
    return np.mean(results, axis=0)


def musc(layer_maps: list[np.ndarray], feats: np.ndarray, degrees=(1, 3, 5), frac: float = 0.3,
         k_list=(1, 2, 3), size: tuple[int, int] = (32, 32), rounding: str = "floor_min1"):
    """Whole MuSc. layer_maps: (N, h_l, w_l, C_l) per layer; feats (N, D) unit rows.

    Returns (final scores (N,), scores before RsCIN (N,), pixel maps (N, H, W)).
    """
    n = layer_maps[0].shape[0]
    maps = np.zeros((n, *size))
    for t in layer_maps:
        h, w = t.shape[1:3]
        a = np.mean([msm(lnamd(t, r), frac, rounding=rounding) for r in degrees], axis=0)
        for i in range(n):
            maps[i] += upsample_align_corners(a[i].reshape(h, w), size) / len(layer_maps)
    raw = maps.reshape(n, -1).max(axis=1)
    final = rscin(raw, np.asarray(feats, np.float64), k_list) if k_list else raw
    return final, raw, maps


def aupro(masks: np.ndarray, maps: np.ndarray, steps: int = 200, max_fpr: float = 0.3) -> float:
    """The official per-region-overlap metric, threshold by threshold (skimage regions)."""
    from skimage import measure
    from sklearn.metrics import auc

    lo, hi = maps.min(), maps.max()
    delta = (hi - lo) / steps
    pros, fprs = [], []
    for th in np.arange(lo, hi, delta)[:steps]:
        binary = maps > th
        pro = []
        for b, m in zip(binary, masks):
            for region in measure.regionprops(measure.label(m)):
                pro.append(b[region.coords[:, 0], region.coords[:, 1]].sum() / region.area)
        inverse = ~masks
        fprs.append(np.logical_and(inverse, binary).sum() / inverse.sum())
        pros.append(np.mean(pro))
    pros, fprs = np.array(pros), np.array(fprs)
    keep = fprs < max_fpr
    f = fprs[keep]
    return auc((f - f.min()) / (f.max() - f.min()), pros[keep])
