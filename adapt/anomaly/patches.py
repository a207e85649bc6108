"""Patch features of a pool: extracted once, sharded, cached and resumable (via `adapt.features.embed`).

A frozen model gives patch maps through one of (checked in this order):
  patch_features(pixels, layers) -> list of (B, h, w, C)   CLIP: 0-based block indices
  stage_maps(pixels, strides)    -> list of (B, h, w, C)   the offline CNN: stage strides (8, 16, ...)
  patch_tokens(pixels, layers)   -> list of (B, P, C)      square grids, reshaped here

`PatchModel` wraps such a model so that `embed_pool` caches its patch maps as image views next to
the image embeddings; the model id it reports names the layers and the input size, so the cache key
changes with them. Every image is first resized to S x S (bicubic, aspect ratio not kept, as the
official MuSc code does) by `SquarePool`, so pools of mixed image sizes are handled consistently and
nothing is cropped away (a defect near the border stays in the picture).
"""
from __future__ import annotations

import dataclasses
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from adapt.data.base import Pool
from adapt.features.embed import embed_pool
from adapt.models.base import Preprocess

PATCH_VIEW = "patches_"
CNN_WINDOW = 0.1  # offline CNN defaults (issue 21): see default_window / default_rscin
CNN_RSCIN = False
MAX_CHUNK_BYTES = 256 * 2**20  # patch maps per cache chunk


def model_family(model) -> str:
    if hasattr(model, "patch_features") or hasattr(model, "patch_tokens"):
        return "vit"
    if hasattr(model, "stage_maps"):
        return "cnn"
    raise ValueError(f"model {getattr(model, 'model_id', type(model).__name__)} gives no patch "
                     "features (needs patch_features, stage_maps or patch_tokens); MuSc cannot run")


def default_layers(model) -> tuple[int, ...]:
    """MuSc's layers: blocks d/4, d/2, 3d/4, d (1-based; here 0-based) of a ViT of depth d; the
    stride-16 stage map of the offline CNN (the issue's calibration setting)."""
    if model_family(model) == "cnn":
        return (16,)
    depth = int(model.cfg.vision.depth)
    return tuple(sorted({max(0, depth * k // 4 - 1) for k in (1, 2, 3, 4)}))


def default_degrees(model) -> tuple[int, ...]:
    """LNAMD degrees: (1, 3, 5) (spec) for ViTs; (3,) for the offline CNN (issue calibration)."""
    return (3,) if model_family(model) == "cnn" else (1, 3, 5)


def default_window(model) -> float:
    """MSM rank window [0, frac (N - 1)): the spec's 0.3 for ViTs; CNN_WINDOW for the offline CNN
    (chosen on held-out CutPaste pools over anomaly ratios 5-50%, experiments/musc/README.md R5)."""
    return CNN_WINDOW if model_family(model) == "cnn" else 0.3


def default_rscin(model) -> bool:
    """RsCIN on for ViTs (spec); CNN_RSCIN for the offline CNN (chosen as default_window)."""
    return CNN_RSCIN if model_family(model) == "cnn" else True


def patch_maps(model, pixels, layers: tuple[int, ...]) -> list:
    """(B, H, W, 3) preprocessed pixels -> list of (B, h, w, C), one per layer, in that order."""
    if hasattr(model, "patch_features"):
        return list(model.patch_features(pixels, tuple(layers)))
    if hasattr(model, "stage_maps"):
        return list(model.stage_maps(pixels, strides=tuple(layers)))
    if hasattr(model, "patch_tokens"):
        out = []
        for t in model.patch_tokens(pixels, tuple(layers)):
            g = int(round(np.sqrt(t.shape[1])))
            if g * g != t.shape[1]:
                raise ValueError(f"{t.shape[1]} patch tokens do not form a square grid")
            out.append(t.reshape(t.shape[0], g, g, t.shape[-1]))
        return out
    model_family(model)  # raises the clear error
    return []


class PatchModel(nnx.Module):
    """A frozen model seen by `embed_pool`: embedding = the model's, views = its patch maps."""

    def __init__(self, model, layers: tuple[int, ...], image_size: int = 0):
        self.inner = model
        self.layers = tuple(int(v) for v in layers)
        pre = model.preprocess
        size = int(image_size or pre.image_size)
        self.preprocess = Preprocess(image_size=size, resize_size=size, mean=tuple(pre.mean),
                                     std=tuple(pre.std), interpolation=pre.interpolation)
        self.model_id = f"{model.model_id}|patch-maps:{','.join(map(str, self.layers))}|square:{size}"
        self.weights_hash = model.weights_hash
        self.embed_dim = model.embed_dim
        self.logit_scale = model.logit_scale

    def encode_images(self, pixels):
        return self.inner.encode_images(pixels)

    def image_views(self, pixels) -> dict:
        return {f"{PATCH_VIEW}{i}": m for i, m in enumerate(patch_maps(self.inner, pixels, self.layers))}


class SquarePool(Pool):
    """Another pool with every image resized to size x size (aspect ratio not kept)."""

    def __init__(self, pool: Pool, size: int, interpolation: str = "bicubic"):
        self.pool, self.size, self.interpolation = pool, int(size), interpolation
        self.class_names = pool.class_names
        self.label_names_synthetic = getattr(pool, "label_names_synthetic", False)
        self.prescan_skipped = list(getattr(pool, "prescan_skipped", []))
        self.source = pool.source

    def __len__(self) -> int:
        return len(self.pool)

    def item_id(self, i: int) -> str:
        return self.pool.item_id(i)

    def load(self, i: int) -> Image.Image:
        return square_image(self.pool.load(i), self.size, self.interpolation)

    def load_with_digest(self, i: int) -> tuple[Image.Image, str]:
        image, digest = self.pool.load_with_digest(i)
        return square_image(image, self.size, self.interpolation), digest

    def digest(self, i: int) -> str:
        return self.pool.digest(i)

    def labels(self):
        return self.pool.labels()

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"square:" + self.pool.fingerprint().encode())
        h.update(f"{self.size}:{self.interpolation}".encode())
        return h.hexdigest()


def square_image(image: Image.Image, size: int, interpolation: str = "bicubic") -> Image.Image:
    image = image.convert("RGB")
    if image.size == (size, size):
        return image
    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                "nearest": Image.Resampling.NEAREST}[interpolation]
    return image.resize((size, size), resample)


@dataclasses.dataclass
class PatchFeatures:
    """maps: one (M, h, w, C) float32 array per layer; embeddings (M, D) unit rows; rows follow
    `kept` (pool indices of the decodable images); skipped: (item id, reason)."""

    maps: list[np.ndarray]
    embeddings: np.ndarray
    kept: np.ndarray
    skipped: list[tuple[str, str]]
    image_size: int
    cache_dir: object = None


def extract(model, pool: Pool, mesh, layers: tuple[int, ...], *, image_size: int = 0,
            cache_root=None, batch_size: int = 32, chunk_size: int = 1024, workers: int = 4,
            progress: bool = True) -> PatchFeatures:
    """Patch maps of `layers` and embeddings of every decodable image of `pool`, cached on disk."""
    wrapped = PatchModel(model, layers, image_size)
    size = wrapped.preprocess.image_size
    square = SquarePool(pool, size, wrapped.preprocess.interpolation)
    per_image = _bytes_per_image(model, layers, size)
    chunk = int(max(batch_size, min(chunk_size, MAX_CHUNK_BYTES // max(per_image, 1))))
    emb = embed_pool(wrapped, square, mesh, cache_root=cache_root, batch_size=batch_size,
                     chunk_size=chunk, workers=workers, progress=progress)
    maps = [emb.views[f"{PATCH_VIEW}{i}"] for i in range(len(layers))]
    return PatchFeatures(maps, emb.embeddings, emb.kept, emb.skipped, size, emb.cache_dir)


def _bytes_per_image(model, layers, size: int) -> int:
    """Bytes of one image's patch maps, from an abstract evaluation (no compute)."""
    graphdef, state = nnx.split(model)

    def f(state, x):
        return patch_maps(nnx.merge(graphdef, state), x, tuple(layers))

    shapes = jax.eval_shape(f, state, jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    return int(sum(np.prod(s.shape) * 4 for s in shapes))
