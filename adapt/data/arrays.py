"""In-memory pools and pool subsets: `ArrayPool`, `SubsetPool`, `subsample`."""
from __future__ import annotations

import hashlib
import json
from typing import Sequence

import numpy as np
from PIL import Image

from adapt.data.base import Pool, PoolError
from adapt.data.decode import array_to_image, as_uint8_images


def check_labels(labels, n: int, class_names: Sequence[str] | None, what: str):
    """Validate (N,) integer labels (-1 = unknown) against N and the class names.

    Returns (labels as int32 or None, class names or None, whether the names were synthesised).
    Labels without names get the names '0'..'K-1', flagged as synthetic: `resolve_classes` then
    insists on real names from the user and maps them by index.
    """
    names = list(class_names) if class_names is not None else None
    if labels is None:
        return None, names, False
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise PoolError(f"{what}: expected {n} labels of shape ({n},), got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise PoolError(f"{what}: labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int32)
    if y.size and y.min() < -1:
        raise PoolError(f"{what}: labels must be >= -1 (-1 = unknown), found {y.min()}")
    synthetic = names is None
    if synthetic:
        names = [str(k) for k in range(int(y.max()) + 1 if y.size else 0)]
    elif y.size and y.max() >= len(names):
        raise PoolError(f"{what}: label {y.max()} but only {len(names)} class names")
    return y, names, synthetic


class ArrayPool(Pool):
    """Images held in memory: (N, H, W[, C]) uint8, or float in [0, 1]; item ids `name[i]`.

    uint8 input is kept by reference (not copied): do not change the array while the pool is in
    use, the fingerprint is computed once.
    """

    def __init__(self, images, labels=None, class_names: Sequence[str] | None = None,
                 invert: bool = False, name: str = "arrays", what: str | None = None):
        """`what` names the pool in error messages (default: `name`)."""
        what = what or name
        self._x = as_uint8_images(images, what=what)
        n = self._x.shape[0]
        if n == 0:
            raise PoolError(f"{what}: the pool is empty (0 images)")
        self._y, self.class_names, self.label_names_synthetic = check_labels(
            labels, n, class_names, what)
        self.invert = bool(invert)
        self.name = name
        self.prescan_skipped: list[tuple[str, str]] = []
        shape = "x".join(str(s) for s in self._x.shape[1:])
        labelled = f", {len(self.class_names)} classes" if self._y is not None else ""
        self.source = f"arrays {name} ({n} images {shape}{labelled}{', inverted' if invert else ''})"
        self._fp: str | None = None

    def __len__(self) -> int:
        return self._x.shape[0]

    def item_id(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def load(self, i: int) -> Image.Image:
        return array_to_image(self._x[i], invert=self.invert)

    def labels(self) -> np.ndarray | None:
        return None if self._y is None else self._y.copy()

    def fingerprint(self) -> str:
        if self._fp is None:
            h = hashlib.sha256()
            h.update(json.dumps({"kind": "arrays", "name": self.name, "shape": self._x.shape,
                                 "invert": self.invert}).encode())
            h.update(np.ascontiguousarray(self._x).data)
            self._fp = h.hexdigest()
        return self._fp


class SubsetPool(Pool):
    """The items `indices` of another pool, in the order given (labels and names follow)."""

    def __init__(self, pool: Pool, indices: Sequence[int]):
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(pool)
        if idx.size == 0:
            raise PoolError(f"subset of {pool.source}: no indices given (empty pool)")
        if idx.min() < 0 or idx.max() >= n:
            raise PoolError(f"subset of {pool.source}: indices must lie in 0..{n - 1}")
        self.pool = pool
        self.indices = idx
        self.class_names = pool.class_names
        self.label_names_synthetic = getattr(pool, "label_names_synthetic", False)
        self.prescan_skipped = list(getattr(pool, "prescan_skipped", []))
        self.source = f"{pool.source}, subset of {idx.size}/{n}"

    def __len__(self) -> int:
        return int(self.indices.size)

    def item_id(self, i: int) -> str:
        return self.pool.item_id(int(self.indices[i]))

    def location(self, i: int) -> str:
        return self.pool.location(int(self.indices[i]))

    def load(self, i: int) -> Image.Image:
        return self.pool.load(int(self.indices[i]))

    def load_with_digest(self, i: int) -> tuple[Image.Image, str]:
        return self.pool.load_with_digest(int(self.indices[i]))

    def digest(self, i: int) -> str:
        return self.pool.digest(int(self.indices[i]))

    def labels(self) -> np.ndarray | None:
        y = self.pool.labels()
        return None if y is None else y[self.indices]

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"subset:" + self.pool.fingerprint().encode())
        h.update(self.indices.astype("<i8").tobytes())
        return h.hexdigest()


def subsample(pool: Pool, n: int, seed: int = 0) -> Pool:
    """A deterministic, label-free random subset of n items (kept in pool order).

    n <= 0 or n >= len(pool) returns the pool itself. The choice depends only on (len(pool), n,
    seed), never on labels or pixels.
    """
    total = len(pool)
    if n <= 0 or n >= total:
        return pool
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(total, size=int(n), replace=False))
    return SubsetPool(pool, idx)
