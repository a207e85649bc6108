"""Offline class descriptions from WordNet, in the CuPL format (class name -> list of sentences).

The stand-in for LLM descriptions when no description file is given (NoLA's class-description
classifier). Read from Debian's `wordnet-base` files: `index.noun` (lemma -> synset offsets in
sense-frequency order) and `data.noun` (read by `adapt.vocab.wordnet`).

Lookup rule for a class name (fixed before any target data; the first candidate WordNet has wins):
  1. the full name, lowercase, spaces as `_` ("Ankle boot" -> "ankle_boot");
  2. each part of a name with `/` alternatives, in order ("T-shirt/top" -> "t-shirt", then "top");
  3. the head noun: the last word of the name, then of each part ("Ankle boot" -> "boot").
Sense: the first (most frequent) sense that is a visual synset by adapt.vocab.wordnet's rule (a strict
hyponym of whole / food / geological formation, not of person, not an instance); if none is, the
first sense. A name that nothing matches gets no descriptions (templates alone then describe it).

Sentences of the chosen synset (lemmas L, definition D, first hypernym H), with the class name n:
  "a n, D."   "a n is a kind of H."   "a l, a kind of H." for each other lemma l (at most 4).

  python -m adapt.vocab.wordnet_descriptions "T-shirt/top,Trouser,Ankle boot" --out descriptions.json
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from adapt.vocab import wordnet

MAX_SYNONYMS = 4


def read_noun_index(root: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """`index.noun`: lemma (lowercase, `_` for spaces) -> synset offsets, most frequent sense first.
    Line: lemma pos synset_cnt p_cnt [ptr_symbol]{p_cnt} sense_cnt tagsense_cnt offset{synset_cnt}."""
    path = wordnet.data_noun_path(root).with_name("index.noun")
    if not path.is_file():
        raise wordnet.WordNetError(f"{path} not found: install Debian's `wordnet-base`")
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  ") or not line.strip():
                continue
            fields = line.split()
            n_synsets = int(fields[2])
            out[fields[0]] = fields[-n_synsets:]
    return out


def lookup_candidates(name: str) -> list[str]:
    """The lemmas tried for a class name, in the module docstring's order, without repeats."""
    key = lambda s: "_".join(s.lower().split())  # noqa: E731
    parts = [p.strip() for p in name.split("/") if p.strip()] if "/" in name else []
    heads = [s.split()[-1] for s in [name, *parts] if s.split()]
    return list(dict.fromkeys(key(s) for s in [name, *parts, *heads] if key(s)))


def is_visual(offset: str, synsets: dict) -> bool:
    if synsets[offset].instance or offset in wordnet.EXCLUDED_ROOTS:
        return False
    seen, stack = set(), list(synsets[offset].hypernyms)
    while stack:
        o = stack.pop()
        if o in seen or o not in synsets:
            continue
        seen.add(o)
        stack.extend(synsets[o].hypernyms)
    return bool(seen & set(wordnet.VISUAL_ROOTS)) and not seen & set(wordnet.EXCLUDED_ROOTS)


def choose_synset(name: str, index: dict, synsets: dict) -> tuple[str | None, str | None]:
    """(lemma, synset offset) of a class name: the first lookup candidate WordNet knows, and of its
    senses the most frequent one under the visual roots (else the most frequent); (None, None)."""
    lemma = next((c for c in lookup_candidates(name) if c in index), None)
    offsets = [o for o in index[lemma] if o in synsets] if lemma else []
    if not offsets:
        return None, None
    return lemma, next((o for o in offsets if is_visual(o, synsets)), offsets[0])


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def sentences(name: str, synset, synsets: dict) -> list[str]:
    """The CuPL-style sentences of one synset for class `name`."""
    shown = name.replace("_", " ")
    hyper = synsets[synset.hypernyms[0]].lemmas[0].replace("_", " ") if synset.hypernyms else ""
    out = [f"{_article(shown)} {shown}, {synset.definition}."]
    if hyper:
        out.append(f"{_article(shown)} {shown} is a kind of {hyper}.")
        others = [lemma.replace("_", " ") for lemma in synset.lemmas]
        others = [o for o in dict.fromkeys(others) if o.lower() != shown.lower()][:MAX_SYNONYMS]
        out += [f"{_article(o)} {o}, a kind of {hyper}." for o in others]
    return out


def wordnet_descriptions(names, root: str | os.PathLike | None = None) -> tuple[dict, dict]:
    """class names -> (descriptions {name: [sentences]}, how {name: "lemma -> synset (definition)"
    or "not in WordNet"})."""
    index, synsets = read_noun_index(root), wordnet.read_noun_synsets(root)
    descriptions, how = {}, {}
    for name in names:
        lemma, chosen = choose_synset(name, index, synsets)
        if chosen is None:
            descriptions[name], how[name] = [], "not in WordNet"
            continue
        s = synsets[chosen]
        descriptions[name] = sentences(name, s, synsets)
        how[name] = f"{lemma} -> {s.wnid} {s.lemmas[0]} ({s.definition})"
    return descriptions, how


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m adapt.vocab.wordnet_descriptions", description=__doc__.split("\n")[0])
    p.add_argument("names", help="comma-separated class names, or @file with one name per line")
    p.add_argument("--out", help="write the CuPL JSON here (classes WordNet lacks are left out)")
    args = p.parse_args(argv)
    names = (Path(args.names[1:]).read_text().splitlines() if args.names.startswith("@")
             else args.names.split(","))
    desc, how = wordnet_descriptions([n.strip() for n in names if n.strip()])
    for n in desc:
        print(f"{n}: {how[n]}")
    if args.out:
        Path(args.out).write_text(json.dumps({k: v for k, v in desc.items() if v}, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
