"""The one interface every image pool presents.

A pool is N items. Each item decodes to an RGB `PIL.Image` or raises `BadImage` with a reason; the
embedder skips bad items, lists them in the report and counts them (`n_skipped`). Labels, when a
pool has them, are for evaluation only: no method ever sees them.
"""
from __future__ import annotations

import abc

import numpy as np
from PIL import Image


class BadImage(Exception):
    """An item that cannot be decoded into a usable image. The message is the reason shown to users.

    `digest`: content hash of the bytes that were read and failed to decode ("" if none)."""

    digest = ""


class Unreadable(BadImage):
    """The item's bytes could not be read (permissions, I/O error): may succeed later, never cached."""


class PoolError(ValueError):
    """A pool that cannot be used at all (empty, every file bad, class list mismatch, ...)."""


class Pool(abc.ABC):
    """N items; item i decodes with `load(i)`.

    Attributes:
      source: one line for the report, e.g. "folder /data/x (4 classes)".
      class_names: the pool's own class names (folder names, dataset names) or None if unlabelled.
    """

    source: str = ""
    class_names: list[str] | None = None

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def item_id(self, i: int) -> str:
        """What names item i in predictions.csv and the report: a path, or `name[index]`."""

    def location(self, i: int) -> str:
        """Where item i can be found again (a full file path for file pools; else its id)."""
        return self.item_id(i)

    @abc.abstractmethod
    def load(self, i: int) -> Image.Image:
        """Item i as an RGB image with the pool's options (invert, ...) applied; raises BadImage."""

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """Hex digest of everything that fixes the decoded pixels: ids, file sizes+mtimes or content
        hashes, and the pool options. Two pools with equal fingerprints decode to equal images."""

    def load_with_digest(self, i: int) -> tuple[Image.Image, str]:
        """(load(i), content hash of the bytes decoded); "" where the fingerprint covers the content
        (in-memory pools). File pools hash the bytes they read anyway: exact, nearly free."""
        return self.load(i), ""

    def digest(self, i: int) -> str:
        """Content hash of item i as `load_with_digest` gives it, without decoding; raises BadImage."""
        return ""

    def labels(self) -> np.ndarray | None:
        """(N,) int32 indices into `class_names`, -1 where unknown; None for an unlabelled pool."""
        return None
