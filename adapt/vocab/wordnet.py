"""WordNet noun synsets read straight from the Princeton database files (Debian `wordnet-base`).

`data.noun` has one synset per line (license lines start with two spaces):

  offset lex_filenum ss_type w_cnt (word lex_id){w_cnt} p_cnt (symbol offset pos src/tgt){p_cnt} | gloss

w_cnt is two hex digits, lex_id one hex digit, p_cnt three decimal digits; words use `_` for spaces.
Pointer `@` is a hypernym, `@i` an instance hypernym (the synset is a named individual: a person, a
city). The gloss is the definition, then optional quoted examples after `; "`.

`visual_synsets` is the built-in vocabulary's filter (the rule, fixed before any target data):
keep a noun synset when it is not an instance, is a strict hyponym of one of VISUAL_ROOTS and of
none of EXCLUDED_ROOTS:
  whole.n.02 (n00003553)               artifacts, living things, natural objects
  food.n.01 (n00021265)                foods and drinks
  geological_formation.n.01 (n09287968) mountains, beaches, caves, ...
  excluded: person.n.01 (n00007846)     roles and occupations (accountant, believer), rarely a
                                        visible kind; ImageNet filtered this subtree too.
Abstractions (acts, attributes, cognition, communication, relations, times ...) are not under these
roots. WordNet 3.0 gives 22,593 synsets and 20,404 distinct first-lemma names.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

DEFAULT_DIR = Path("/usr/share/wordnet")
VISUAL_ROOTS = {"00003553": "whole.n.02", "00021265": "food.n.01",
                "09287968": "geological_formation.n.01"}
EXCLUDED_ROOTS = {"00007846": "person.n.01"}


class WordNetError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Synset:
    offset: str  # 8 digits, e.g. "03595614"
    lemmas: tuple[str, ...]  # as written, `_` for spaces, first lemma = head word
    hypernyms: tuple[str, ...]  # offsets of `@` and `@i` noun pointers
    instance: bool  # has an `@i` pointer: a named individual
    gloss: str

    @property
    def wnid(self) -> str:
        """The ImageNet-style id, "n" + offset."""
        return "n" + self.offset

    @property
    def definition(self) -> str:
        """The gloss without its quoted usage examples."""
        return self.gloss.split('; "')[0].split(' "')[0].strip().rstrip(";").strip()


def data_noun_path(root: str | os.PathLike | None = None) -> Path:
    root = Path(root or os.environ.get("ADAPT_WORDNET_DIR") or DEFAULT_DIR)
    path = root / "data.noun"
    if not path.is_file():
        raise WordNetError(f"{path} not found: install Debian's WordNet database "
                           "(`apt-get install wordnet-base`) or set ADAPT_WORDNET_DIR")
    return path


def parse_line(line: str) -> Synset:
    """One `data.noun` synset line -> Synset."""
    head, sep, gloss = line.partition(" | ")
    f = head.split()
    try:
        offset, n_words = f[0], int(f[3], 16)
        lemmas = tuple(f[4 + 2 * i] for i in range(n_words))
        i = 4 + 2 * n_words
        n_ptr = int(f[i])
        hypernyms, instance = [], False
        for j in range(n_ptr):
            symbol, target, pos = f[i + 1 + 4 * j: i + 4 + 4 * j]
            if symbol in ("@", "@i") and pos == "n":
                hypernyms.append(target)
                instance |= symbol == "@i"
    except (IndexError, ValueError) as e:
        raise WordNetError(f"not a data.noun synset line: {line[:60]!r} ({e})") from None
    if len(offset) != 8 or not offset.isdigit() or not lemmas:
        raise WordNetError(f"not a data.noun synset line: {line[:60]!r}")
    return Synset(offset, lemmas, tuple(hypernyms), instance, gloss.strip() if sep else "")


def read_noun_synsets(root: str | os.PathLike | None = None) -> dict[str, Synset]:
    """Every noun synset of the database, by offset, in file order."""
    out = {}
    with open(data_noun_path(root), encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  ") or not line.strip():
                continue
            s = parse_line(line)
            out[s.offset] = s
    return out


def ancestors(synsets: dict[str, Synset]) -> dict[str, frozenset]:
    """Transitive hypernym closure of every synset (iterative, memoised)."""
    done: dict[str, frozenset] = {}
    for start in synsets:
        stack = [start]
        while stack:
            o = stack[-1]
            if o in done:
                stack.pop()
                continue
            todo = [h for h in synsets[o].hypernyms if h not in done and h in synsets]
            if todo:
                stack.extend(todo)
                continue
            acc = set()
            for h in synsets[o].hypernyms:
                if h in synsets:
                    acc.add(h)
                    acc |= done[h]
            done[o] = frozenset(acc)
            stack.pop()
    return done


def visual_synsets(synsets: dict[str, Synset], roots=VISUAL_ROOTS,
                   excluded=EXCLUDED_ROOTS) -> list[Synset]:
    """The synsets the module docstring's rule keeps, in file order."""
    anc = ancestors(synsets)
    roots, excluded = set(roots), set(excluded)
    return [s for o, s in synsets.items()
            if not s.instance and anc[o] & roots and not anc[o] & excluded and o not in excluded]


def gloss_phrases(definition: str) -> list[str]:
    """A definition split into its clauses (the offline stand-in for LLM phrases)."""
    return [p.strip() for p in definition.split(";") if p.strip()]
