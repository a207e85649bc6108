"""Plain NumPy/SciPy restatement of S3A's vote / realign and phrase-realign steps (spec s3a.md),
written from the spec with loops, as the oracle for tests/test_s3a.py."""
import numpy as np
from scipy.optimize import linear_sum_assignment


def votes(x, t):
    """v(x) = argmax over the vocabulary of x . t_v (first index on ties)."""
    return np.argmax(np.asarray(x, np.float64) @ np.asarray(t, np.float64).T, axis=1)


def vote_matrix(partition, v, k, n_words):
    m = np.zeros((k, n_words))
    for c, w in zip(partition, v):
        m[c, w] += 1
    for c in range(k):
        if m[c].sum() > 0:
            m[c] /= m[c].sum()
    return m


def hungarian(scores):
    rows, cols = linear_sum_assignment(scores.max() - scores)
    out = np.empty(scores.shape[0], np.int64)
    out[rows] = cols
    return out


def realign(x, t, words):
    return np.argmax(np.asarray(x, np.float64) @ np.asarray(t, np.float64)[words].T, axis=1)


def vote_realign(partition, x, t, k, rounds=3):
    """-> (partition, words (K,), structural labels)."""
    v = votes(x, t)
    partition = np.asarray(partition)
    for _ in range(rounds):
        words = hungarian(vote_matrix(partition, v, k, len(t)))
        partition = realign(x, t, words)
    return partition, words, words[partition]


def phrase_realign(partition, x, t, k, phrase_emb, owner, word, weight, top=3):
    """Hits of each image's top-`top` phrase entries of its own cluster -> S (K, |V|) ->
    assignment -> realign. Returns (partition, words, S)."""
    x = np.asarray(x, np.float64)
    sizes = np.bincount(partition, minlength=k)
    hits = np.zeros(len(owner))
    for i, c in enumerate(partition):
        mine = np.flatnonzero(owner == c)
        if len(mine) == 0:
            continue
        sims = x[i] @ np.asarray(phrase_emb, np.float64)[mine].T
        order = np.argsort(-sims, kind="stable")[:top]
        hits[mine[order]] += 1
    s = np.zeros((k, len(t)))
    for p in range(len(owner)):
        s[owner[p], word[p]] += weight[p] * hits[p] / sizes[owner[p]]
    v = votes(x, t)
    m = vote_matrix(partition, v, k, len(t))
    for c in range(k):
        if not s[c].any():
            s[c] = 1e-6 * m[c]
    words = hungarian(s)
    return realign(x, t, words), words, s
