"""`FolderPool`: a flat folder of images (unlabelled) or one subfolder per class.

Layout rules:
  * any non-hidden subfolder at the top level makes the pool class-labelled: class i is the i-th
    subfolder in sorted order (or the order of `classes=`), listed recursively; image files lying
    at the top level next to class folders are kept with label -1 (unknown).
  * class names are the folder names with `_` and `-` read as spaces (`hot_dog` -> `hot dog`);
    the raw folder names stay available as `class_dirs` for matching.
  * hidden files and folders (leading `.`) and `__MACOSX` are ignored; files whose extension is not
    an image extension are not items but are listed in `prescan_skipped` with a reason.
  * items are ordered by relative path (sorted), so the order is deterministic.
  * a top-level link to the pool itself, to a folder above it or to a folder inside it is not a
    class (it would repeat images); it is skipped with a reason, as is a folder that cannot be read.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Sequence

import numpy as np
from PIL import Image

from adapt.data.base import BadImage, Pool, PoolError
from adapt.data.decode import IMAGE_EXTENSIONS, content_digest, decode_image, read_file


def display_name(folder: str) -> str:
    """Folder name -> class name: `_` and `-` read as spaces, whitespace collapsed."""
    return " ".join(folder.replace("_", " ").replace("-", " ").split())


def _ignored(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _repeating_link(entry: os.DirEntry, root: str) -> str | None:
    """Why a linked class folder would list images twice (a link to the pool, a folder above it
    or a folder inside it), else None."""
    if not entry.is_symlink():
        return None
    real, root_real = os.path.realpath(entry.path), os.path.realpath(root)
    if real == root_real or root_real.startswith(real.rstrip(os.sep) + os.sep):
        return (f"link to the pool folder itself or a folder above it ({real}): skipped, it would "
                "repeat every image under a wrong class")
    if real.startswith(root_real + os.sep):
        return f"link to a folder inside the pool ({real}): skipped, its images are listed already"
    return None


class FolderPool(Pool):
    """Images under `path`; labels (from class subfolders) are for evaluation only."""

    def __init__(self, path: str | os.PathLike, invert: bool = False,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS,
                 classes: Sequence[str] | None = None):
        root = os.path.abspath(os.fspath(path))
        if not os.path.isdir(root):
            what = "is not a folder" if os.path.exists(root) else "does not exist"
            raise PoolError(f"image folder {root} {what}")
        self.root = root
        self.invert = bool(invert)
        self.extensions = tuple(sorted({e.lower() if e.startswith(".") else "." + e.lower()
                                        for e in extensions}))
        self.prescan_skipped: list[tuple[str, str]] = []
        self.label_names_synthetic = False
        top_files, subdirs = self._scan_top(root)
        if classes is not None:
            missing = [c for c in classes if c not in subdirs]
            if missing:
                raise PoolError(f"image folder {root}: class folders not found: {missing}; "
                                f"found {subdirs}")
            subdirs = list(classes)
        rels, labels = [], []
        for name in top_files:
            self._add(name, -1, rels, labels)
        for k, d in enumerate(subdirs):
            for rel in self._walk(d):
                self._add(rel, k, rels, labels)
        order = sorted(range(len(rels)), key=lambda j: rels[j])
        self._rels = [rels[j] for j in order]
        self.prescan_skipped.sort()
        if subdirs:
            self.class_dirs: list[str] | None = list(subdirs)
            self.class_names = [display_name(d) for d in subdirs]
            self._labels = np.asarray([labels[j] for j in order], dtype=np.int32)
        else:
            self.class_dirs, self.class_names, self._labels = None, None, None
        if not self._rels:
            skipped = "; ".join(f"{r} ({why})" for r, why in self.prescan_skipped[:5])
            raise PoolError(f"image folder {root} holds no image files (extensions "
                            f"{', '.join(self.extensions)})" + (f"; skipped: {skipped}" if skipped
                                                                 else ""))
        kind = f"{len(subdirs)} classes" if subdirs else "unlabelled"
        self.source = (f"folder {root} ({len(self._rels)} images, {kind}"
                       f"{', inverted' if invert else ''})")

    def _scan_top(self, root: str) -> tuple[list[str], list[str]]:
        """Top-level image files and class folders; links that would repeat the pool are skipped."""
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError as e:
            raise PoolError(f"image folder {root} cannot be read ({e.strerror}); check its "
                            "permissions") from None
        top_files, subdirs = [], []
        for entry in entries:
            if _ignored(entry.name):
                continue
            if entry.is_dir():
                why = _repeating_link(entry, root)
                if why:
                    self.prescan_skipped.append((entry.name + "/", why))
                else:
                    subdirs.append(entry.name)
            elif entry.is_file():
                top_files.append(entry.name)
        return top_files, subdirs

    def _walk(self, top: str):
        def unreadable(e: OSError):
            rel = os.path.relpath(e.filename, self.root).replace(os.sep, "/")
            self.prescan_skipped.append(
                (rel + "/", f"cannot read folder ({e.strerror}): its images are not in the pool; "
                            "check its permissions"))

        for dirpath, dirnames, filenames in os.walk(os.path.join(self.root, top), onerror=unreadable):
            dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
            rel_dir = os.path.relpath(dirpath, self.root)
            for f in sorted(filenames):
                if not _ignored(f):
                    yield os.path.join(rel_dir, f)

    def _add(self, rel: str, label: int, rels: list, labels: list):
        rel = rel.replace(os.sep, "/")
        ext = os.path.splitext(rel)[1].lower()
        if ext in self.extensions:
            rels.append(rel)
            labels.append(label)
        elif os.path.isfile(os.path.join(self.root, rel)):
            self.prescan_skipped.append(
                (rel, f"not an image file (extension '{ext or '(none)'}')"))

    def __len__(self) -> int:
        return len(self._rels)

    def item_id(self, i: int) -> str:
        return self._rels[i]

    def location(self, i: int) -> str:
        return self.path(i)

    def path(self, i: int) -> str:
        return os.path.join(self.root, *self._rels[i].split("/"))

    def load(self, i: int) -> Image.Image:
        return decode_image(self.path(i), invert=self.invert)

    def load_with_digest(self, i: int) -> tuple[Image.Image, str]:
        data = read_file(self.path(i))
        digest = content_digest(data)
        try:
            return decode_image(data, invert=self.invert), digest
        except BadImage as e:
            e.digest = digest
            raise

    def digest(self, i: int) -> str:
        return content_digest(read_file(self.path(i)))

    def labels(self) -> np.ndarray | None:
        return None if self._labels is None else self._labels.copy()

    def fingerprint(self) -> str:
        """(relative path, size, mtime_ns) of every item, stat'ed now, plus the options."""
        h = hashlib.sha256(json.dumps({"kind": "folder", "invert": self.invert}).encode())
        for rel in self._rels:
            try:
                st = os.stat(os.path.join(self.root, rel))
                row = f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n"
            except OSError:
                row = f"{rel}\tmissing\n"
            h.update(row.encode("utf-8", "surrogateescape"))
        return h.hexdigest()
