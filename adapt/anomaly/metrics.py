"""Anomaly metrics (host-side NumPy / scikit-learn) and the pooled-feature kNN baseline.

Image level: AUROC, AP, max-F1 over the labelled rows (label 1 = anomalous, 0 = normal, -1 unknown).
Pixel level, when masks exist: AUROC, AP, max-F1 and AUPRO (200 thresholds between the map's min
and max, regions = 8-connected components of the masks, FPR < 0.3 kept and rescaled to [0, 1], as
in the official MuSc metrics).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score


def _max_f1(y: np.ndarray, s: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(y, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = 2 * precision * recall / (precision + recall)
    return float(np.max(f1[np.isfinite(f1)]))


def binary_metrics(y: np.ndarray, s: np.ndarray, prefix: str) -> dict:
    """{prefix_auroc, prefix_ap, prefix_max_f1} on rows with y >= 0; None when one class is missing."""
    y, s = np.asarray(y), np.asarray(s, np.float64)
    keep = y >= 0
    y, s = y[keep], s[keep]
    if y.size == 0 or y.min() == y.max():
        return {f"{prefix}_auroc": None, f"{prefix}_ap": None, f"{prefix}_max_f1": None}
    return {f"{prefix}_auroc": float(roc_auc_score(y, s)),
            f"{prefix}_ap": float(average_precision_score(y, s)),
            f"{prefix}_max_f1": _max_f1(y, s)}


def image_auroc(y: np.ndarray, s: np.ndarray) -> float | None:
    return binary_metrics(y, s, "image")["image_auroc"]


def aupro(masks: np.ndarray, maps: np.ndarray, steps: int = 200, max_fpr: float = 0.3) -> float | None:
    """masks (N, H, W) bool, maps (N, H, W) -> area under the per-region-overlap curve."""
    masks, maps = np.asarray(masks, bool), np.asarray(maps, np.float64)
    lo, hi = maps.min(), maps.max()
    if not masks.any() or masks.all() or hi <= lo:
        return None
    ths = lo + (hi - lo) / steps * np.arange(steps)
    normal = np.sort(maps[~masks])
    fpr = 1.0 - np.searchsorted(normal, ths, side="right") / normal.size  # share of normal > th
    pros = []
    structure = np.ones((3, 3), bool)
    for m, a in zip(masks, maps):
        regions, count = ndimage.label(m, structure=structure)
        for k in range(1, count + 1):
            v = np.sort(a[regions == k])
            pros.append(1.0 - np.searchsorted(v, ths, side="right") / v.size)
    pro = np.mean(pros, axis=0)
    keep = fpr < max_fpr
    if keep.sum() < 2:
        return None
    f = fpr[keep]
    if f.max() == f.min():
        return None
    return float(auc((f - f.min()) / (f.max() - f.min()), pro[keep]))


def pixel_metrics(masks: np.ndarray, maps: np.ndarray) -> dict:
    """Pixel AUROC / AP / max-F1 and AUPRO of maps (N, H, W) against masks (N, H, W)."""
    out = binary_metrics(np.asarray(masks, np.int8).ravel(), np.asarray(maps).ravel(), "pixel")
    out["pixel_aupro"] = aupro(masks, maps)
    return out


def knn_baseline(embeddings: np.ndarray, k: int = 5) -> np.ndarray:
    """(N, D) pooled features -> (N,): mean Euclidean distance of each image to its k nearest other
    images of the pool (the label-free baseline MuSc is compared with)."""
    x = np.asarray(embeddings, np.float64)
    sq = (x * x).sum(1)
    d2 = np.maximum(0.0, sq[:, None] + sq[None, :] - 2.0 * x @ x.T)
    np.fill_diagonal(d2, np.inf)
    k = min(k, x.shape[0] - 1)
    return np.sqrt(np.sort(d2, axis=1)[:, :k]).mean(axis=1)
