"""Vote and realign: align the clusters of a partition one-to-one with vocabulary words (S3A CVPR).

With features f (Np, d) (rows sharded along `pool`, padding masked) and word weights W (|V|, d):
  votes      v(x) = argmax_v f(x).W_v over the whole vocabulary (streamed over blocks of words with a
             running max: memory O(N), never the (N, |V|) matrix; ties to the lower word index);
  vote matrix M[k, v] = #{x in cluster k : v(x) = v} / |k|   (a row of zeros for an empty cluster);
  assignment a = linear_sum_assignment(max M - M): one distinct word per cluster (scipy, on the host);
  realign    every row moves to argmax_k f(x).W_{a(k)} over the K assigned words only (ties to the
             lower cluster id): the new partition.
`vote_realign` runs `rounds` of (vote matrix, assignment, realign). The votes do not depend on the
partition, so they are computed once. The structural label of a row is s(x) = a(partition(x)), a
vocabulary index. `move=False` (the "keep" realign rule of adapt.realistic.cvpr, not in the paper)
names the clusters only: one round of vote matrix and assignment, the partition unchanged.

Hungarian on a K x |V| matrix: the words no row voted for are identical all-zero columns, so
`shrink=True` keeps the voted columns plus the first K unvoted ones; the optimum value is the same,
only ties may resolve differently (the exact tests use the full matrix).

Phrase realign (the Prompt step's use, adapt.realistic.phrases builds the entries): for the rows of cluster k,
the `top` most similar phrase entries of that cluster are hits; the score of candidate word v is
S[k, v] = sum over its entries of weight x hits / |k| (our normalisation by cluster size keeps rows
comparable, like M). A cluster without any phrase score falls back to 1e-6 x its vote row M[k].
Then the assignment on S, and every row moves to its nearest assigned word (W).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from adapt.core.distributed import to_host
from adapt.graph.knn import merge_top_k, tile_stream


class Alignment(NamedTuple):
    partition: jax.Array  # (Np,) int32 cluster of each row after the last realign
    words: np.ndarray  # (K,) vocabulary index assigned to each cluster
    structural: jax.Array  # (Np,) int32 vocabulary index s(x) = words[partition(x)]
    history: list  # per round: {"words": [...], "moved": rows whose cluster changed}


def _argmax_init(static, rows, dtype):
    return jnp.full((rows,), -jnp.inf, dtype), jnp.zeros((rows,), jnp.int32)


def _argmax_tile(static, carry, s, q, k):
    best, idx = carry
    s = jnp.where(k.ok[None, :], s, -jnp.inf)
    j = jnp.argmax(s, axis=1)
    top = jnp.take_along_axis(s, j[:, None], axis=1)[:, 0]
    better = top > best  # strict: an earlier block keeps ties
    return jnp.where(better, top, best), jnp.where(better, k.ids[j], idx)


def vocabulary_argmax(f, weights, *, mesh=None, block: int = 1024):
    """Argmax over all words of f (Np, d) . W (|V|, d)^T -> (best word (Np,) int32, score (Np,))."""
    score, idx = tile_stream(f, jnp.asarray(weights, f.dtype), _argmax_tile, _argmax_init,
                             block=block, mesh=mesh)
    return idx, score


@functools.partial(jax.jit, static_argnames=("k", "v"))
def vote_counts(partition, votes, mask, *, k: int, v: int):
    """(K, |V|) int32: rows of each cluster that voted for each word (padding rows excluded)."""
    flat = partition.astype(jnp.int32) * v + votes.astype(jnp.int32)
    return jax.ops.segment_sum(mask.astype(jnp.int32), flat, num_segments=k * v).reshape(k, v)


def vote_matrix(counts: np.ndarray) -> np.ndarray:
    """M = counts / cluster size, float64 (K, |V|); rows of empty clusters stay 0."""
    counts = np.asarray(counts, np.float64)
    sizes = counts.sum(1, keepdims=True)
    return np.divide(counts, sizes, out=np.zeros_like(counts), where=sizes > 0)


def assign_words(scores: np.ndarray, shrink: bool = False) -> np.ndarray:
    """One distinct column per row maximising the total score: linear_sum_assignment on
    (max S - S). scores (K, |V|) with K <= |V| -> (K,) column of each row."""
    scores = np.asarray(scores, np.float64)
    k, v = scores.shape
    if k > v:
        raise ValueError(f"{k} clusters but only {v} vocabulary words: need K <= |V|")
    cols = np.arange(v)
    if shrink:
        used = scores.any(axis=0)
        cols = np.concatenate([np.flatnonzero(used), np.flatnonzero(~used)[:k]])
    rows, picked = linear_sum_assignment(scores[:, cols].max() - scores[:, cols])
    out = np.empty(k, np.int64)
    out[rows] = cols[picked]
    return out


@jax.jit
def realign(f, mask, assigned):
    """Each row's cluster = argmax over the K assigned word rows (K, d) -> (Np,) int32."""
    part = jnp.argmax(f @ assigned.T, axis=1).astype(jnp.int32)
    return jnp.where(mask, part, 0)


def vote_realign(partition, f, mask, weights, *, k: int | None = None, rounds: int = 3, votes=None,
                 mesh=None, block: int = 1024, shrink: bool = False, move: bool = True) -> Alignment:
    """`rounds` rounds of vote matrix -> assignment -> realign from `partition` (Np,) int32 in [0, K).

    k: the number of clusters (default: max label + 1 over real rows). votes: precomputed
    `vocabulary_argmax` of f (they do not depend on the partition)."""
    weights = jnp.asarray(weights, f.dtype)
    if votes is None:
        votes, _ = vocabulary_argmax(f, weights, mesh=mesh, block=block)
    if k is None:
        k = int(to_host(jnp.max(jnp.where(mask, partition, 0)))) + 1
    if rounds < 1:
        raise ValueError("vote_realign needs rounds >= 1")
    history = []
    for _ in range(rounds if move else 1):
        counts = to_host(vote_counts(partition, votes, mask, k=int(k), v=weights.shape[0]))
        words = assign_words(vote_matrix(counts), shrink=shrink)
        new = realign(f, mask, weights[jnp.asarray(words)]) if move else partition
        history.append({"words": words.tolist(),
                        "moved": int(to_host(jnp.sum((new != partition) & mask)))})
        partition = new
    structural = jnp.where(mask, jnp.asarray(words, jnp.int32)[partition], 0)
    return Alignment(partition, words, structural, history)


def _phrase_init(static, rows, dtype):
    return jnp.full((rows, static[0]), -jnp.inf, dtype), jnp.full((rows, static[0]), -1, jnp.int32)


def _phrase_tile(static, carry, s, q, k):
    (part,), (owner,) = q.extra, k.extra
    bad = ~k.ok[None, :] | (owner[None, :] != part[:, None])
    return merge_top_k(*carry, jnp.where(bad, -jnp.inf, s), k.ids, static[0])


def phrase_hits(f, mask, partition, embeddings, owner, *, top: int = 3, mesh=None,
                block: int = 1024) -> np.ndarray:
    """(P,) int64: how many rows have entry p among the `top` most similar entries of their own
    cluster. embeddings (P, d) rows of the phrase entries, owner (P,) their clusters."""
    p = embeddings.shape[0]
    top = min(top, p)
    emb = jnp.asarray(embeddings, f.dtype)
    vals, ids = tile_stream(f, emb, _phrase_tile, _phrase_init, (int(top),),
                            query_extra=(partition.astype(jnp.int32),),
                            key_extra=(jnp.asarray(owner, jnp.int32),), block=block, mesh=mesh)
    ok = jnp.isfinite(vals) & mask[:, None]
    hits = jax.ops.segment_sum(ok.astype(jnp.int32).ravel(), jnp.where(ok, ids, 0).ravel(),
                               num_segments=p)
    return to_host(hits).astype(np.int64)


def phrase_scores(hits, cluster, word, weight, sizes, k: int, v: int) -> np.ndarray:
    """S (K, |V|) float64: S[c, w] = sum of weight x hits / |c| over the entries of (c, w)."""
    s = np.zeros((k, v), np.float64)
    sizes = np.asarray(sizes, np.float64)
    share = np.where(sizes[cluster] > 0, hits / np.maximum(sizes[cluster], 1.0), 0.0)
    np.add.at(s, (cluster, word), weight * share)
    return s


def phrase_realign(f, mask, partition, weights, entries, *, k: int, votes, top: int = 3,
                   mesh=None, block: int = 1024, shrink: bool = False, move: bool = True):
    """Prompt-step realign -> (Alignment, S (K, |V|)). entries: adapt.realistic.phrases.PhraseEntries.
    move=False: the words only, the partition unchanged."""
    weights = jnp.asarray(weights, f.dtype)
    counts = to_host(vote_counts(partition, votes, mask, k=int(k), v=weights.shape[0]))
    hits = np.zeros(len(entries.word), np.int64)
    if len(entries.word):
        hits = phrase_hits(f, mask, partition, entries.embeddings, entries.cluster, top=top,
                           mesh=mesh, block=block)
    s = phrase_scores(hits, entries.cluster, entries.word, entries.weight, counts.sum(1), k,
                      weights.shape[0])
    empty = ~s.any(axis=1)
    s[empty] = 1e-6 * vote_matrix(counts)[empty]
    words = assign_words(s, shrink=shrink)
    new = realign(f, mask, weights[jnp.asarray(words)]) if move else partition
    history = [{"words": words.tolist(), "moved": int(to_host(jnp.sum((new != partition) & mask))),
                "clusters_without_phrase_score": int(empty.sum())}]
    structural = jnp.where(mask, jnp.asarray(words, jnp.int32)[new], 0)
    return Alignment(new, words, structural, history), s
