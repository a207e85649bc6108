"""Seeded CutPaste-style defect pools: one Fashion-MNIST class, a few images with a pasted square.

A pool holds `n_normal` untouched test images of one class and `n_defect` more in which a square of
7-10 px (of 28) cut from an image of another class is pasted at a random place. The source square
is drawn among the positions where at least `min_foreground` of its pixels belong to the garment
(raw value > 32), so a defect is never a blank patch of background; the target place is uniform.
Images are then upscaled (bicubic, x8 -> 224 px) and, by default, inverted to dark on white.
Masks (the pasted squares) come with the pool, for pixel metrics. Everything follows from `seed`.

Pool config (kind "defects"): name = the class (Trouser, Bag, Sneaker, ...), seed, split, invert,
defect_ratio (0 = the issue's 15 of 285; else round(ratio * 285) defective, the total kept at 285),
path = the Fashion-MNIST folder (default /usr/share/datasets/fashion-mnist).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
from PIL import Image

from adapt.data.arrays import ArrayPool
from adapt.data.base import PoolError
from adapt.data.idx import parse_idx
from adapt.data.presets import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR

DEFECT_CLASSES = ["normal", "defect"]
FOREGROUND = 32


@dataclasses.dataclass(frozen=True)
class Paste:
    """One pasted square: donor test index and class, size, source and target (row, col) at 28 px."""

    donor: int
    donor_class: str
    size: int
    source: tuple[int, int]
    target: tuple[int, int]


def load_fashion_mnist(split: str = "test", root: str = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 images and (N,) labels of a Fashion-MNIST split."""
    prefix = {"test": "t10k", "train": "train"}.get(split)
    if prefix is None:
        raise PoolError(f"defects: split must be 'train' or 'test', got '{split}'")
    out = []
    for kind in ("images-idx3", "labels-idx1"):
        path = os.path.join(root, f"{prefix}-{kind}-ubyte.gz")
        if not os.path.isfile(path):
            raise PoolError(f"defects: {path} not found; install the data with "
                            "`apt-get install dataset-fashion-mnist`")
        with open(path, "rb") as f:
            out.append(parse_idx(f.read(), path))
    return out[0], out[1]


def class_index(name: str) -> int:
    low = [c.lower() for c in FASHION_MNIST_CLASSES]
    key = name.strip().lower()
    if key not in low:
        raise PoolError(f"defects: unknown Fashion-MNIST class {name!r}; choose from "
                        f"{FASHION_MNIST_CLASSES}")
    return low.index(key)


def paste_square(target: np.ndarray, donor: np.ndarray, rng: np.random.Generator,
                 size: int, min_foreground: float = 0.25) -> tuple[np.ndarray, np.ndarray, tuple, tuple] | None:
    """Pastes a size x size square of `donor` (H, W) into a copy of `target` (H, W).

    Returns (image, mask, source, target) or None when the donor has no square with enough garment.
    """
    h, w = target.shape
    fg = (donor > FOREGROUND).astype(np.float64)
    c = np.pad(fg.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    frac = (c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]) / size**2
    ys, xs = np.nonzero(frac >= min_foreground)
    if ys.size == 0:
        return None
    k = rng.integers(ys.size)
    sy, sx = int(ys[k]), int(xs[k])
    ty, tx = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    out, mask = target.copy(), np.zeros((h, w), bool)
    out[ty:ty + size, tx:tx + size] = donor[sy:sy + size, sx:sx + size]
    mask[ty:ty + size, tx:tx + size] = True
    return out, mask, (sy, sx), (ty, tx)


def make_defect_set(class_name: str = "Trouser", n_normal: int = 270, n_defect: int = 15,
                    sizes: tuple[int, int] = (7, 10), seed: int = 0, split: str = "test",
                    root: str = FASHION_MNIST_DIR, min_foreground: float = 0.25):
    """The pool at 28 px: images (N, 28, 28) uint8, masks (N, 28, 28) bool, labels (N,) 0/1,
    source test indices (N,), and one `Paste` (or None) per image. The order is a seeded shuffle."""
    x, y = load_fashion_mnist(split, root)
    c = class_index(class_name)
    rng = np.random.default_rng(seed)
    own = np.flatnonzero(y == c)
    if n_normal + n_defect > own.size:
        raise PoolError(f"defects: class {class_name} has {own.size} {split} images, "
                        f"{n_normal + n_defect} asked")
    if n_normal + n_defect < 1 or n_defect < 0 or n_normal < 0:
        raise PoolError("defects: n_normal and n_defect must be >= 0 with at least one image")
    lo, hi = sorted(int(s) for s in sizes)
    chosen = rng.choice(own, size=n_normal + n_defect, replace=False)
    donors = np.flatnonzero(y != c)
    images, masks = x[chosen].copy(), np.zeros((chosen.size, *x.shape[1:]), bool)
    labels = np.zeros(chosen.size, np.int32)
    pastes: list[Paste | None] = [None] * chosen.size
    for i in range(n_normal, chosen.size):
        size = int(rng.integers(lo, hi + 1))
        while True:
            d = int(rng.choice(donors))
            got = paste_square(images[i], x[d], rng, size, min_foreground)
            if got is not None:
                break
        images[i], masks[i], src, dst = got
        labels[i] = 1
        pastes[i] = Paste(d, FASHION_MNIST_CLASSES[int(y[d])], size, src, dst)
    order = rng.permutation(chosen.size)
    return images[order], masks[order], labels[order], chosen[order], [pastes[i] for i in order]


def upscale(images: np.ndarray, masks: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, h, w) uint8 and bool -> (N, h*f, w*f): bicubic images, nearest masks."""
    if factor == 1:
        return images, masks
    n, h, w = images.shape
    size = (w * factor, h * factor)
    up = np.stack([np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BICUBIC)) for a in images])
    return up, masks.repeat(factor, axis=1).repeat(factor, axis=2)


class DefectPool(ArrayPool):
    """An `ArrayPool` of a defect set with its masks: `mask(i)` -> (H, W) bool, True on the defect."""

    def __init__(self, images, masks, labels, pastes, source_indices, invert: bool, name: str):
        super().__init__(images, labels=labels, class_names=DEFECT_CLASSES, invert=invert, name=name)
        self._masks = np.asarray(masks, bool)
        self.pastes = pastes
        self.source_indices = np.asarray(source_indices)
        n_def = int(np.sum(labels))
        self.source = (f"{name} ({len(self)} images {images.shape[1]}x{images.shape[2]}: "
                       f"{len(self) - n_def} normal, {n_def} CutPaste{', inverted' if invert else ''})")

    def mask(self, i: int) -> np.ndarray:
        return self._masks[i].copy()


def split_by_ratio(n_total: int, defect_ratio: float) -> tuple[int, int]:
    """(n_normal, n_defect) of a pool of n_total images with round-half-up(ratio * n_total) defects."""
    if not 0 < defect_ratio < 1:
        raise PoolError(f"defects: defect_ratio must be in (0, 1), got {defect_ratio}")
    n_defect = int(np.floor(defect_ratio * n_total + 0.5))
    return n_total - n_defect, n_defect


def defect_pool(class_name: str = "Trouser", n_normal: int = 270, n_defect: int = 15,
                sizes: tuple[int, int] = (7, 10), seed: int = 0, invert: bool = True,
                factor: int = 8, split: str = "test", root: str = FASHION_MNIST_DIR,
                defect_ratio: float = 0.0) -> DefectPool:
    """The issue's defect pool: 270 normal + 15 CutPaste images of one class, x8, dark on white.

    defect_ratio > 0 keeps the total (n_normal + n_defect) and sets the defective share instead.
    """
    if defect_ratio:
        n_normal, n_defect = split_by_ratio(n_normal + n_defect, defect_ratio)
    images, masks, labels, idx, pastes = make_defect_set(class_name, n_normal, n_defect, sizes,
                                                         seed, split, root)
    images, masks = upscale(images, masks, factor)
    name = f"defects/{FASHION_MNIST_CLASSES[class_index(class_name)]}/seed{seed}"
    if defect_ratio:
        name += f"/{n_defect}of{n_normal + n_defect}"
    return DefectPool(images, masks, labels, pastes, idx, invert, name)


def defect_pool_from_config(cfg) -> DefectPool:
    """Pool config (kind 'defects') -> DefectPool: name = class, seed, split, invert, defect_ratio,
    path = root."""
    get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    return defect_pool(str(get("name", "") or "Trouser"), seed=int(get("seed", 0) or 0),
                       invert=bool(get("invert", True)), split=str(get("split", "test") or "test"),
                       root=str(get("path", "") or FASHION_MNIST_DIR),
                       defect_ratio=float(get("defect_ratio", 0.0) or 0.0))
