"""Robust decoding of one image (a file or its bytes) into an RGB `PIL.Image`.

Every failure raises `BadImage(reason)`; the reason is shown to users in the report. Choices:
  * truncated files are errors, never padded with grey: we leave `ImageFile.LOAD_TRUNCATED_IMAGES`
    alone (False by default) and force `img.load()` so that the whole file is decoded here.
  * images above PIL's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`, not changed here) are
    skipped, both the error variant (over 2x the limit) and the warning variant (over the limit).
  * alpha (RGBA, LA, palette or colour-key transparency) is composited on white, as img2dataset
    (the LAION pipeline) does; `convert('RGB')` would expose whatever colour hides under
    transparent pixels, often black.
  * 16-bit greyscale (`I;16*`) is scaled to 8 bits (v / 257), not clipped. Mode `I` (32-bit) is kept
    as is when it lies in 0..255, scaled as 16-bit when it lies in 0..65535, else min-max scaled.
    Mode `F` is scaled by 255 when it lies in [0, 1], kept when in 0..255, else min-max scaled.
  * CMYK goes through the embedded ICC profile when there is one (ImageCms), else PIL's conversion.
  * EXIF orientation is applied (`ImageOps.exif_transpose`); a broken EXIF block keeps the pixels
    as stored rather than losing the image.
  * animated / multi-page files give their first frame.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from adapt.data.base import BadImage, PoolError, Unreadable

IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# PIL warns on images above MAX_IMAGE_PIXELS before we see them; decode_image checks the same limit
# itself and skips (and reports) such a file, so the warning is only noise. A process-wide filter,
# because warnings.catch_warnings is not thread-safe and decoding runs in threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def decode_image(source: str | os.PathLike | bytes, invert: bool = False) -> Image.Image:
    """A file path or encoded bytes -> fully loaded RGB image (optionally inverted); raises BadImage."""
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else read_file(source)
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadImage("not an image file (format not recognised)") from None
    except Image.DecompressionBombError as e:
        raise BadImage(f"image too large (decompression-bomb limit): {e}") from None
    except Image.DecompressionBombWarning as e:  # when the caller's filters turn warnings to errors
        raise BadImage(f"image too large (decompression-bomb limit): {e}") from None
    except Exception as e:  # noqa: BLE001  (any decoder failure is a bad image, not a crash)
        raise BadImage(f"cannot open image: {type(e).__name__}: {e}") from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and img.width * img.height > limit:
        raise BadImage(
            f"image too large: {img.width}x{img.height} = {img.width * img.height} pixels, above "
            f"PIL's decompression-bomb limit Image.MAX_IMAGE_PIXELS = {limit}")
    try:
        img.load()
    except Exception as e:  # noqa: BLE001
        raise BadImage(f"truncated or corrupt image data: {type(e).__name__}: {e}") from None
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001  (broken EXIF: keep the pixels as stored)
        pass
    try:
        rgb = to_rgb(img)
    except BadImage:
        raise
    except Exception as e:  # noqa: BLE001
        raise BadImage(f"cannot convert mode {img.mode} to RGB: {type(e).__name__}: {e}") from None
    return ImageOps.invert(rgb) if invert else rgb


def read_file(path: str | os.PathLike) -> bytes:
    """The file's bytes; raises Unreadable (a BadImage that may pass later: never cached)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise Unreadable(f"cannot read file: {e.strerror or e}") from None


def content_digest(data: bytes) -> str:
    """128-bit BLAKE2b of a file's bytes: what the embedding cache checks before reusing a row."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB, with the conventions in the module docstring."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_scale_to_uint8(np.asarray(img), mode), "L").convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(img)
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _scale_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    a = a.astype(np.float64)
    if a.ndim == 3:
        a = a[..., 0]
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        scaled = a / 257.0
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = a
    elif mode == "I" and lo >= 0.0 and hi <= 65535.0:
        scaled = a / 257.0
    else:
        scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    scaled = np.nan_to_num(scaled, nan=0.0)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    icc = img.info.get("icc_profile")
    if icc:
        try:
            # local: ImageCms needs a PIL built with LittleCMS, and only CMYK with a profile uses it
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            out = ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
            if out is not None:
                return out
        except Exception:  # noqa: BLE001  (unusable profile: fall back to PIL's formula)
            pass
    return img.convert("RGB")


def array_to_image(a: np.ndarray, invert: bool = False) -> Image.Image:
    """One uint8 array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) -> RGB image; raises BadImage."""
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise BadImage(f"expected a uint8 array, got {a.dtype}")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        img = Image.fromarray(np.ascontiguousarray(a), "L").convert("RGB")
    elif a.ndim == 3 and a.shape[-1] == 3:
        img = Image.fromarray(np.ascontiguousarray(a), "RGB")
    elif a.ndim == 3 and a.shape[-1] == 4:
        img = to_rgb(Image.fromarray(np.ascontiguousarray(a), "RGBA"))
    else:
        raise BadImage(f"expected an image array (H, W[, 1|3|4]), got shape {a.shape}")
    if min(img.size) < 1:
        raise BadImage(f"empty image array of shape {a.shape}")
    return ImageOps.invert(img) if invert else img


def as_uint8_images(images: np.ndarray, what: str = "images") -> np.ndarray:
    """Validate a stack (N, H, W[, C]) and return it as uint8 (floats in [0, 1] are scaled by 255).

    Integer arrays are accepted when every value lies in 0..255. Raises PoolError otherwise.
    """
    a = np.asarray(images)
    if a.ndim not in (3, 4) or (a.ndim == 4 and a.shape[-1] not in (1, 3, 4)):
        raise PoolError(f"{what}: expected shape (N, H, W) or (N, H, W, C) with C in 1, 3, 4; "
                        f"got {a.shape}")
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):
        if a.size and (not np.isfinite(a).all() or a.min() < 0.0 or a.max() > 1.0):
            raise PoolError(f"{what}: float images must be finite and in [0, 1]; got range "
                            f"[{np.nanmin(a):g}, {np.nanmax(a):g}]")
        return np.round(a * 255.0).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer) and not np.issubdtype(a.dtype, np.bool_):
        if a.size and (a.min() < 0 or a.max() > 255):
            raise PoolError(f"{what}: integer images must lie in 0..255; got range "
                            f"[{a.min()}, {a.max()}] ({a.dtype})")
        return a.astype(np.uint8)
    raise PoolError(f"{what}: expected uint8 or float in [0, 1], got dtype {a.dtype}")
