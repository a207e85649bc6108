"""The CLIP byte-level BPE tokenizer, read from local files only.

Read from a checkpoint folder (`vocab.json` + `merges.txt`, else `tokenizer.json`), or, when no folder
is given, from the copy the package ships (`adapt/assets/clip-tokenizer`, OpenAI's CLIP BPE files). A
folder without tokenizer files is an error naming the folder and the files it lacks; it never falls back
to the shipped copy.
The vocabulary must have 49,408 entries and "a photo of a cat." must encode to the known ids;
anything else is an error, never a fallback.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer

from adapt import assets

VOCAB_SIZE = 49408
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
CHECK_TEXT = "a photo of a cat."
CHECK_IDS = [49406, 320, 1125, 539, 320, 2368, 269, 49407]


def shipped_tokenizer_dir() -> Path:
    """The CLIP tokenizer files shipped inside the package."""
    return assets.path("clip-tokenizer")


def has_tokenizer_files(folder: str | Path) -> bool:
    return not missing_tokenizer_files(folder)


def missing_tokenizer_files(folder: str | Path) -> list[str]:
    """[] if `folder` holds a tokenizer, else the names it lacks (vocab.json, merges.txt, tokenizer.json)."""
    f = Path(folder)
    if (f / "tokenizer.json").is_file():
        return []
    pair = [n for n in ("vocab.json", "merges.txt") if not (f / n).is_file()]
    return pair + ["tokenizer.json"] if pair else []


def no_tokenizer_message(folder: str | Path) -> str:
    return (f"no CLIP tokenizer files in {folder}: missing {', '.join(missing_tokenizer_files(folder))} "
            "(needs vocab.json + merges.txt, or tokenizer.json)")


def _backend_from_files(folder: Path):
    """A `tokenizers.Tokenizer` built from vocab.json + merges.txt, else from tokenizer.json."""
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        # local: transformers takes seconds to import. 5.x silently ignores `vocab_file=`; pass the
        # contents instead.
        from transformers import CLIPTokenizer

        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        merges = []
        for line in (folder / "merges.txt").read_text(encoding="utf-8").splitlines():
            if line.startswith("#version") or not line.strip():
                continue
            a, b = line.split()
            merges.append((a, b))
        return CLIPTokenizer(vocab=vocab, merges=merges).backend_tokenizer
    return Tokenizer.from_file(str(folder / "tokenizer.json"))


class FramedTokenizer:
    """Texts -> fixed-length id arrays `(N, T)` int32: [start, tokens..., end, pad...], truncated to T so
    that the end token stays last. Subclasses set `backend` (a `tokenizers.Tokenizer`), `sot_id`,
    `eot_id` and `pad_id`."""

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """One text -> ids with start and end tokens, not padded, not truncated."""
        ids = self.backend.encode(text, add_special_tokens=False).ids
        return [self.sot_id, *ids, self.eot_id]

    def __call__(self, texts: Sequence[str], context_length: int = 77) -> np.ndarray:
        """Texts -> `(N, context_length)` int32; too long texts keep their first tokens and the end token."""
        if isinstance(texts, str):
            texts = [texts]
        out = np.full((len(texts), context_length), self.pad_id, np.int32)
        for i, enc in enumerate(self.backend.encode_batch(list(texts), add_special_tokens=False)):
            ids = [self.sot_id, *enc.ids[: context_length - 2], self.eot_id]
            out[i, : len(ids)] = ids
        return out


class ClipTokenizer(FramedTokenizer):
    """Texts -> fixed-length id arrays `(N, T)` int32: [SOT, tokens..., EOT, pad...], truncated to T."""

    def __init__(self, backend, source: str, pad_id: int = 0):
        self.backend = backend
        self.source = source
        self.pad_id = pad_id
        size = backend.get_vocab_size(with_added_tokens=True)
        if size != VOCAB_SIZE:
            raise ValueError(f"CLIP tokenizer from {source} has {size} tokens, expected {VOCAB_SIZE}")
        self.sot_id, self.eot_id = backend.token_to_id(SOT), backend.token_to_id(EOT)
        got = self.encode(CHECK_TEXT)
        if got != CHECK_IDS:
            raise ValueError(f"CLIP tokenizer from {source} encodes {CHECK_TEXT!r} as {got}, expected {CHECK_IDS}")



def load_tokenizer(folder: str | Path | None = None) -> ClipTokenizer:
    """The tokenizer of a checkpoint folder, or the shipped CLIP tokenizer when `folder` is None.

    FileNotFoundError naming the folder and its missing files if there is no tokenizer there.
    """
    if folder is not None:
        if not has_tokenizer_files(folder):
            raise FileNotFoundError(no_tokenizer_message(folder))
        return ClipTokenizer(_backend_from_files(Path(folder)), str(folder))
    cand = shipped_tokenizer_dir()
    if not has_tokenizer_files(cand):
        raise FileNotFoundError(no_tokenizer_message(cand) + " (the installed package is incomplete: "
                                "reinstall vlm-adapt)")
    return ClipTokenizer(_backend_from_files(cand), str(cand))
