"""Frozen towers and the loader that picks one from a config.

`load_model(kind, path, grounding, arch)`: an empty path means the embedded offline default model; a
folder is read as a checkpoint whose kind comes from its `config.json` (`model_type`); a single
`.pt`/`.bin`/`.safetensors` file is an OpenCLIP state dict, whose architecture `arch` names.
`load_image_encoder(path)`: a second, image-only frozen tower (DINO / DINOv2, or a CLIP-like image side).
Towers: clip (clip_load, clip_text, clip_vision), openclip (openclip_arch: OpenCLIP state dicts on
the CLIP towers), metaclip2 (metaclip2_tokenizer), siglip / siglip2 (siglip, siglip_load,
siglip_towers), dino (dino_load), the offline default (offline: efficientnet + minilm tied through
grounding and imagenet_texts), resnet_onnx, align (align_load, align_vision); shared: base,
checkpoint (reading a checkpoint folder), torch_pickle, tokenizer, preprocess (pixels for a tower).
May import: core, data, vocab.
"""
from __future__ import annotations

import json
from pathlib import Path

from adapt.models.align import load_align
from adapt.models.clip import load_clip
from adapt.models.dino import load_dino
from adapt.models.metaclip2 import load_metaclip2
from adapt.models.offline import load_offline_default
from adapt.models.openclip import SUFFIXES as OPENCLIP_SUFFIXES, load_openclip
from adapt.models.siglip import load_siglip

IMAGE_ONLY = ("vit", "dinov2")  # DINO (ViTModel) and DINOv2 checkpoints
SIGLIP_KINDS = ("siglip", "siglip2")
# config.json model_type -> (our kind, loader) of the checkpoint folders with a text tower
FOLDER_KINDS = {"clip": ("clip", load_clip), "metaclip_2": ("metaclip2", load_metaclip2),
                "siglip": ("siglip", load_siglip), "siglip2": ("siglip2", load_siglip),
                "align": ("align", load_align)}
FOLDER_LOADERS = {kind: load for kind, load in FOLDER_KINDS.values()}
KINDS = ("auto", "offline", "openclip", *FOLDER_LOADERS)


def _model_type(path: str) -> str:
    config = Path(path) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"model folder {path} has no config.json")
    return json.loads(config.read_text()).get("model_type", "")


def model_kind(path: str, arch: str = "") -> str:
    """The kind of the checkpoint at `path`: a folder by its config.json `model_type`; a state-dict file
    is "openclip" when `arch` names its architecture (the file itself does not say)."""
    if Path(path).is_file():
        if Path(path).suffix in OPENCLIP_SUFFIXES and arch:
            return "openclip"
        raise ValueError(f"model path {path} is a single file, which auto cannot tell apart: an OpenCLIP "
                         "state dict needs model.kind=openclip and model.arch (e.g. ViT-B-32); Hugging Face "
                         "checkpoints are folders with a config.json")
    model_type = _model_type(path)
    if model_type in FOLDER_KINDS:
        return FOLDER_KINDS[model_type][0]
    if model_type in IMAGE_ONLY:
        raise ValueError(f"model folder {path}: model_type {model_type!r} is an image-only encoder "
                         "(no text tower); use it as a second image tower (load_image_encoder)")
    raise ValueError(f"model folder {path}: model_type {model_type!r} is not supported (expected one of "
                     f"{', '.join(repr(t) for t in FOLDER_KINDS)})")


def load_image_encoder(path: str):
    """A frozen image tower from a local folder, by its config.json `model_type`.

    "vit" (DINO) and "dinov2": `adapt.models.dino.load_dino`; "clip", "metaclip_2", "siglip", "siglip2", "align":
    the model (its `encode_images` is the image tower). The result has model_id, weights_hash,
    preprocess, embed_dim and `encode_images(pixels (B, H, W, 3)) -> (B, D)` L2-normalised, so
    `embed_pool` can cache it.
    """
    if not path:
        raise ValueError("an image encoder needs a local checkpoint folder")
    if not Path(path).is_dir():
        raise FileNotFoundError(f"image encoder folder {path} does not exist")
    model_type = _model_type(path)
    if model_type in IMAGE_ONLY:
        return load_dino(path)
    if model_type in FOLDER_KINDS:
        return FOLDER_KINDS[model_type][1](path)
    raise ValueError(f"image encoder folder {path}: model_type {model_type!r} is not supported "
                     f"(expected one of {', '.join(repr(k) for k in (*IMAGE_ONLY, *FOLDER_KINDS))})")


def load_model(kind: str = "auto", path: str = "", grounding: str = "wordnet", arch: str = ""):
    """Returns a frozen model (see adapt.models.base). `grounding` ("wordnet" | "none") is the
    offline model's class-name tie (adapt/models/grounding.py); checkpoints ignore it. `arch` names
    an OpenCLIP state dict's architecture (adapt/models/openclip_arch.py); other kinds refuse it."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "auto":
        kind = model_kind(path, arch) if path else "offline"
    if arch and kind != "openclip":
        raise ValueError(f"model.arch={arch!r} is read only with model.kind=openclip (got kind {kind!r})")
    if kind == "offline":
        if path:
            raise ValueError("model.kind='offline' takes no model.path")
        return load_offline_default(grounding=grounding)
    if not path:
        what = "a .pt/.bin/.safetensors state dict file" if kind == "openclip" else "a local checkpoint folder"
        raise ValueError(f"model.kind={kind!r} needs model.path, {what}")
    if kind == "openclip":
        return load_openclip(path, arch)
    if model_kind(path) != kind:
        raise ValueError(f"model.kind={kind!r} but {path}/config.json has model_type {_model_type(path)!r}")
    return FOLDER_LOADERS[kind](path)


def model_source(kind: str, path: str, arch: str = "") -> dict:
    """How an artifact records where its model comes from (`arch`: only when set, OpenCLIP files)."""
    return dict(kind=kind, path=str(Path(path).resolve()) if path else "", **({"arch": arch} if arch else {}))
