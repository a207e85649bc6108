"""Packaged offline datasets as pools: Fashion-MNIST (Debian), textile (conformal-clip-data), digits."""
from __future__ import annotations

import importlib.util
import os

import numpy as np

from adapt.data.arrays import ArrayPool
from adapt.data.base import PoolError
from adapt.data.folder import FolderPool
from adapt.data.idx import IdxPool

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
TEXTILE_CLASSES = ["nominal", "local", "global"]
DIGIT_CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def fashion_mnist_pool(split: str = "test", invert: bool = False,
                       root: str = FASHION_MNIST_DIR) -> IdxPool:
    """Fashion-MNIST from the Debian package `dataset-fashion-mnist` (60k train / 10k test)."""
    prefix = {"test": "t10k", "train": "train"}.get(split)
    if prefix is None:
        raise PoolError(f"fashion_mnist: split must be 'train' or 'test', got '{split}'")
    images = os.path.join(root, f"{prefix}-images-idx3-ubyte.gz")
    labels = os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz")
    missing = [p for p in (images, labels) if not os.path.isfile(p)]
    if missing:
        raise PoolError(f"fashion_mnist: {', '.join(missing)} not found; install the data with "
                        "`apt-get install dataset-fashion-mnist`")
    pool = IdxPool(images, labels, class_names=FASHION_MNIST_CLASSES, invert=invert,
                   name=f"fashion_mnist/{split}")
    pool.source = f"fashion_mnist {split} ({len(pool)} images 28x28, 10 classes" + (
        ", inverted)" if invert else ")")
    return pool


def textile_root() -> str:
    """The folder with nominal/, local/, global/ inside the installed conformal-clip-data."""
    spec = importlib.util.find_spec("conformal_clip_data")
    if spec is None or not spec.submodule_search_locations:
        raise PoolError("textile: the package conformal-clip-data is not installed; "
                        "`pip install conformal-clip-data`")
    pkg = list(spec.submodule_search_locations)[0]
    root = os.path.join(pkg, "data", "textile_images", "simulated")
    if not os.path.isdir(root):
        raise PoolError(f"textile: {root} not found inside conformal-clip-data")
    return root


def textile_pool(invert: bool = False) -> FolderPool:
    """2000 textile images, classes nominal (1000), local (500) and global (500) defects."""
    pool = FolderPool(textile_root(), invert=invert, classes=TEXTILE_CLASSES)
    pool.source = f"textile (conformal-clip-data, {len(pool)} images, 3 classes" + (
        ", inverted)" if invert else ")")
    return pool


def digits_pool(invert: bool = False) -> ArrayPool:
    """scikit-learn's UCI digits: 1797 images 8x8, 0..16 scaled to 0..255; names 'zero'..'nine'."""
    try:
        # local: scikit-learn is slow to import and only this preset needs it
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise PoolError(f"digits: needs scikit-learn (`pip install scikit-learn`): {e}") from None
    d = load_digits()
    images = np.round(np.asarray(d.images, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    pool = ArrayPool(images, labels=d.target, class_names=DIGIT_CLASSES, invert=invert,
                     name="digits")
    pool.source = f"digits (scikit-learn, {len(pool)} images 8x8, 10 classes" + (
        ", inverted)" if invert else ")")
    return pool
