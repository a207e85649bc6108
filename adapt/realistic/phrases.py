"""Discriminative phrases for the Prompt step of S3A's CVPR: the phrase file and the phrase entries.

Phrase file (JSON, UTF-8), produced offline by an LLM (`python -m adapt.realistic.phrases ...`, see
adapt/realistic/phrases_llm.py for the prompt) or written by hand:

  {"format": "adapt-phrases/1",
   "generator": {...free-form: endpoint, model, temperature, repeats, prompt_sha256...},
   "phrases": {"gym shoe": ["rubber sole", "laces", "rubber sole", ...], ...}}

`phrases` maps a concept (a vocabulary name; matched normalised) to its phrases. Repeats are
allowed and meaningful: a phrase's frequency (e.g. over the 3 LLM repetitions) is its weight.
The run records the file's sha256. Without a file, the offline default is each candidate's WordNet
definitions (`--set method_args.phrases=glosses`), one phrase per definition clause; a concept
absent from the file also falls back to its definitions.

Per cluster (spec s3a.md, Prompt): the candidates are its top-3 voted words; a candidate's phrases
lose those equal to a competing candidate's name or synonym and those shared with a competing
candidate; the rest get weight frequency / total frequency. Each (cluster, candidate, phrase) is one
entry, embedded as the normalised mean of the phrase templates filled with {concept} and {phrase}.
"""
from __future__ import annotations

import collections
from typing import Callable, NamedTuple

import numpy as np

from adapt.data.classes import normalise
from adapt.realistic.phrase_file import FORMAT, PhraseBook, PhraseError, read_phrase_file, write_phrase_file
from adapt.vocab import wordnet
from adapt.vocab.vocabulary import Vocabulary

GLOSSES = "glosses"
NONE = "none"
DEFAULT_TEMPLATES = ("a photo of a {concept}, {phrase}.",)


def load_phrase_book(spec: str) -> PhraseBook | None:
    """"none" (or empty) -> None (Cluster-Vote-Realign only); "glosses" -> definitions; else a file."""
    if spec in ("", NONE):
        return None
    if spec == GLOSSES:
        return PhraseBook({}, GLOSSES, None)
    return read_phrase_file(spec)


def concept_phrases(book: PhraseBook, vocab: Vocabulary, word: int) -> tuple[list[str], bool]:
    """(phrases of vocabulary entry `word`, whether they came from its definitions)."""
    entry = vocab.entries[word]
    found = book.phrases.get(normalise(entry.name))
    if found:
        return list(found), False
    return [p for d in entry.definitions for p in wordnet.gloss_phrases(d)], True


class PhraseEntries(NamedTuple):
    embeddings: np.ndarray  # (P, D) rows L2-normalised
    cluster: np.ndarray  # (P,) cluster the entry belongs to
    word: np.ndarray  # (P,) vocabulary index of its concept
    weight: np.ndarray  # (P,) frequency / total frequency within (cluster, concept)
    texts: list  # (P,) the phrases
    info: dict


def _forms(vocab: Vocabulary, word: int) -> set[str]:
    e = vocab.entries[word]
    return {normalise(e.name)} | {normalise(s) for s in e.synonyms}


def cluster_phrases(candidates: list[list[int]], vocab: Vocabulary, book: PhraseBook):
    """Kept phrases and weights per (cluster, candidate): list of (cluster, word, phrase, weight)."""
    rows, from_definitions = [], set()
    for k, words in enumerate(candidates):
        counts = {}
        for w in words:
            phrases, fell_back = concept_phrases(book, vocab, w)
            if fell_back and book.source != GLOSSES:
                from_definitions.add(w)
            counts[w] = collections.Counter(normalise(p) for p in phrases)
        for w in words:
            rivals = [r for r in words if r != w]
            banned = set().union(*(_forms(vocab, r) for r in rivals)) if rivals else set()
            shared = set().union(*(set(counts[r]) for r in rivals)) if rivals else set()
            kept = {p: c for p, c in counts[w].items() if p not in banned and p not in shared}
            total = sum(kept.values())
            rows += [(k, w, p, c / total) for p, c in sorted(kept.items())]
    return rows, sorted(from_definitions)


def build_entries(candidates: list[list[int]], vocab: Vocabulary, book: PhraseBook,
                  embed_texts: Callable, templates=DEFAULT_TEMPLATES) -> PhraseEntries:
    """Phrase entries of every cluster, each embedded once per distinct text (embed_texts: list of
    str -> (n, D) rows L2-normalised, e.g. model.encode_texts)."""
    rows, fallback = cluster_phrases(candidates, vocab, book)
    texts = [[t.format(concept=vocab.names[w], phrase=p) for t in templates] for _, w, p, _ in rows]
    flat = list(dict.fromkeys(t for ts in texts for t in ts))
    emb = np.asarray(embed_texts(flat), np.float32) if flat else np.zeros((0, 1), np.float32)
    where = {t: i for i, t in enumerate(flat)}
    out = np.stack([emb[[where[t] for t in ts]].mean(0) for ts in texts]) if rows else emb[:0]
    out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    info = {"phrase_source": book.source, "phrase_file_sha256": book.sha256,
            "phrase_entries": len(rows), "phrase_texts_embedded": len(flat),
            "concepts_without_file_phrases": [vocab.names[w] for w in fallback]}
    return PhraseEntries(out, np.asarray([r[0] for r in rows], np.int64),
                         np.asarray([r[1] for r in rows], np.int64),
                         np.asarray([r[3] for r in rows], np.float64), [r[2] for r in rows], info)


__all__ = ["DEFAULT_TEMPLATES", "FORMAT", "GLOSSES", "NONE", "PhraseBook", "PhraseEntries",
           "PhraseError", "build_entries", "cluster_phrases", "concept_phrases", "load_phrase_book",
           "read_phrase_file", "write_phrase_file"]

if __name__ == "__main__":  # `python -m adapt.realistic.phrases`: make a phrase file with an LLM
    from adapt.realistic.phrases_llm import main

    raise SystemExit(main())
