"""A broad vocabulary of concept names: the label space of the realistic setting (S3A).

File formats (chosen by the file name's ending):

- JSON lines (`.jsonl`): one object per line,
    {"name": "gym shoe", "synset": "n03472535", "definition": "a canvas shoe with ...",
     "synonyms": ["sneaker", "tennis shoe"]}
  `name` is required; `synset` and `definition` are optional strings or lists of strings (an entry
  may stand for several synsets that share its name); `synonyms` is an optional list used only to
  map evaluation class names onto entries. No other keys.
- TSV (any other ending, e.g. `.tsv`, `.txt`): `name[<TAB>synset ids, comma-separated
  [<TAB>definition[<TAB>synonyms, comma-separated]]]`. A plain list of names, one per line, is a
  valid TSV file. A first line `name<TAB>...` is a header and skipped.
In both, blank lines and lines starting with `#` are skipped. Names must be unique after
normalising (lowercase, `_` and `-` read as spaces, whitespace collapsed) and non-empty; a
duplicate is an error naming both lines.

The built-in vocabulary (`builtin_vocabulary`) is WordNet's visual noun synsets (adapt.vocab.wordnet
states the filter), one entry per distinct first lemma in file order; synsets sharing that name
are merged into one entry (their ids, definitions and other lemmas kept).

  python -m adapt.vocab.vocabulary --out wordnet_visual.jsonl          # write the built-in vocabulary
  python -m adapt.vocab.vocabulary --check "T-shirt/top,Trouser,Ankle boot"   # which names it covers
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
from pathlib import Path

from adapt.data.classes import normalise
from adapt.vocab import wordnet

BUILTIN = "wordnet"
FIELDS = ("name", "synset", "definition", "synonyms")


class VocabularyError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    synsets: tuple[str, ...] = ()
    definitions: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    entries: tuple[Entry, ...]
    source: str

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def names_sha256(self) -> str:
        """Hash of the names in order: what the text classifier depends on."""
        return hashlib.sha256(json.dumps(self.names).encode()).hexdigest()

    def index(self) -> dict[str, int]:
        return {normalise(n): i for i, n in enumerate(self.names)}


def _strings(value, what: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise VocabularyError(f"{where}: '{what}' must be a string or a list of strings")
    return tuple(v.strip() for v in values if v.strip())


def _entry_from_json(line: str, where: str) -> Entry:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise VocabularyError(f"{where}: not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise VocabularyError(f"{where}: expected a JSON object with a 'name'")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise VocabularyError(f"{where}: unknown keys {unknown}; allowed: {list(FIELDS)}")
    name = obj.get("name")
    if not isinstance(name, str):
        raise VocabularyError(f"{where}: 'name' must be a string")
    return Entry(name.strip(), _strings(obj.get("synset"), "synset", where),
                 _strings(obj.get("definition"), "definition", where),
                 _strings(obj.get("synonyms"), "synonyms", where))


def _entry_from_tsv(line: str) -> Entry:
    cols = line.rstrip("\r\n").split("\t") + ["", "", ""]
    split = lambda s: tuple(p.strip() for p in s.split(",") if p.strip())  # noqa: E731
    return Entry(cols[0].strip(), split(cols[1]), (cols[2].strip(),) if cols[2].strip() else (),
                 split(cols[3]))


def read_vocabulary(path: str | os.PathLike) -> Vocabulary:
    """Reads a vocabulary file (format in the module docstring); errors name the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise VocabularyError(f"cannot read vocabulary file {path}: {e}") from None
    is_json = path.name.endswith(".jsonl")
    entries, seen = [], {}
    for no, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not is_json and no == 1 and line.split("\t")[0].strip().lower() == "name":
            continue
        where = f"{path}:{no}"
        e = _entry_from_json(line, where) if is_json else _entry_from_tsv(line)
        if not e.name:
            raise VocabularyError(f"{where}: empty name")
        key = normalise(e.name)
        if key in seen:
            raise VocabularyError(f"{where}: duplicate name {e.name!r} (also on line {seen[key]}; "
                                  "names are compared lowercase with _ and - as spaces)")
        seen[key] = no
        entries.append(e)
    if not entries:
        raise VocabularyError(f"vocabulary file {path} has no entries")
    return Vocabulary(tuple(entries), str(path))


def write_jsonl(vocab: Vocabulary, path: str | os.PathLike) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for e in vocab.entries:
            obj = {"name": e.name, "synset": list(e.synsets), "definition": list(e.definitions),
                   "synonyms": list(e.synonyms)}
            f.write(json.dumps({k: v for k, v in obj.items() if v}, ensure_ascii=False) + "\n")


def builtin_vocabulary(root: str | os.PathLike | None = None) -> Vocabulary:
    """WordNet's visual noun synsets, one entry per distinct (normalised) first lemma."""
    synsets = wordnet.read_noun_synsets(root)
    groups: dict[str, list] = {}
    for s in wordnet.visual_synsets(synsets):
        groups.setdefault(normalise(s.lemmas[0]), []).append(s)
    entries = []
    for group in groups.values():
        heads = [s.lemmas[0].replace("_", " ") for s in group]
        name = next((h for h in heads if h == h.lower()), heads[0])  # "jersey" over "Jersey"
        others = [lemma.replace("_", " ") for s in group for lemma in s.lemmas]
        synonyms = tuple(dict.fromkeys(o for o in others if normalise(o) != normalise(name)))
        entries.append(Entry(name, tuple(s.wnid for s in group),
                             tuple(s.definition for s in group), synonyms))
    return Vocabulary(tuple(entries), f"WordNet 3.0 visual nouns ({wordnet.data_noun_path(root)})")


def load_vocabulary(spec: str) -> Vocabulary:
    """`wordnet` (or empty) = the built-in vocabulary; anything else is a vocabulary file."""
    return builtin_vocabulary() if spec in ("", BUILTIN) else read_vocabulary(spec)


def match_class_names(vocab: Vocabulary, class_names) -> list[dict]:
    """Maps evaluation class names onto vocabulary entries, per class:
    {"entries": [ids], "how": [...]}. A name is split at "/" into alternatives ("T-shirt/top" ->
    "T-shirt", "top"); each alternative matches the entry of that (normalised) name, or else every
    entry that lists it among its synonyms. The class's correct entries are the union; an empty
    list means the class is out of the vocabulary."""
    by_name = vocab.index()
    by_synonym: dict[str, list[int]] = {}
    for i, e in enumerate(vocab.entries):
        for s in e.synonyms:
            by_synonym.setdefault(normalise(s), []).append(i)
    out = []
    for cname in class_names:
        ids, how = [], []
        for alt in [cname] + ([a for a in cname.split("/") if a.strip()] if "/" in cname else []):
            key = normalise(alt)
            if key in by_name:
                ids.append(by_name[key])
                how.append(f"{alt!r} = entry {vocab.names[by_name[key]]!r}")
            else:
                for i in by_synonym.get(key, []):
                    ids.append(i)
                    how.append(f"{alt!r} synonym of entry {vocab.names[i]!r}")
        out.append({"entries": list(dict.fromkeys(ids)), "how": how})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m adapt.vocab.vocabulary", description=__doc__.split("\n")[0])
    p.add_argument("--file", default=BUILTIN, help="vocabulary file, or 'wordnet' (built-in)")
    p.add_argument("--out", help="write the vocabulary as JSON lines here")
    p.add_argument("--check", help="comma-separated class names to look up")
    args = p.parse_args(argv)
    vocab = load_vocabulary(args.file)
    print(f"{len(vocab)} entries from {vocab.source}")
    if args.out:
        write_jsonl(vocab, args.out)
        print(f"wrote {args.out}")
    if args.check:
        names = [n.strip() for n in args.check.split(",") if n.strip()]
        for n, m in zip(names, match_class_names(vocab, names)):
            print(f"{n}: " + ("; ".join(m["how"]) if m["entries"] else "not in the vocabulary"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
