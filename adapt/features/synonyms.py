"""REAL-Prompt class names: a class name replaced by its most frequent synonym, or the ensemble of
its synonyms (Parashar et al., "The Neglected Tails of Vision-Language Models", CVPR 2024).

Synonyms of a class name: the name itself, then the lemmas of its WordNet synset (the synset the
offline model's grounding picks, `adapt.vocab.wordnet_descriptions.choose_synset`), `_` read as a
space, repeats (case-insensitive) dropped; a name WordNet does not know has itself only.
Frequency: `wordfreq.zipf_frequency(text, "en")` (the wordfreq package's shipped English list;
multi-word texts get wordfreq's combined frequency of their words). Deviation from the paper: its
synonyms come from ChatGPT and its frequency from counting LAION captions; here both are offline
stand-ins (WordNet, wordfreq), so the "most frequent" name is a general-English one, not the
pretraining data's.

  frequent: [[the candidate with the highest frequency]] (ties: the earliest, the name itself first)
  ensemble: [[every candidate]] (the class text averages over them, `adapt.features.class_texts`)
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import wordfreq

from adapt.vocab import wordnet
from adapt.vocab.wordnet_descriptions import choose_synset, read_noun_index

MODES = ("none", "frequent", "ensemble")


def english_frequency(text: str) -> float:
    """Zipf frequency (log10 per billion words + 9) of `text` in wordfreq's English list; 0 if unseen."""
    return float(wordfreq.zipf_frequency(text, "en"))


def candidates(name: str, lemmas: Sequence[str]) -> list[str]:
    """The name, then each lemma with `_` as a space; repeats (case-insensitive) dropped."""
    out, seen = [], set()
    for text in [name, *[lemma.replace("_", " ") for lemma in lemmas]]:
        if text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
    return out


def most_frequent(texts: Sequence[str], frequency: Callable[[str], float]) -> str:
    """The text of highest `frequency`; the earliest on ties."""
    scores = [frequency(t) for t in texts]
    return texts[max(range(len(texts)), key=lambda i: (scores[i], -i))]


@functools.lru_cache(maxsize=2)
def wordnet_tables(root: str | None = None) -> tuple[dict, dict]:
    """(index.noun lemma -> offsets, offset -> Synset), read once per process (about 2 s each)."""
    return read_noun_index(root), wordnet.read_noun_synsets(root)


def wordnet_lemmas(names: Sequence[str], root: str | None = None) -> list[tuple[str, ...]]:
    """Each name's synset lemmas (() when WordNet does not know the name)."""
    index, synsets = wordnet_tables(root)
    out = []
    for name in names:
        offset = choose_synset(name, index, synsets)[1]
        out.append(synsets[offset].lemmas if offset is not None else ())
    return out


def class_name_variants(names: Sequence[str], mode: str, lemmas: Sequence[Sequence[str]] | None = None,
                        frequency: Callable[[str], float] = english_frequency) -> list[list[str]]:
    """Per class, the names its prompts are filled with (see the module docstring). `lemmas`: each
    name's synonyms (default: WordNet's, read from the Debian files)."""
    if mode not in MODES:
        raise ValueError(f"classes.synonyms must be one of {MODES}, got {mode!r}")
    if mode == "none":
        return [[n] for n in names]
    lemmas = wordnet_lemmas(names) if lemmas is None else lemmas
    options = [candidates(n, ls) for n, ls in zip(names, lemmas)]
    if mode == "frequent":
        return [[most_frequent(o, frequency)] for o in options]
    return options
