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

from adapt.data.arrays import ArrayPool
from adapt.data.base import PoolError

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


def read_idx_images(path: str) -> tuple[np.ndarray, str]:
    """An IDX image file -> ((N, H, W) or (N, H, W, C) uint8 images, sha256 of the file's bytes)."""
    if not os.path.isfile(path):
        raise PoolError(f"IDX image file {path} does not exist")
    data, sha = _read_hashed(path)
    x = parse_idx(data, path)
    if x.ndim == 4 and x.shape[-1] not in (1, 3):
        raise PoolError(f"IDX image file {path}: 4-d data must be (N, H, W, C) with C "
                        f"in 1, 3; got {x.shape}")
    if x.ndim not in (3, 4):
        raise PoolError(f"IDX image file {path}: expected images (magic 0x00000803, "
                        f"(N, H, W)), got {x.ndim} dimensions {x.shape}")
    if x.shape[0] == 0 or min(x.shape[1:3]) == 0:
        raise PoolError(f"IDX image file {path}: empty pool, shape {x.shape}")
    return x, sha


def read_idx_labels(path: str, n_images: int, images_path: str) -> np.ndarray:
    """An IDX label file -> (N,) uint8 labels; N must equal the image file's `n_images`."""
    if not os.path.isfile(path):
        raise PoolError(f"IDX label file {path} does not exist")
    y = parse_idx(_read_hashed(path)[0], path)
    if y.ndim != 1:
        raise PoolError(f"IDX label file {path}: expected labels (magic "
                        f"0x00000801, (N,)), got {y.ndim} dimensions {y.shape}")
    if y.shape[0] != n_images:
        raise PoolError(f"IDX files disagree: {n_images} images in {images_path} but "
                        f"{y.shape[0]} labels in {path}")
    return y


class IdxPool(ArrayPool):
    """Images from an IDX file; labels (for evaluation only) from an optional second IDX file.

    An `ArrayPool` of the decoded arrays; only its source line and fingerprint (the image file's
    sha256, not its pixels) are its own.
    """

    def __init__(self, images_path: str | os.PathLike, labels_path: str | os.PathLike | None = None,
                 class_names: Sequence[str] | None = None, invert: bool = False,
                 name: str | None = None):
        images_path = os.fspath(images_path)
        x, self._images_sha = read_idx_images(images_path)
        y = None
        if labels_path is not None:
            y = read_idx_labels(os.fspath(labels_path), x.shape[0], images_path)
        base = os.path.basename(images_path)
        super().__init__(x, y, class_names, invert=invert,
                         name=name or (base[:-3] if base.endswith(".gz") else base),
                         what=f"IDX {images_path}")
        shape = "x".join(str(s) for s in x.shape[1:])
        labelled = f", {len(self.class_names)} classes" if self._y is not None else ", unlabelled"
        self.source = (f"idx {images_path} ({x.shape[0]} images {shape}{labelled}"
                       f"{', inverted' if invert else ''})")

    def fingerprint(self) -> str:
        """sha256 of the image file's bytes (as read) plus the options."""
        return hashlib.sha256(json.dumps({
            "kind": "idx", "images_sha256": self._images_sha, "invert": self.invert,
            "name": self.name}).encode()).hexdigest()
