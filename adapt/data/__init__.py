"""Image pools: one `Pool` interface over folders, tfds data dirs, IDX files, arrays and presets.

`open_pool(cfg)` builds the pool a config asks for; `make_pool_config()` is the config block every
method shares. Kinds: folder, tfds, idx, fashion_mnist, textile, digits (`arrays` is Python-API
only: build `ArrayPool` directly).
May import: core.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import ml_collections

from adapt.data.arrays import ArrayPool, SubsetPool, subsample
from adapt.data.base import BadImage, Pool, PoolError
from adapt.data.classes import ResolvedClasses, normalise, resolve_classes
from adapt.data.decode import IMAGE_EXTENSIONS, array_to_image, decode_image
from adapt.data.defects import defect_pool_from_config
from adapt.data.folder import FolderPool
from adapt.data.idx import IdxPool, parse_idx, write_idx
from adapt.data.presets import (DIGIT_CLASSES, FASHION_MNIST_CLASSES, TEXTILE_CLASSES, digits_pool,
                                fashion_mnist_pool, textile_pool)
from adapt.data.tfds_pool import TfdsPool

KINDS = ("folder", "tfds", "idx", "fashion_mnist", "textile", "digits", "defects")

POOL_DEFAULTS = dict(kind="folder", path="", split="test", name="", image_key="image",
                     label_key="label", invert=False, limit=0, seed=0,
                     defect_ratio=0.0)


def make_pool_config(**overrides):
    """The pool block of every config (an `ml_collections.ConfigDict`, locked: typos are errors).

    Fields: kind, path, split ('test'), name (tfds), image_key, label_key, invert, limit (0 = all,
    else a seeded label-free subsample of that many), seed, defect_ratio (kind 'defects' only: the
    defective share of its 285 images; 0 = the standard 15).
    """
    unknown = sorted(set(overrides) - set(POOL_DEFAULTS))
    if unknown:
        raise KeyError(f"unknown pool config fields {unknown}; known: {sorted(POOL_DEFAULTS)}")
    cfg = ml_collections.ConfigDict(dict(POOL_DEFAULTS))
    for k, v in overrides.items():
        setattr(cfg, k, v)
    cfg.lock()
    return cfg


def _field(cfg, key):
    if isinstance(cfg, Mapping):
        return cfg.get(key, POOL_DEFAULTS[key])
    return getattr(cfg, key, POOL_DEFAULTS[key])


def _idx_paths(path: str) -> tuple[str, str | None]:
    """'images[,labels]'; with one path, MNIST-style '*images-idx3*' finds its '*labels-idx1*'."""
    parts = [p.strip() for p in path.split(",") if p.strip()]
    if not parts or len(parts) > 2:
        raise PoolError(f"kind 'idx': path must be 'images.idx[,labels.idx]', got '{path}'")
    if len(parts) == 2:
        return parts[0], parts[1]
    head, base = os.path.split(parts[0])
    if "images-idx3" in base:
        guess = os.path.join(head, base.replace("images-idx3", "labels-idx1"))
        if os.path.isfile(guess):
            return parts[0], guess
    return parts[0], None


def open_pool(cfg) -> Pool:
    """The pool `cfg` describes (see `make_pool_config`); raises PoolError before any compute."""
    kind = str(_field(cfg, "kind")).strip().lower()
    path = str(_field(cfg, "path") or "")
    split = str(_field(cfg, "split") or "test")
    invert = bool(_field(cfg, "invert"))
    if kind == "folder":
        if not path:
            raise PoolError("kind 'folder' needs `path`, the image folder")
        pool = FolderPool(os.path.expanduser(path), invert=invert)
    elif kind == "tfds":
        pool = TfdsPool(str(_field(cfg, "name")), data_dir=os.path.expanduser(path) or None,
                        split=split, image_key=str(_field(cfg, "image_key")),
                        label_key=str(_field(cfg, "label_key")), invert=invert)
    elif kind == "idx":
        images, labels = _idx_paths(os.path.expanduser(path))
        pool = IdxPool(images, labels, invert=invert)
    elif kind == "fashion_mnist":
        pool = fashion_mnist_pool(split, invert=invert, **({"root": path} if path else {}))
    elif kind == "textile":
        pool = textile_pool(invert=invert)
    elif kind == "digits":
        pool = digits_pool(invert=invert)
    elif kind == "defects":  # seeded CutPaste defects in one Fashion-MNIST class (pool.name)
        pool = defect_pool_from_config(cfg)
    elif kind == "arrays":
        raise PoolError("kind 'arrays' is Python-API only: build adapt.data.ArrayPool(images, ...) "
                        "and pass the pool itself")
    else:
        raise PoolError(f"unknown pool kind '{kind}'; choose one of {', '.join(KINDS)}")
    limit = int(_field(cfg, "limit") or 0)
    if limit < 0:
        raise PoolError(f"pool limit must be >= 0 (0 = all), got {limit}")
    return subsample(pool, limit, int(_field(cfg, "seed") or 0))


__all__ = [
    "ArrayPool", "BadImage", "DIGIT_CLASSES", "FASHION_MNIST_CLASSES", "FolderPool",
    "IMAGE_EXTENSIONS", "IdxPool", "KINDS", "POOL_DEFAULTS", "Pool", "PoolError",
    "ResolvedClasses", "SubsetPool", "TEXTILE_CLASSES", "TfdsPool", "array_to_image",
    "decode_image", "digits_pool", "fashion_mnist_pool", "make_pool_config", "normalise",
    "open_pool", "parse_idx", "resolve_classes", "subsample", "textile_pool", "write_idx",
]
