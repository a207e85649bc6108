"""Thumbnails of the pool rows a report shows, written once each into `thumbs/` next to the report.

Only the rows a report asks for are decoded (a few hundred, whatever the pool size): a thumbnail is
made on the first request and reused after. Pixels come from `pool.load(kept[row])`, so folder,
IDX, array and tfds pools all work (IDX items have no file to link to).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from adapt.data.base import BadImage

THUMB_SIZE = 96  # longest side in pixels; smaller images are kept at their own size


class Thumbnails:
    """Thumbnail files `thumbs/r{row}.{png|jpg}` of pool rows, relative to the report's folder.

    pool: the run's pool; kept: (N,) the pool item index of each row (rows = predictions.csv rows).
    `src(row)` returns (relative path or None, error message or None).
    """

    def __init__(self, workdir: Path, pool, kept, size: int = THUMB_SIZE, folder: str = "thumbs"):
        self.workdir = Path(workdir)
        self.folder = folder
        self.pool = pool
        self.kept = np.asarray(kept)
        self.size = int(size)
        self._made: dict[int, tuple[str | None, str | None]] = {}
        self._small: set[int] = set()  # rows whose thumbnail is at most 48 px (drawn pixelated)
        target = self.workdir / folder
        if target.exists():  # thumbnails of an earlier run in this workdir are stale
            shutil.rmtree(target)
        target.mkdir(parents=True)

    def __len__(self) -> int:
        return len(self._made)

    def src(self, row: int) -> tuple[str | None, str | None]:
        row = int(row)
        if row not in self._made:
            self._made[row] = self._write(row)
        return self._made[row]

    def is_small(self, row: int) -> bool:
        return int(row) in self._small

    def image(self, row: int, image: Image.Image, suffix: str) -> str:
        """Writes an already made picture (e.g. an anomaly overlay) for `row`; returns its path."""
        rel = f"{self.folder}/r{int(row)}_{suffix}.png"
        image.save(self.workdir / rel, optimize=True)
        return rel

    def load(self, row: int) -> Image.Image:
        """The decoded pool image of `row` (RGB), raises BadImage."""
        return self.pool.load(int(self.kept[int(row)]))

    def _write(self, row: int) -> tuple[str | None, str | None]:
        try:
            image = self.load(row)
        except (BadImage, OSError) as e:  # the file changed or vanished since the run read it
            return None, str(e) or type(e).__name__
        image = image.convert("RGB")
        image.thumbnail((self.size, self.size))
        grey = _is_grey(image)
        if max(image.size) <= 48:
            self._small.add(row)
        if grey or max(image.size) <= 48:  # small or greyscale: lossless PNG is small and crisp
            rel = f"{self.folder}/r{row}.png"
            (image.convert("L") if grey else image).save(self.workdir / rel, optimize=True)
        else:
            rel = f"{self.folder}/r{row}.jpg"
            image.save(self.workdir / rel, quality=85)
        return rel, None

    def total_bytes(self) -> int:
        folder = self.workdir / self.folder
        return sum(e.stat().st_size for e in os.scandir(folder) if e.is_file())


def _is_grey(image: Image.Image) -> bool:
    a = np.asarray(image, np.int16)
    return bool(np.abs(a[..., 0] - a[..., 1]).max() == 0 and np.abs(a[..., 1] - a[..., 2]).max() == 0)
