"""On-device image augmentations in JAX, one PRNG key per image (vmapped).

Images are preprocessed pixels (H, W, 3), normalised with the model's mean and std; every op works
on the [0, 1] image underneath and returns normalised pixels of the same size.

weak:   random resized crop (scale 0.5-1, ratio 3/4-4/3, bilinear) + horizontal flip.
strong: weak + colour jitter (brightness, contrast, saturation 0.4 each) + two RandAugment-style
        ops drawn uniformly from {identity, autocontrast, solarize, posterize, sharpness, rotate,
        translate, shear} at magnitude 9 of 30 (random sign for geometric ops).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates


def _sample(img, rows, cols):
    """Bilinear sample img (H, W, 3) at float coordinates (H, W) each; edge values outside."""
    return jnp.stack([map_coordinates(img[..., c], [rows, cols], order=1, mode="nearest")
                      for c in range(3)], axis=-1)


def _affine(img, mat, offset):
    """Output pixel p (centred) samples input at mat @ p + offset."""
    h, w = img.shape[:2]
    r, c = jnp.meshgrid(jnp.arange(h) - (h - 1) / 2, jnp.arange(w) - (w - 1) / 2, indexing="ij")
    src_r = mat[0, 0] * r + mat[0, 1] * c + offset[0] + (h - 1) / 2
    src_c = mat[1, 0] * r + mat[1, 1] * c + offset[1] + (w - 1) / 2
    return _sample(img, src_r, src_c)


def random_resized_crop(key, img, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3)):
    h, w = img.shape[:2]
    k1, k2, k3, k4 = jax.random.split(key, 4)
    area = jax.random.uniform(k1, minval=scale[0], maxval=scale[1])
    logr = jax.random.uniform(k2, minval=jnp.log(ratio[0]), maxval=jnp.log(ratio[1]))
    ch = jnp.clip(jnp.sqrt(area / jnp.exp(logr)), 0.1, 1.0) * h
    cw = jnp.clip(jnp.sqrt(area * jnp.exp(logr)), 0.1, 1.0) * w
    top = jax.random.uniform(k3) * (h - ch)
    left = jax.random.uniform(k4) * (w - cw)
    rows = top + (jnp.arange(h) + 0.5) * ch / h - 0.5
    cols = left + (jnp.arange(w) + 0.5) * cw / w - 0.5
    r, c = jnp.meshgrid(rows, cols, indexing="ij")
    return _sample(img, r, c)


def flip(key, img):
    return jnp.where(jax.random.bernoulli(key), img[:, ::-1], img)


def _gray(img):
    return (img @ jnp.array([0.299, 0.587, 0.114]))[..., None]


def color_jitter(key, img, strength=0.4):
    kb, kc, ks = jax.random.split(key, 3)
    u = lambda k: jax.random.uniform(k, minval=1 - strength, maxval=1 + strength)
    img = img * u(kb)
    img = (img - _gray(img).mean()) * u(kc) + _gray(img).mean()
    img = (img - _gray(img)) * u(ks) + _gray(img)
    return jnp.clip(img, 0.0, 1.0)


def _blur3(img):
    k = jnp.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], jnp.float32) / 13.0
    pad = jnp.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = img.shape[:2]
    return sum(k[i, j] * pad[i:i + h, j:j + w] for i in range(3) for j in range(3))


def _rand_op(key, img, magnitude=9 / 30):
    kop, ks = jax.random.split(key)
    sign = jnp.where(jax.random.bernoulli(ks), 1.0, -1.0)
    h = img.shape[0]
    lo, hi = img.min(axis=(0, 1)), img.max(axis=(0, 1))
    angle = sign * magnitude * 30.0 * jnp.pi / 180
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    ops = [
        lambda x: x,
        lambda x: (x - lo) / jnp.maximum(hi - lo, 1e-3),
        lambda x: jnp.where(x >= 1.0 - magnitude, 1.0 - x, x),
        lambda x: jnp.floor(x * 2 ** (8 - jnp.round(4 * magnitude))) / 2 ** (8 - jnp.round(4 * magnitude)),
        lambda x: jnp.clip(x + (1 + 1.8 * magnitude) * (x - _blur3(x)), 0, 1),
        lambda x: _affine(x, jnp.array([[cos, -sin], [sin, cos]]), jnp.zeros(2)),
        lambda x: _affine(x, jnp.eye(2), jnp.array([0.0, sign * magnitude * 0.45 * h])),
        lambda x: _affine(x, jnp.array([[1.0, 0.0], [sign * magnitude * 0.3, 1.0]]), jnp.zeros(2)),
    ]
    return jax.lax.switch(jax.random.randint(kop, (), 0, len(ops)), ops, img)


def _one(key, img, mean, std, strong):
    x = img * std + mean
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    x = flip(k2, random_resized_crop(k1, x))
    if strong:
        x = color_jitter(k3, x)
        x = _rand_op(k5, _rand_op(k4, x))
    return (x - mean) / std


def augment(key, images, mean, std, kind: str = "weak"):
    """images (B, H, W, 3) normalised -> (B, H, W, 3); kind 'none', 'weak' or 'strong'.
    Image i uses fold_in(key, i), so results do not depend on how the batch is sharded."""
    if kind == "none":
        return images
    if kind not in ("weak", "strong"):
        raise ValueError(f"augmentation kind must be none, weak or strong, not {kind!r}")
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(images.shape[0]))
    mean, std = jnp.asarray(mean, images.dtype), jnp.asarray(std, images.dtype)
    return jax.vmap(lambda k, im: _one(k, im, mean, std, kind == "strong"))(keys, images)
