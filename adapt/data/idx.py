"""`IdxPool`: images (and optional labels) in IDX files, the MNIST / Fashion-MNIST format.

IDX: 2 zero bytes, a type byte (0x08 = uint8, the only type accepted here), a dimension count, then
one big-endian uint32 per dimension and the data. Images: 0x00000803 (N, H, W), or 0x00000804
(N, H, W, C) with C in 1, 3. Labels: 0x00000801 (N,). Files may be gzip-compressed (detected by
content, not by name).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
from typing import Sequence

import numpy as np
from PIL import Image

from adapt.data.arrays import check_labels
from adapt.data.base import Pool, PoolError
from adapt.data.decode import array_to_image

_CHUNK = 1 << 20


def _read_hashed(path: str) -> tuple[bytes, str]:
    """The file's bytes and their sha256, read in chunks."""
    h, parts = hashlib.sha256(), []
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                parts.append(chunk)
    except OSError as e:
        raise PoolError(f"cannot read IDX file {path}: {e.strerror or e}") from None
    return b"".join(parts), h.hexdigest()


def parse_idx(data: bytes, path: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes (raw or gzip) into a uint8 array; raises PoolError with the reason."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise PoolError(f"IDX file {path}: corrupt gzip data ({e})") from None
    if len(data) < 4:
        raise PoolError(f"IDX file {path}: too short for an IDX header ({len(data)} bytes)")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    magic = f"0x{struct.unpack('>I', data[:4])[0]:08x}"
    if zero != 0:
        raise PoolError(f"IDX file {path}: bad magic number {magic} (not an IDX file)")
    if dtype != 0x08:
        raise PoolError(f"IDX file {path}: magic {magic} has data type 0x{dtype:02x}; "
                        "only unsigned bytes (0x08) are supported")
    if ndim == 0:
        raise PoolError(f"IDX file {path}: magic {magic} declares 0 dimensions")
    if len(data) < 4 + 4 * ndim:
        raise PoolError(f"IDX file {path}: header truncated")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    want = int(np.prod(dims, dtype=np.int64))
    body = memoryview(data)[4 + 4 * ndim:]
    if len(body) != want:
        raise PoolError(f"IDX file {path}: dimensions {dims} need {want} data bytes, "
                        f"found {len(body)} ({'truncated' if len(body) < want else 'extra data'})")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as IDX; gzip when compress is True (default: when the name ends .gz)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    raw = struct.pack(">HBB", 0, 0x08, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    path = os.fspath(path)
    if compress is None:
        compress = path.endswith(".gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(raw, mtime=0) if compress else raw)


class IdxPool(Pool):
    """Images from an IDX file; labels (for evaluation only) from an optional second IDX file."""

    def __init__(self, images_path: str | os.PathLike, labels_path: str | os.PathLike | None = None,
                 class_names: Sequence[str] | None = None, invert: bool = False,
                 name: str | None = None):
        images_path = os.fspath(images_path)
        if not os.path.isfile(images_path):
            raise PoolError(f"IDX image file {images_path} does not exist")
        data, self._images_sha = _read_hashed(images_path)
        x = parse_idx(data, images_path)
        del data
        if x.ndim == 4 and x.shape[-1] not in (1, 3):
            raise PoolError(f"IDX image file {images_path}: 4-d data must be (N, H, W, C) with C "
                            f"in 1, 3; got {x.shape}")
        if x.ndim not in (3, 4):
            raise PoolError(f"IDX image file {images_path}: expected images (magic 0x00000803, "
                            f"(N, H, W)), got {x.ndim} dimensions {x.shape}")
        if x.shape[0] == 0 or min(x.shape[1:3]) == 0:
            raise PoolError(f"IDX image file {images_path}: empty pool, shape {x.shape}")
        self._x = x
        y = None
        if labels_path is not None:
            labels_path = os.fspath(labels_path)
            if not os.path.isfile(labels_path):
                raise PoolError(f"IDX label file {labels_path} does not exist")
            ldata, _ = _read_hashed(labels_path)
            y = parse_idx(ldata, labels_path)
            if y.ndim != 1:
                raise PoolError(f"IDX label file {labels_path}: expected labels (magic "
                                f"0x00000801, (N,)), got {y.ndim} dimensions {y.shape}")
            if y.shape[0] != x.shape[0]:
                raise PoolError(f"IDX files disagree: {x.shape[0]} images in {images_path} but "
                                f"{y.shape[0]} labels in {labels_path}")
        self._y, self.class_names, self.label_names_synthetic = check_labels(
            y, x.shape[0], class_names if y is not None else None, f"IDX {images_path}")
        if y is None and class_names is not None:
            self.class_names = list(class_names)
        self.invert = bool(invert)
        base = os.path.basename(images_path)
        self.name = name or (base[:-3] if base.endswith(".gz") else base)
        self.prescan_skipped: list[tuple[str, str]] = []
        shape = "x".join(str(s) for s in x.shape[1:])
        labelled = f", {len(self.class_names)} classes" if self._y is not None else ", unlabelled"
        self.source = (f"idx {images_path} ({x.shape[0]} images {shape}{labelled}"
                       f"{', inverted' if invert else ''})")

    def __len__(self) -> int:
        return self._x.shape[0]

    def item_id(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def load(self, i: int) -> Image.Image:
        return array_to_image(self._x[i], invert=self.invert)

    def labels(self) -> np.ndarray | None:
        return None if self._y is None else self._y.copy()

    def fingerprint(self) -> str:
        """sha256 of the image file's bytes (as read) plus the options."""
        return hashlib.sha256(json.dumps({
            "kind": "idx", "images_sha256": self._images_sha, "invert": self.invert,
            "name": self.name}).encode()).hexdigest()

