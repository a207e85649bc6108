"""The multilingual tokenizer of a MetaCLIP 2 checkpoint folder (XLM-V style), read from local files only.

MetaCLIP 2 checkpoints (Hugging Face `MetaClip2Model`) tokenise with an XLM-RoBERTa-type tokenizer
(`<s>` = 0, `<pad>` = 1, `</s>` = 2 in the released XLM-V vocabulary of 901,629 tokens). We read the
folder's `tokenizer.json` with the `tokenizers` library (no hub id, no download) and frame each text as
transformers' XLMRobertaTokenizer does: `<s> tokens... </s>`, truncated so `</s>` stays last, padded
with `<pad>` to the context length. The special tokens are named by `tokenizer_config.json` when it
has them, else the XLM-R defaults.

Checks (errors, never a fallback): the folder must hold `tokenizer.json` (a sentencepiece-only folder
must be converted: `AutoTokenizer.from_pretrained(folder).save_pretrained(folder)` writes it); the
end token must be the config's `eos_token_id` (the text tower pools there); the vocabulary may not
exceed the checkpoint's embedding table (larger ids would be clamped silently by `jnp.take`); a
check sentence must encode without unknown tokens.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from tokenizers import Tokenizer

from adapt.models.tokenizer import FramedTokenizer

log = logging.getLogger(__name__)
CHECK_TEXT = "a photo of a cat."
DEFAULTS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def _special_tokens(folder: Path) -> dict[str, str]:
    out = dict(DEFAULTS)
    path = folder / "tokenizer_config.json"
    if path.is_file():
        raw = json.loads(path.read_text(encoding="utf-8"))
        for key in DEFAULTS:
            v = raw.get(key)
            v = v.get("content") if isinstance(v, dict) else v
            if isinstance(v, str) and v:
                out[key] = v
    return out


class MetaClip2Tokenizer(FramedTokenizer):
    """Texts -> fixed-length id arrays `(N, T)` int32: [<s>, tokens..., </s>, <pad>...], truncated to T."""

    def __init__(self, folder: str | Path, vocab_size: int, eos_token_id: int):
        folder = Path(folder)
        file = folder / "tokenizer.json"
        if not file.is_file():
            raise FileNotFoundError(missing_message(folder))
        self.source = str(folder)
        self.backend = Tokenizer.from_file(str(file))
        special = _special_tokens(folder)
        ids = {k: self.backend.token_to_id(v) for k, v in special.items()}
        if None in (ids["bos_token"], ids["eos_token"], ids["pad_token"]):
            raise ValueError(f"MetaCLIP 2 tokenizer in {folder}: special tokens {special} not all in its vocabulary")
        self.sot_id, self.eot_id, self.pad_id, self.unk_id = (ids[k] for k in DEFAULTS)
        if self.eot_id != eos_token_id:
            raise ValueError(f"MetaCLIP 2 tokenizer in {folder}: end token {special['eos_token']!r} has id "
                             f"{self.eot_id}, config.json's text eos_token_id is {eos_token_id}")
        if self.vocab_size > vocab_size:
            raise ValueError(f"MetaCLIP 2 tokenizer in {folder} has {self.vocab_size} tokens, more than the "
                             f"text embedding table's {vocab_size} rows (config.json vocab_size)")
        if self.vocab_size < vocab_size:
            log.warning("MetaCLIP 2 tokenizer in %s has %d tokens for %d embedding rows", folder,
                        self.vocab_size, vocab_size)
        got = self.encode(CHECK_TEXT)
        if got[0] != self.sot_id or got[-1] != self.eot_id or len(got) < 4 or self.unk_id in got[1:-1]:
            raise ValueError(f"MetaCLIP 2 tokenizer in {folder} encodes {CHECK_TEXT!r} as {got}: not a "
                             "usable text tokenizer")


def missing_message(folder: str | Path) -> str:
    extra = (" (found sentencepiece.bpe.model only: convert it once with transformers' "
             "AutoTokenizer.from_pretrained(folder).save_pretrained(folder))"
             if (Path(folder) / "sentencepiece.bpe.model").is_file() else "")
    return (f"no MetaCLIP 2 tokenizer in {folder}: missing tokenizer.json{extra}; copy the checkpoint's "
            "tokenizer files into the folder")
