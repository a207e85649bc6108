"""Frozen towers and the loader that picks one from a config.

`load_model(kind, path)`: an empty path means the embedded offline default model; a folder is read
as a checkpoint whose kind comes from its `config.json` (`model_type`).
"""
from __future__ import annotations

import json
from pathlib import Path


def model_kind(path: str) -> str:
    folder = Path(path)
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"model folder {path} has no config.json")
    model_type = json.loads(config.read_text()).get("model_type", "")
    if model_type == "clip":
        return "clip"
    raise ValueError(f"model folder {path}: model_type {model_type!r} is not supported (expected 'clip')")


def load_model(kind: str = "auto", path: str = ""):
    """Returns a frozen model (see adapt.models.base)."""
    if kind == "auto":
        kind = model_kind(path) if path else "offline"
    if kind == "offline":
        if path:
            raise ValueError("model.kind='offline' takes no model.path")
        from adapt.models.offline import load_offline_default

        return load_offline_default()
    if kind == "clip":
        if not path:
            raise ValueError("model.kind='clip' needs model.path, a local checkpoint folder")
        from adapt.models.clip import load_clip

        return load_clip(path)
    raise ValueError(f"unknown model kind {kind!r}; expected auto, offline or clip")


def model_source(kind: str, path: str) -> dict:
    """How an artifact records where its model comes from."""
    return dict(kind=kind, path=str(Path(path).resolve()) if path else "")
