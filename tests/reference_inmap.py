"""Plain NumPy restatement of the official InMaP code (idstcv/InMaP, main.py: `sinkhorn`,
`image_opt`), dense, in float64, line by line as the official torch code has it (columns of the
classifier are classes there, so the classifier is (D, C) here too). The parity oracle of
tests/test_inmap.py; no JAX.
"""
from __future__ import annotations

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sinkhorn(m: np.ndarray, tau_t: float = 0.01, gamma: float = 0.0, iters: int = 20) -> np.ndarray:
    """M (N, C) logits -> balanced pseudo-labels (N, C), each row summing to 1."""
    row, col = m.shape
    p = softmax(m / tau_t)
    p /= row
    if gamma > 0:
        q = np.sum(p, axis=0, keepdims=True) ** gamma
        q /= np.sum(q)
    for _ in range(iters):
        p /= np.sum(p, axis=0, keepdims=True)
        if gamma > 0:
            p *= q
        else:
            p /= col
        p /= np.sum(p, axis=1, keepdims=True)
        p /= row
    return p * row


def image_opt(feat, init_classifier, plabel, lr=10.0, iters=2000, tau_i=0.04, alpha=0.6):
    """feat (N, D), init_classifier (D, C), plabel (N, C) -> (classifier (D, C), lr at the end)."""
    ins, _ = feat.shape
    plabel = plabel.copy()
    val, idx = plabel.max(axis=1), plabel.argmax(axis=1)
    mask = val > alpha
    plabel[mask, :] = 0
    plabel[mask, idx[mask]] = 1
    base = feat.T @ plabel
    classifier = init_classifier.copy()
    pre_norm = float("inf")
    for _ in range(iters):
        prob = softmax(feat @ classifier / tau_i)
        grad = feat.T @ prob - base
        temp = np.linalg.norm(grad)
        if temp > pre_norm:
            lr /= 2.0
        pre_norm = temp
        classifier -= (lr / (ins * tau_i)) * grad
        classifier /= np.maximum(np.linalg.norm(classifier, axis=0, keepdims=True), 1e-12)
    return classifier, lr


def inmap(feat, text, tau_t=0.01, tau_i=0.04, lr=10.0, iters=2000, sinkhorn_iters=20, alpha=0.6,
          gamma=0.0):
    """feat (N, D) unit rows, text (C, D) unit rows -> (proxies (C, D), final lr): main.py's
    "vision proxy with Sinkhorn distance" path."""
    feat, text = np.asarray(feat, np.float64), np.asarray(text, np.float64)
    logits_t = feat @ text.T
    plabel = sinkhorn(logits_t, tau_t, gamma, sinkhorn_iters)
    classifier, lr = image_opt(feat, text.T, plabel, lr, iters, tau_i, alpha)
    return classifier.T, lr
