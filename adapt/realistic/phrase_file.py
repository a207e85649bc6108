"""The phrase file (JSON, UTF-8): reading and writing; adapt/realistic/phrases.py says what it holds.

  {"format": "adapt-phrases/1", "generator": {...}, "phrases": {"gym shoe": ["rubber sole", ...]}}

Both the phrase entries (adapt/realistic/phrases.py) and the LLM writer
(adapt/realistic/phrases_llm.py) use it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

from adapt.data.classes import normalise

FORMAT = "adapt-phrases/1"


class PhraseError(ValueError):
    pass


class PhraseBook(NamedTuple):
    """Phrases by normalised concept name; source: "glosses" or the file; sha256 of the file."""
    phrases: dict[str, list[str]]
    source: str
    sha256: str | None


def read_phrase_file(path: str | os.PathLike) -> PhraseBook:
    path = Path(path)
    try:
        raw = path.read_bytes()
        obj = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PhraseError(f"cannot read phrase file {path}: {e}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or not isinstance(obj.get("phrases"), dict):
        raise PhraseError(f"{path}: expected a JSON object with \"format\": \"{FORMAT}\" and a "
                          "\"phrases\" object (concept -> list of phrases)")
    book = {}
    for concept, items in obj["phrases"].items():
        if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
            raise PhraseError(f"{path}: the phrases of {concept!r} must be a list of strings")
        book.setdefault(normalise(concept), []).extend(p.strip() for p in items if p.strip())
    return PhraseBook(book, str(path), hashlib.sha256(raw).hexdigest())


def write_phrase_file(path: str | os.PathLike, phrases: dict[str, list[str]], generator: dict) -> None:
    obj = {"format": FORMAT, "generator": generator, "phrases": phrases}
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
