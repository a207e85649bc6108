"""`TfdsPool`: a prepared tfds dataset read by random access with `tfds.data_source` (no TensorFlow).

The dataset must already be prepared under `data_dir` in the array_record (or parquet) format; we
never download. Image bytes are read undecoded (`SkipDecoding`) and decoded by `decode_image`, so a
bad record is skipped with a reason like any bad file. Under `tfds.testing.mock_data` without
TensorFlow, undecoded reads are impossible (the mock encodes with TensorFlow); the pool then falls
back to tfds' own decoding, which returns arrays.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
from PIL import Image

from adapt.data.base import BadImage, Pool, PoolError, Unreadable
from adapt.data.decode import array_to_image, as_uint8_images, decode_image


def _tfds():
    try:
        # local: tensorflow-datasets is optional and heavy (it imports TensorFlow)
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise PoolError(f"kind 'tfds' needs tensorflow-datasets: pip install tensorflow-datasets "
                        f"({e})") from None
    return tfds


class TfdsPool(Pool):
    """Split `split` of the tfds dataset `name` prepared under `data_dir`."""

    def __init__(self, name: str, data_dir: str | os.PathLike | None = None, split: str = "test",
                 image_key: str = "image", label_key: str = "label", invert: bool = False):
        if not name:
            raise PoolError("kind 'tfds' needs the dataset name (config field `name`)")
        tfds = _tfds()
        self.name, self.split = name, split
        self.image_key, self.label_key = image_key, label_key
        self.invert = bool(invert)
        data_dir = os.fspath(data_dir) if data_dir else None
        self.data_dir = data_dir
        ds = self._open(tfds, decoders=None)
        features = ds.dataset_info.features
        keys = list(features.keys())
        if image_key not in keys:
            raise PoolError(f"tfds {name}: no feature '{image_key}' (image_key); features: {keys}")
        if isinstance(features[image_key], tfds.features.Image):
            skip = {image_key: tfds.decode.SkipDecoding()}
            try:
                ds_raw = self._open(tfds, decoders=skip)
                if len(ds_raw):
                    ds_raw[0]
                ds = ds_raw
            except ImportError:  # mock_data without TensorFlow: keep tfds' own decoding
                pass
        self._ds = ds
        if len(ds) == 0:
            raise PoolError(f"tfds {name} split '{split}' is empty")
        label_feature = features[label_key] if label_key in keys else None
        self._labelled = isinstance(label_feature, tfds.features.ClassLabel)
        self.class_names = list(label_feature.names) if self._labelled else None
        self.label_names_synthetic = False
        self._labels: np.ndarray | None = None
        self.prescan_skipped: list[tuple[str, str]] = []
        self._version_dir = str(ds.dataset_info.data_dir)
        kind = f"{len(self.class_names)} classes" if self._labelled else "unlabelled"
        self.source = (f"tfds {name} split {split} ({len(ds)} images, {kind}"
                       f"{', inverted' if invert else ''})")

    def _open(self, tfds, decoders):
        try:
            return tfds.data_source(self.name, split=self.split, data_dir=self.data_dir,
                                    download=False, decoders=decoders)
        except ImportError:
            raise
        except Exception as e:  # noqa: BLE001  (tfds raises many types; one clear error here)
            first = str(e).strip().splitlines()
            reason = " ".join(first[:3]) if first else type(e).__name__
            raise PoolError(
                f"cannot open tfds dataset '{self.name}' split '{self.split}' under data_dir "
                f"{self.data_dir or '(tfds default)'} (it must be prepared there already, in the "
                f"array_record format; nothing is downloaded): {type(e).__name__}: {reason}"
            ) from None

    def __len__(self) -> int:
        return len(self._ds)

    def item_id(self, i: int) -> str:
        return f"{self.name}/{self.split}[{i}]"

    def load(self, i: int) -> Image.Image:
        try:
            value = self._ds[i][self.image_key]
        except Exception as e:  # noqa: BLE001
            raise Unreadable(f"cannot read record: {type(e).__name__}: {e}") from None
        if isinstance(value, (bytes, bytearray, memoryview)):
            return decode_image(value, invert=self.invert)
        try:
            a = as_uint8_images(np.asarray(value)[None], what=self.item_id(i))[0]
        except PoolError as e:
            raise BadImage(str(e)) from None
        return array_to_image(a, invert=self.invert)

    def labels(self) -> np.ndarray | None:
        if not self._labelled:
            return None
        if self._labels is None:
            ys, n, step = [], len(self._ds), 256
            for start in range(0, n, step):
                keys = list(range(start, min(n, start + step)))
                try:
                    recs = self._ds.__getitems__(keys)
                except (AttributeError, TypeError):  # no batch read (or tfds' mock lacks one)
                    recs = [self._ds[k] for k in keys]
                ys.extend(int(r[self.label_key]) for r in recs)
            self._labels = np.asarray(ys, dtype=np.int32)
        return self._labels.copy()

    def fingerprint(self) -> str:
        """Name, split, keys, options and the prepared files (relative path, size)."""
        files = []
        if os.path.isdir(self._version_dir):
            for dirpath, _, filenames in os.walk(self._version_dir):
                for f in sorted(filenames):
                    p = os.path.join(dirpath, f)
                    files.append([os.path.relpath(p, self._version_dir), os.path.getsize(p)])
        files.sort()
        return hashlib.sha256(json.dumps({
            "kind": "tfds", "name": self.name, "split": self.split, "image_key": self.image_key,
            "invert": self.invert, "files": files}).encode()).hexdigest()
