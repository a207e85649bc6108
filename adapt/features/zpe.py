"""ZPE: zero-shot prompt weighting from the unlabeled pool (Allingham et al., "A Simple Zero-shot
Prompt Weighting Technique to Improve Prompt Ensembling in Text-Image Models", ICML 2023).

For template t with class embeddings T_t (C, D) (rows L2-normalised) and pool rows X (N, D):
  logits   l_t = s X T_t^T                                   (N, C)
  centred  l~_t[i, c] = l_t[i, c] - mean_i' l_t[i', c]         (each class's mean logit over the pool)
  score    z_t = mean_i max_c l~_t[i, c]                      (confidence of template t's classifier)
  weights  w = softmax(z) over templates (the paper's weighting), or with `top` = n > 0 uniform 1/n
           on the n highest scores (0 elsewhere; ties: the earlier template).
The paper subtracts each class's mean logit over the pretraining data and, in its fully zero-shot
form, over the test images; we use the pool, the only data we have (transductive, label-free).
The ensemble is then t_c = normalize(sum_t w_t T_t[c]) (adapt.features.class_texts).
"""
from __future__ import annotations

import numpy as np


def template_score(x: np.ndarray, class_emb: np.ndarray, scale: float) -> float:
    """z_t of one template: x (N, D) pool rows, class_emb (C, D) its class embeddings."""
    logits = scale * (np.asarray(x, np.float32) @ np.asarray(class_emb, np.float32).T)
    logits = logits - logits.mean(axis=0, keepdims=True)
    return float(logits.max(axis=1).mean())


def zpe_scores(x: np.ndarray, template_emb: np.ndarray, scale: float) -> np.ndarray:
    """(T,) scores of template_emb (T, C, D), one template at a time (memory O(N C))."""
    return np.array([template_score(x, e, scale) for e in template_emb], np.float64)


def zpe_weights(scores: np.ndarray, top: int = 0) -> np.ndarray:
    """(T,) template weights summing to 1: softmax(scores), or uniform over the `top` best."""
    scores = np.asarray(scores, np.float64)
    if top < 0:
        raise ValueError(f"prompts.zpe_top must be >= 0, got {top}")
    if top:
        keep = np.argsort(-scores, kind="stable")[:top]
        w = np.zeros_like(scores)
        w[keep] = 1.0 / len(keep)
        return w
    e = np.exp(scores - scores.max())
    return e / e.sum()
