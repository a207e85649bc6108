"""Which classes a job predicts: `resolve_classes`, checked before any compute.

Priority of the class list: explicit `names` > `names_file` (one per line, blank lines ignored) >
the keys of `descriptions_file` (only when nothing else is given; a JSON object class name -> list
of sentences, the CuPL format) > the pool's own class names. Names are compared normalised
(lowercase, `_` and `-` read as spaces, whitespace collapsed). When the pool has labels, the class
list must match the pool's classes (as a set; the order is the user's) and the labels are remapped
to the resolved order. Pools whose label names were synthesised ('0', '1', ...) map the user's
names by index instead.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Sequence

import numpy as np

from adapt.data.base import Pool, PoolError


@dataclasses.dataclass(frozen=True)
class ResolvedClasses:
    names: list[str]
    labels: np.ndarray | None  # (N,) int32 into `names`, -1 unknown; None when the pool has none
    descriptions: dict[str, list[str]] | None  # keyed by `names`
    descriptions_sha256: str | None


def normalise(name: str) -> str:
    """Case/whitespace/`_`/`-` insensitive form used for every name comparison."""
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


def _read_text(path: str | os.PathLike, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise PoolError(f"cannot read {what} {os.fspath(path)}: {e.strerror or e}") from None


def _load_descriptions(path) -> tuple[dict[str, list[str]], str]:
    raw = _read_text(path, "descriptions file")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PoolError(f"descriptions file {os.fspath(path)} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise PoolError(f"descriptions file {os.fspath(path)}: expected a JSON object "
                        f"{{class name: [sentences]}}, got {type(obj).__name__}")
    bad = [k for k, v in obj.items()
           if not isinstance(v, list) or not v or not all(isinstance(s, str) and s.strip()
                                                          for s in v)]
    if bad:
        raise PoolError(f"descriptions file {os.fspath(path)}: the value of every class must be "
                        f"a non-empty list of non-empty strings; not so for {bad}")
    return obj, hashlib.sha256(raw).hexdigest()


def _check_names(names: list[str], origin: str) -> list[str]:
    cleaned = []
    for j, n in enumerate(names):
        if not isinstance(n, str):
            raise PoolError(f"class names from {origin}: entry {j} is {type(n).__name__}, "
                            "not a string")
        n = " ".join(n.split())
        if not normalise(n):
            raise PoolError(f"class names from {origin}: entry {j} is empty")
        cleaned.append(n)
    seen: dict[str, str] = {}
    dups = []
    for n in cleaned:
        key = normalise(n)
        if key in seen:
            dups.append(f"'{seen[key]}' / '{n}'")
        seen.setdefault(key, n)
    if dups:
        raise PoolError(f"class names from {origin}: duplicates (compared ignoring case, "
                        f"whitespace, '_' and '-'): {', '.join(dups)}")
    return cleaned


def _require_same(a_keys, b_keys, describe) -> None:
    """PoolError(describe(missing, extra)) unless the key sets are equal; missing = in a only."""
    a, b = set(a_keys), set(b_keys)
    missing, extra = sorted(a - b), sorted(b - a)
    if missing or extra:
        raise PoolError(describe(missing, extra))


def _choose_names(pool: Pool, names, names_file, descriptions, descriptions_file):
    """(the class list, where it comes from): `names`, else the names file, else the descriptions
    file's keys, else the pool's own (real) class names."""
    pool_names = pool.class_names
    synthetic = bool(getattr(pool, "label_names_synthetic", False))
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    if names:
        return list(names), "the `names` option"
    if names_file:
        text = _read_text(names_file, "class names file").decode("utf-8-sig", "replace")
        resolved = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if not resolved:
            raise PoolError(f"class names file {os.fspath(names_file)} holds no names")
        return resolved, f"names file {os.fspath(names_file)}"
    if descriptions is not None:
        return list(descriptions), f"descriptions file {os.fspath(descriptions_file)}"
    if pool_names and not synthetic:
        return list(pool_names), f"the pool ({pool.source})"
    if pool_names:
        raise PoolError(f"the pool {pool.source} has labels but no class names; give the names "
                        "(`names` or `names_file`), in label order")
    raise PoolError(f"no class names: the pool {pool.source} has none; give `names`, "
                    "`names_file` or `descriptions_file`")


def _remap_labels(pool: Pool, resolved: list[str], norm: list[str], origin: str):
    """The pool's (N,) labels as indices into `resolved` (-1 stays -1); None when unlabelled.

    Synthetic pool names ('0'..'K-1') map by index; real ones by normalised name, and must be the
    same set as the class list."""
    labels, pool_names = pool.labels(), pool.class_names
    if labels is None or pool_names is None:
        return labels
    labels = np.asarray(labels, dtype=np.int32)
    if getattr(pool, "label_names_synthetic", False):
        top = int(labels.max()) if labels.size else -1
        if top >= len(resolved):
            raise PoolError(f"the pool's labels go up to {top} but {origin} gives only "
                            f"{len(resolved)} class names (names map to labels by index)")
        return labels
    pool_norm = [normalise(n) for n in pool_names]
    dirs = getattr(pool, "class_dirs", None) or pool_names
    _require_same(pool_norm, norm, lambda missing, extra: (
        f"class names from {origin} do not match the labelled classes of the pool "
        f"({pool.source}): missing (in the pool, not in the list): {missing}; extra "
        f"(in the list, not in the pool): {extra}; pool classes: {list(dirs)}"))
    where = {k: j for j, k in enumerate(norm)}
    table = np.asarray([where[k] for k in pool_norm] + [-1], dtype=np.int32)
    return table[labels]  # -1 indexes the trailing -1


def _match_descriptions(descriptions: dict, descriptions_file, resolved: list[str],
                        norm: list[str]) -> dict[str, list[str]]:
    """The descriptions keyed by the resolved class names (keys compared normalised)."""
    by_norm = {normalise(k): k for k in descriptions}
    if len(by_norm) != len(descriptions):
        raise PoolError(f"descriptions file {os.fspath(descriptions_file)}: duplicate keys "
                        "(compared ignoring case, whitespace, '_' and '-')")
    _require_same(norm, by_norm, lambda missing, extra: (
        f"descriptions file {os.fspath(descriptions_file)} does not match the class "
        f"list: classes without descriptions: {[resolved[norm.index(k)] for k in missing]}; "
        f"descriptions for unknown classes: {[by_norm[k] for k in extra]}"))
    return {n: list(descriptions[by_norm[k]]) for n, k in zip(resolved, norm)}


def resolve_classes(pool: Pool, names: Sequence[str] | str | None = None,
                    names_file: str | os.PathLike | None = None,
                    descriptions_file: str | os.PathLike | None = None) -> ResolvedClasses:
    """The class list, labels remapped to it and checked descriptions; raises one PoolError."""
    descriptions, desc_sha = (None, None)
    if descriptions_file:
        descriptions, desc_sha = _load_descriptions(descriptions_file)
    resolved, origin = _choose_names(pool, names, names_file, descriptions, descriptions_file)
    resolved = _check_names(resolved, origin)
    if not resolved:
        raise PoolError(f"no class names from {origin}")
    norm = [normalise(n) for n in resolved]
    labels = _remap_labels(pool, resolved, norm, origin)
    if descriptions is not None:
        descriptions = _match_descriptions(descriptions, descriptions_file, resolved, norm)
    return ResolvedClasses(resolved, labels, descriptions, desc_sha)
