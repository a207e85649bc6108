"""S3A's CVPR (cluster, vote, prompt, realign) over a broad vocabulary (spec s3a.md), as a library
the method (methods/s3a.py) calls.

On X (Np, D), the normalised image embeddings, and T_V (|V|, D), the vocabulary classifier:
  1. cluster: k-means (adapt.realistic.kmeans; K given, or estimated by silhouette search,
     adapt.realistic.cluster_count);
  2. vote and realign, `rounds` times (adapt.realistic.vote_realign);
  3. prompt: phrases of each cluster's top-3 voted words (adapt.realistic.phrases; offline default:
     the WordNet definitions; "none" skips steps 3-4, the declared Cluster-Vote-Realign variant);
  4. realign with phrases.
Realign rule (`realign`, issue 28): "words" is the paper's (every image moves to its nearest
assigned word); with a weak text side (the offline default model: MiniLM names tied to images
through ImageNet classes) the nearest-word regions do not follow the image clusters, and the step
moved about half of Fashion-MNIST's images away from a better k-means partition. "keep" names the
clusters only (vote and assignment; the partition stays k-means'). "auto" (default) is label-free:
a realign step (vote-realign, then the prompt step) is accepted only when the silhouette of the new
partition on the frozen embeddings is not lower than that of the partition it replaces (the
measure the K search uses, on a fixed subsample of adapt.realistic.stage_checks.SAMPLE rows);
otherwise that step only renames the clusters. Not in the paper; written down before its runs.
K: an estimate the K search marks unreliable (cluster_count) is replaced by `k_fallback` when > 0.
`cvpr(...)` returns everything the self-learning stage needs (`Cvpr`): the offline partition, the
cluster -> word map, the structural labels s(x) and the votes; `recompute_structural` gives the
structural labels of new (teacher) features, starting from the offline partition (spec).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from adapt.core.distributed import to_host
from adapt.realistic import kmeans as kmeans_lib
from adapt.realistic import phrases as phrases_lib
from adapt.realistic.cluster_count import estimate_k
from adapt.realistic.stage_checks import partition_silhouette, sample
from adapt.realistic.vote_realign import phrase_realign, vocabulary_argmax, vote_counts, vote_realign


@dataclasses.dataclass(frozen=True)
class Settings:
    k: int | None = None  # clusters; None = silhouette estimate
    k_min: int = 2
    k_max: int = 100
    search_rounds: int = 3
    sample_min: int = 30000
    sample_frac: float = 0.5
    sample_max: int = 0
    search_n_init: int = 3
    search_max_iter: int = 300
    n_init: int = 17
    max_iter: int = 1000
    tol: float = 1e-4
    rounds: int = 3
    phrases: str = phrases_lib.GLOSSES  # glosses | none | a phrase file
    phrase_templates: tuple[str, ...] = phrases_lib.DEFAULT_TEMPLATES
    candidates: int = 3  # top voted words per cluster in the prompt step
    top_phrases: int = 3  # an image's hits: its top-n phrase entries
    block: int = 1024
    shrink: bool = False  # Hungarian on voted columns only (large vocabularies)
    k_search: str = "grid"  # grid | binary (official)
    k_fallback: int = 0  # K used when the estimate is unreliable (0 = keep the estimate, flagged)
    realign: str = "auto"  # auto | words (paper) | keep

    def __post_init__(self):
        for t in self.phrase_templates:
            if "{concept}" not in t or "{phrase}" not in t:
                raise ValueError(f"phrase template {t!r} needs both {{concept}} and {{phrase}}")
        if self.realign not in ("auto", "words", "keep"):
            raise ValueError(f"method_args.realign must be auto, words or keep, not {self.realign!r}")
        if self.rounds < 1 or (self.k is not None and self.k < 1):
            raise ValueError("method_args.rounds and method_args.k must be >= 1")


class Cvpr(NamedTuple):
    k: int
    kmeans_partition: jax.Array  # (Np,) step 1
    partition: jax.Array  # (Np,) final: the offline partition later stages start from
    words: np.ndarray  # (K,) final cluster -> vocabulary index
    structural: jax.Array  # (Np,) s(x) = words[partition]
    cvr_structural: jax.Array  # (Np,) s(x) after vote-realign, before the prompt step
    votes: jax.Array  # (Np,) argmax over the whole vocabulary (the zero-shot prediction)
    candidates: list  # per cluster, its top voted words (vocabulary indices)
    info: dict
    kmeans_words: np.ndarray | None = None  # (K,) the words the vote assigns to the k-means clusters
    move: bool = True  # whether the structural update realigns (False: it renames only)


def top_voted(counts: np.ndarray, n: int) -> list[list[int]]:
    """Per cluster, its n most voted words with at least one vote (ties: lower index)."""
    order = np.argsort(-counts, axis=1, kind="stable")[:, :n]
    return [[int(w) for w in row if counts[k, w] > 0] for k, row in enumerate(order)]


def _choose_k(x, n, weights, s: Settings, *, mesh, key, log, info) -> int:
    if s.k is not None:
        return s.k
    k, info["k_search"] = estimate_k(
        to_host(x)[:n], k_min=s.k_min, k_max=min(s.k_max, weights.shape[0]),
        rounds=s.search_rounds, sample_min=s.sample_min, sample_frac=s.sample_frac,
        sample_max=s.sample_max, n_init=s.search_n_init, max_iter=s.search_max_iter,
        seed=int(jax.random.randint(key, (), 0, 2**31 - 1)), mesh=mesh, block=s.block, log=log,
        search=s.k_search)
    reliable = info["k_search"]["reliable"]
    info["k_estimate"] = k
    if not reliable and s.k_fallback > 0:
        k = int(s.k_fallback)
    info["k_source"] = ("estimate" if reliable else
                        "k_fallback (estimate unreliable)" if s.k_fallback > 0 else
                        "estimate, UNRELIABLE (best silhouette below 0.25): give method_args.k")
    log(f"estimated K = {info['k_estimate']} (best silhouette {info['k_search']['best_silhouette']:.3f}, "
        f"{'reliable' if reliable else 'unreliable'}); using K = {k}")
    return k


class _Judge:
    """The "auto" realign rule: silhouettes of partitions on one fixed subsample of the frozen rows."""

    def __init__(self, x, n, mesh, rule: str):
        self.rule, self.mesh, self.x, self.rows, self.log = rule, mesh, None, None, []
        if rule == "auto":
            self.x, self.rows = to_host(x)[:n], sample(n)

    def accept(self, step: str, old, new) -> bool:
        if self.rule != "auto":
            return self.rule == "words"
        n = len(self.x)
        before = partition_silhouette(self.x, to_host(old)[:n], self.rows, self.mesh)
        after = partition_silhouette(self.x, to_host(new)[:n], self.rows, self.mesh)
        self.log.append(dict(step=step, silhouette_before=before, silhouette_after=after,
                             accepted=bool(after >= before)))
        return after >= before


def _renamed(al, partition, mask):
    """The alignment's words on the old partition (the realign step rejected)."""
    structural = jnp.where(mask, jnp.asarray(al.words, jnp.int32)[partition], 0)
    return al._replace(partition=partition, structural=structural)


def cvpr(x, mask, weights, vocab, s: Settings, *, mesh, key, embed_texts: Callable | None = None,
         log: Callable = print) -> Cvpr:
    """CVPR on rows x (Np, D) with vocabulary classifier weights (|V|, D); vocab: the
    adapt.vocab.vocabulary.Vocabulary of those rows (its names and definitions feed the prompt step)."""
    info: dict = {}
    n = int(to_host(mask).sum())
    weights = jnp.asarray(weights, x.dtype)
    k = _choose_k(x, n, weights, s, mesh=mesh, key=key, log=log, info=info)
    if k > weights.shape[0]:
        raise ValueError(f"K = {k} clusters need at least {k} vocabulary words, got {weights.shape[0]}")
    km = kmeans_lib.kmeans(x, mask, k, key, n_init=s.n_init, max_iter=s.max_iter, tol=s.tol, mesh=mesh)
    info.update(k=k, k_given=s.k is not None, kmeans_inertia=km.inertia,
                kmeans_iterations=km.iterations, kmeans_restart=km.restart, realign_rule=s.realign)
    votes, _ = vocabulary_argmax(x, weights, mesh=mesh, block=s.block)
    named = vote_realign(km.labels, x, mask, weights, k=k, votes=votes, shrink=s.shrink, move=False)
    judge = _Judge(x, n, mesh, s.realign)
    al = named
    if s.realign != "keep":
        al = vote_realign(km.labels, x, mask, weights, k=k, rounds=s.rounds, votes=votes, shrink=s.shrink)
        al = al if judge.accept("vote_realign", km.labels, al.partition) else named
    info["vote_realign"] = al.history
    counts = to_host(vote_counts(al.partition, votes, mask, k=k, v=weights.shape[0]))
    candidates = top_voted(counts, s.candidates)
    cvr_structural = al.structural
    book = phrases_lib.load_phrase_book(s.phrases) if vocab is not None else None
    if book is not None:
        if embed_texts is None:
            raise ValueError("the prompt step needs embed_texts (the model's text encoder)")
        entries = phrases_lib.build_entries(candidates, vocab, book, embed_texts, s.phrase_templates)
        old = al.partition
        al, _ = phrase_realign(x, mask, old, weights, entries, k=k, votes=votes, top=s.top_phrases,
                               mesh=mesh, block=s.block, shrink=s.shrink, move=s.realign != "keep")
        al = al if s.realign == "keep" or judge.accept("phrase_realign", old, al.partition) else _renamed(al, old, mask)
        info.update(entries.info, phrase_realign=al.history)
    info["prompt_step"] = book.source if book is not None else "none (Cluster-Vote-Realign)"
    info["realign_checks"] = judge.log
    moved = bool(np.any(to_host(al.partition)[:n] != to_host(km.labels)[:n]))
    return Cvpr(k, km.labels, al.partition, al.words, al.structural, cvr_structural, votes,
                candidates, info, named.words, moved or s.realign == "words")


def recompute_structural(c: Cvpr, features, mask, weights, *, rounds: int = 3, mesh=None,
                         block: int = 1024, shrink: bool = False) -> jax.Array:
    """Self-learning's structural update: Vote-Realign x rounds on new (teacher) features (Np, D),
    starting from the offline partition every time -> s(x) (Np,) vocabulary indices. When CVPR kept
    the k-means partition (realign rule), the update renames the clusters only (c.move False)."""
    return vote_realign(c.partition, features, mask, weights, k=c.k, rounds=rounds, mesh=mesh,
                        block=block, shrink=shrink, move=c.move).structural
