"""Host-side weak-view preprocessing: PIL image -> normalised (H, W, 3) float32 pixels."""
from __future__ import annotations

import numpy as np
from PIL import Image

from adapt.models.base import Preprocess

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


def to_pixels(image: Image.Image, pre: Preprocess) -> np.ndarray:
    """Shorter side to `resize_size`, centre crop `image_size`, scale to [0, 1], normalise.

    Returns (image_size, image_size, 3) float32.
    """
    image = image.convert("RGB")
    w, h = image.size
    scale = pre.resize_size / min(w, h)
    new_w, new_h = max(pre.image_size, round(w * scale)), max(pre.image_size, round(h * scale))
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), _RESAMPLE[pre.interpolation])
    left, top = (new_w - pre.image_size) // 2, (new_h - pre.image_size) // 2
    image = image.crop((left, top, left + pre.image_size, top + pre.image_size))
    x = np.asarray(image, dtype=np.float32) / 255.0
    return (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
