"""Frozen towers and the loader that picks one from a config.

`load_model(kind, path)`: an empty path means the embedded offline default model; a folder is read
as a checkpoint whose kind comes from its `config.json` (`model_type`).
`load_image_encoder(path)`: a second, image-only frozen tower (DINO / DINOv2, or a CLIP image side).
Towers: clip (clip_load, clip_text, clip_vision), siglip / siglip2 (siglip, siglip_load, siglip_towers), dino (dino_load), the offline default (offline:
efficientnet + minilm tied through grounding and imagenet_texts), resnet_onnx; shared: base,
checkpoint (reading a checkpoint folder), torch_pickle, tokenizer, preprocess (pixels for a tower).
May import: core, data, vocab.
"""
from __future__ import annotations

import json
from pathlib import Path

from adapt.models.clip import load_clip
from adapt.models.dino import load_dino
from adapt.models.offline import load_offline_default
from adapt.models.siglip import load_siglip


def model_kind(path: str) -> str:
    folder = Path(path)
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"model folder {path} has no config.json")
    model_type = json.loads(config.read_text()).get("model_type", "")
    if model_type == "clip":
        return "clip"
    if model_type in SIGLIP_KINDS:
        return model_type
    if model_type in IMAGE_ONLY:
        raise ValueError(f"model folder {path}: model_type {model_type!r} is an image-only encoder "
                         "(no text tower); use it as a second image tower (load_image_encoder)")
    raise ValueError(f"model folder {path}: model_type {model_type!r} is not supported (expected 'clip', 'siglip' or 'siglip2')")


IMAGE_ONLY = ("vit", "dinov2")  # DINO (ViTModel) and DINOv2 checkpoints
SIGLIP_KINDS = ("siglip", "siglip2")  # SiglipModel, Siglip2Model (model_type in config.json)


def load_image_encoder(path: str):
    """A frozen image tower from a local folder, by its config.json `model_type`.

    "vit" (DINO) and "dinov2": `adapt.models.dino.load_dino`; "clip", "siglip", "siglip2": the model (its
    `encode_images` is the image tower). The result has model_id, weights_hash, preprocess, embed_dim
    and `encode_images(pixels (B, H, W, 3)) -> (B, D)` L2-normalised, so `embed_pool` can cache it.
    """
    if not path:
        raise ValueError("an image encoder needs a local checkpoint folder")
    folder = Path(path)
    config = folder / "config.json"
    if not folder.is_dir():
        raise FileNotFoundError(f"image encoder folder {path} does not exist")
    if not config.is_file():
        raise FileNotFoundError(f"image encoder folder {path} has no config.json")
    model_type = json.loads(config.read_text()).get("model_type", "")
    if model_type in IMAGE_ONLY:
        return load_dino(path)
    if model_type == "clip":
        return load_clip(path)
    if model_type in SIGLIP_KINDS:
        return load_siglip(path)
    raise ValueError(f"image encoder folder {path}: model_type {model_type!r} is not supported "
                     f"(expected one of {', '.join(repr(k) for k in (*IMAGE_ONLY, 'clip', *SIGLIP_KINDS))})")


def load_model(kind: str = "auto", path: str = "", grounding: str = "wordnet"):
    """Returns a frozen model (see adapt.models.base). `grounding` ("wordnet" | "none") is the
    offline model's class-name tie (adapt/models/grounding.py); CLIP checkpoints ignore it."""
    if kind == "auto":
        kind = model_kind(path) if path else "offline"
    if kind == "offline":
        if path:
            raise ValueError("model.kind='offline' takes no model.path")
        return load_offline_default(grounding=grounding)
    if kind == "clip":
        if not path:
            raise ValueError("model.kind='clip' needs model.path, a local checkpoint folder")
        return load_clip(path)
    if kind in SIGLIP_KINDS:
        if not path:
            raise ValueError(f"model.kind={kind!r} needs model.path, a local checkpoint folder")
        found = model_kind(path)
        if found != kind:
            raise ValueError(f"model.kind={kind!r} but {path}/config.json has model_type {found!r}")
        return load_siglip(path)
    raise ValueError(f"unknown model kind {kind!r}; expected auto, offline, clip, siglip or siglip2")


def model_source(kind: str, path: str) -> dict:
    """How an artifact records where its model comes from."""
    return dict(kind=kind, path=str(Path(path).resolve()) if path else "")
