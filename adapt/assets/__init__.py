"""Data files the engine reads at run time, shipped inside the package (package data, so a wheel has
them). Sources and licences: README.md beside this file.

  imagenet_classes.json       the 1000 ImageNet-1k classes in sorted-WNID order: {idx, wnid, name,
                              synonyms, gloss} (the offline default model's tie between its towers)
  clip-tokenizer/vocab.json   the CLIP byte-level BPE vocabulary (49,408 tokens)
  clip-tokenizer/merges.txt   its merge list
  clip_templates.json         the 80 CLIP ImageNet prompt templates (prompts.template_set="clip80")
"""
from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def path(*parts: str) -> Path:
    """The shipped file or folder `FOLDER/parts...`; FileNotFoundError naming it if the install lacks it."""
    p = FOLDER.joinpath(*parts)
    if not p.exists():
        raise FileNotFoundError(f"{p} missing from the installed package: reinstall vlm-adapt "
                                "(pip install .), whose package data carries it")
    return p
