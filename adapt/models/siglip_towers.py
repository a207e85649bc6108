"""SigLIP and SigLIP 2 towers in Flax NNX, numerically as Hugging Face `SiglipModel` / `Siglip2Model`.

Image tower: patch embedding (SigLIP: a Conv2d with bias; SigLIP 2: a Linear over flattened patches,
both stored as one `(p * p * 3, W)` kernel over patches flattened in (row, column, channel) order),
learned position embeddings (no class token, no pre-LayerNorm), pre-LN encoder blocks shared with
CLIP (`adapt.models.clip_vision.Block`), `post_layernorm` over every token, then a multi-head
attention pooling head (MAP: one learned probe attends over the tokens, then a residual MLP). The
pooled vector is the image embedding (no projection).

SigLIP 2 NaFlex: the `(g, g, W)` position grid is resized to each image's patch grid `(h, w)` with
the weights of `F.interpolate(mode="bilinear", align_corners=False, antialias=True)` (as transformers),
and padded patches are masked out of every attention (keys) and of the MAP head.

Text tower: token + position embeddings, bidirectional encoder (no causal mask), `final_layer_norm`,
the hidden state of the LAST position (texts are padded to the context length, 64, as SigLIP was
trained), then `head` (Linear with bias).

Prompt hooks: VPT tokens `(L_p, n, W)` enter before block 0 (SigLIP has no class token and no pre-LN;
prompts carry no position embedding; deep prompts replace the previous block's prompt outputs) and are
dropped before `post_layernorm`, so the MAP head pools the patch tokens only. CoOp context `(n, W)` or
`(N, n, W)` replaces the token embeddings at positions 0..n-1 (SigLIP texts have no start token).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapt.models.clip_text import TextTower
from adapt.models.clip_vision import (Block, Dense, LayerNorm, TowerConfig, VisionTower, activation, param,
                                       patchify)


@dataclasses.dataclass(frozen=True)
class SiglipVisionConfig(TowerConfig):
    """`image_size`: the square input `encode_images` takes; `pos_grid`: side g of the learned
    position grid (SigLIP: image_size / patch_size; SigLIP 2: sqrt(num_patches)); `naflex`: SigLIP 2."""

    image_size: int = 224
    patch_size: int = 16
    pos_grid: int = 14
    naflex: bool = False

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class SiglipTextConfig(TowerConfig):
    vocab_size: int = 32000
    context_length: int = 64
    projection_size: int = 768


def resize_weights(spatial: jax.Array, grid: int, n: int) -> jax.Array:
    """Bilinear (antialiased) resize of a `(g, g)` grid as a matrix, per image.

    spatial `(B, 2)` int patch rows and columns (h, w), h * w <= n -> `(B, n, g * g)`: row i holds the
    weights of output position i (row-major in the h x w grid); padding rows repeat position 0.
    """
    sizes = jnp.asarray(spatial, jnp.float32)[:, None, :]  # (B, 1, 2)
    pos = jnp.arange(n, dtype=jnp.float32)[None, :, None]  # (1, n, 1)
    rows = jnp.floor(pos / sizes[..., 1:])
    index = jnp.concatenate([rows, pos - rows * sizes[..., 1:]], axis=-1)  # (B, n, 2)
    index = index * (pos < jnp.prod(sizes, axis=-1, keepdims=True))
    scale = grid / sizes
    support = jnp.maximum(scale, 1.0)  # > 1 when shrinking: the triangle widens (antialias)
    center = (index + 0.5) * scale - 0.5
    source = jnp.arange(grid, dtype=jnp.float32)
    w = jnp.clip(1.0 - jnp.abs(source - center[..., None]) / support[..., None], 0.0)  # (B, n, 2, g)
    w = w / jnp.sum(w, axis=-1, keepdims=True)
    return (w[..., 0, :, None] * w[..., 1, None, :]).reshape(w.shape[0], n, grid * grid)


class MapHead(nnx.Module):
    """Multi-head attention pooling: `(B, T, W)` tokens (+ `(B, T)` bool mask) -> `(B, W)`."""

    def __init__(self, cfg: TowerConfig, *, rngs: nnx.Rngs | None):
        w = cfg.width
        self.heads, self.act = cfg.heads, cfg.act
        self.probe = param(rngs, (w,))
        self.q = Dense(w, w, rngs=rngs)
        self.kv = Dense(w, 2 * w, rngs=rngs)
        self.out = Dense(w, w, rngs=rngs)
        self.ln = LayerNorm(w, cfg.eps, rngs=rngs)
        self.fc1 = Dense(w, cfg.mlp_dim, rngs=rngs)
        self.fc2 = Dense(cfg.mlp_dim, w, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        b, t, w = x.shape
        h = self.heads
        hd = w // h
        q = self.q(self.probe[...]).reshape(h, hd) * hd**-0.5
        kv = self.kv(x).reshape(b, t, 2, h, hd)
        logits = jnp.einsum("hd,bthd->bht", q, kv[:, :, 0])
        if mask is not None:
            logits = jnp.where(mask[:, None, :], logits, jnp.finfo(logits.dtype).min)
        pooled = jnp.einsum("bht,bthd->bhd", jax.nn.softmax(logits, axis=-1), kv[:, :, 1]).reshape(b, w)
        y = self.out(pooled)
        return y + self.fc2(activation(self.act)(self.fc1(self.ln(y))))


class SiglipVisionTower(nnx.Module):
    """Pixels `(B, H, W, 3)` or NaFlex patches -> pooled embedding `(B, W)` (not normalised)."""

    def __init__(self, cfg: SiglipVisionConfig, *, rngs: nnx.Rngs | None):
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
        self.cfg = cfg
        w, p = cfg.width, cfg.patch_size
        self.patch = Dense(p * p * 3, w, rngs=rngs)
        self.pos_embedding = param(rngs, (cfg.pos_grid**2, w))
        self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.depth)])
        self.post_ln = LayerNorm(w, cfg.eps, rngs=rngs)
        self.head = MapHead(cfg, rngs=rngs)
        self.prompts = nnx.data(None)

    # the CLIP tower's prompt bookkeeping reads only cfg.width, cfg.depth and self.prompts
    set_prompts = VisionTower.set_prompts
    n_prompts = VisionTower.n_prompts

    def patchify(self, pixels: jax.Array) -> jax.Array:
        """`(B, S, S, 3)` -> `(B, g * g, p * p * 3)` patches, (row, column, channel) order."""
        return patchify(pixels, self.cfg.patch_size, self.cfg.image_size)

    def positions(self, spatial: jax.Array | None, n: int) -> jax.Array:
        """Position embeddings `(1 or B, n, W)`: the learned grid, resized to `spatial` (NaFlex)."""
        pos = self.pos_embedding[...]
        g = self.cfg.pos_grid
        if spatial is None:  # a square input of image_size
            if self.cfg.grid == g:
                return pos[None]
            spatial = np.array([[self.cfg.grid, self.cfg.grid]])  # static: a constant matrix
        return resize_weights(spatial, g, n) @ pos

    def tokens(self, patches: jax.Array, spatial: jax.Array | None = None, mask: jax.Array | None = None,
               collect: tuple[int, ...] = ()) -> tuple[jax.Array, dict]:
        """`(B, P, p * p * 3)` patches -> last tokens `(B, n + P, W)` and {block: patches `(B, P, W)`}.

        `spatial` `(B, 2)` and `mask` `(B, P)` bool (True: a real patch) for NaFlex input; None for a
        square image of `image_size`.
        """
        x = self.patch(patches) + self.positions(spatial, patches.shape[1])
        b, _, w = x.shape
        n = self.n_prompts()
        if n:
            x = jnp.concatenate([jnp.broadcast_to(self.prompts[0], (b, n, w)).astype(x.dtype), x], axis=1)
        keys = None
        if mask is not None:
            keys = jnp.concatenate([jnp.ones((b, n), bool), mask.astype(bool)], axis=1)[:, None, None, :]
        out = {}
        for i, block in enumerate(self.layers):
            if n and 0 < i < self.prompts.shape[0]:  # deep prompts replace the previous block's
                x = jnp.concatenate([jnp.broadcast_to(self.prompts[i], (b, n, w)).astype(x.dtype), x[:, n:]], axis=1)
            x = block(x, keys)
            if i in collect:
                out[i] = x[:, n:]
        return x, out

    def pool(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Last tokens `(B, n + P, W)` -> `(B, W)`: post-LN on the patch tokens, then the MAP head."""
        return self.head(self.post_ln(x[:, self.n_prompts():]), None if mask is None else mask.astype(bool))

    def encode_patches(self, patches: jax.Array, spatial: jax.Array, mask: jax.Array) -> jax.Array:
        """NaFlex input: patches `(B, P, p * p * 3)`, spatial `(B, 2)` int, mask `(B, P)` -> `(B, W)`."""
        x, _ = self.tokens(patches, spatial, mask)
        return self.pool(x, mask)

    def __call__(self, pixels: jax.Array) -> jax.Array:
        x, _ = self.tokens(self.patchify(pixels))
        return self.pool(x)


class SiglipTextTower(nnx.Module):
    """Token ids `(N, T)` -> the head of the last position `(N, E)` (not normalised)."""

    def __init__(self, cfg: SiglipTextConfig, *, rngs: nnx.Rngs | None):
        self.cfg = cfg
        self.token_embedding = param(rngs, (cfg.vocab_size, cfg.width))
        self.pos_embedding = param(rngs, (cfg.context_length, cfg.width))
        self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.depth)])
        self.final_ln = LayerNorm(cfg.width, cfg.eps, rngs=rngs)
        self.head = Dense(cfg.width, cfg.projection_size, rngs=rngs)
        self.context = nnx.data(None)

    set_context = TextTower.set_context  # reads cfg.width, cfg.context_length, sets self.context

    CONTEXT_START = 0  # no start token: installed context replaces positions 0..n-1
    embed = TextTower.embed  # `(N, T)` -> `(N, T, W)`, reads the same fields

    def __call__(self, ids: jax.Array, use_context: bool = True) -> jax.Array:
        x = self.embed(ids, use_context)
        for block in self.layers:
            x = block(x)
        return self.head(self.final_ln(x)[:, -1])
