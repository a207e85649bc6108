"""A tiny deterministic frozen model for engine tests (a random linear map of the pixels)."""
import hashlib

import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapt.models.base import Preprocess


class FakeModel(nnx.Module):
    model_id = "fake-linear"
    embed_dim = 8
    logit_scale = 10.0

    def __init__(self, seed: int = 0, size: int = 16):
        rng = np.random.default_rng(seed)
        self.preprocess = Preprocess(image_size=size, resize_size=size)
        self.w = nnx.Param(jnp.asarray(rng.normal(size=(size * size * 3, self.embed_dim)), jnp.float32))
        self.weights_hash = hashlib.sha256(np.asarray(self.w[...]).tobytes()).hexdigest()[:16]

    def encode_images(self, pixels):
        z = pixels.reshape(pixels.shape[0], -1) @ self.w[...]
        return z / jnp.linalg.norm(z, axis=-1, keepdims=True)

    def encode_texts(self, texts):
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little")
            rows.append(np.random.default_rng(seed).normal(size=self.embed_dim))
        rows = np.asarray(rows, np.float32)
        return rows / np.linalg.norm(rows, axis=-1, keepdims=True)
