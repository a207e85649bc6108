"""CLIP image tower (pre-LN ViT) and the transformer block both CLIP towers share.

Numerically this follows Hugging Face `CLIPVisionModel` + `visual_projection`: patch embedding
without bias, a class token, learned position embeddings, `pre_layrnorm`, pre-LN encoder blocks,
`post_layernorm` on the class token, a bias-free projection. Input is NHWC `(B, H, W, 3)`.

Prompt hook (VPT): `VisualPrompt` tokens of shape `(L_p, n, W)`. Entry 0 is inserted after the class
token, after `pre_layrnorm`, right before block 0 (shallow). Entries 1..L_p-1 replace the previous
block's prompt outputs right before block i (deep). Prompt tokens carry no position embedding and
are dropped from patch-token outputs; the class token stays at index 0.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx


class Prompt(nnx.Param):
    """A learned prompt parameter (visual tokens or text context); frozen weights are plain Params."""


class VisualPrompt(Prompt):
    """Visual prompt tokens `(L_p, n, W)`."""


@dataclasses.dataclass(frozen=True)
class TowerConfig:
    """Size of one transformer tower, as read from a Hugging Face CLIP config."""

    width: int
    depth: int
    heads: int
    mlp_dim: int
    act: str = "quick_gelu"
    eps: float = 1e-5


@dataclasses.dataclass(frozen=True)
class VisionConfig(TowerConfig):
    image_size: int = 224
    patch_size: int = 32

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def activation(name: str):
    """The MLP nonlinearity named like transformers' `ACT2FN` keys."""
    if name == "quick_gelu":
        return lambda x: x * jax.nn.sigmoid(1.702 * x)
    if name == "gelu":
        return lambda x: jax.nn.gelu(x, approximate=False)
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return lambda x: jax.nn.gelu(x, approximate=True)
    if name == "relu":
        return jax.nn.relu
    raise ValueError(f"unsupported CLIP activation {name!r} (known: quick_gelu, gelu, gelu_new, relu)")


def param(rngs: nnx.Rngs | None, shape: tuple[int, ...], fill: str = "normal", std: float = 0.02) -> nnx.Param:
    """A float32 Param filled with N(0, std), "zeros" or "ones".

    With `rngs=None` the value is an abstract `ShapeDtypeStruct`: a skeleton that a loader fills,
    built without tracing (`nnx.eval_shape` costs seconds at ViT-B size) or allocating a random init.
    """
    if rngs is None:
        return nnx.Param(jax.ShapeDtypeStruct(shape, jnp.float32))
    if fill == "normal":
        return nnx.Param(std * jax.random.normal(rngs.params(), shape, jnp.float32))
    return nnx.Param((jnp.zeros if fill == "zeros" else jnp.ones)(shape, jnp.float32))


class Dense(nnx.Module):
    """`(..., din)` -> `(..., dout)`: x @ kernel + bias, kernel `(din, dout)`."""

    def __init__(self, din: int, dout: int, *, use_bias: bool = True, rngs: nnx.Rngs | None):
        self.kernel = param(rngs, (din, dout))
        self.bias = param(rngs, (dout,), "zeros") if use_bias else nnx.data(None)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x @ self.kernel[...]
        return y if self.bias is None else y + self.bias[...]


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis with a two-pass variance, as torch.nn.LayerNorm computes it."""

    def __init__(self, width: int, eps: float, *, rngs: nnx.Rngs | None):
        self.eps = eps
        self.scale = param(rngs, (width,), "ones")
        self.bias = param(rngs, (width,), "zeros")

    def __call__(self, x: jax.Array) -> jax.Array:
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]


class Block(nnx.Module):
    """Pre-LN transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)). q, k, v fused in one matmul."""

    def __init__(self, cfg: TowerConfig, *, rngs: nnx.Rngs | None):
        if cfg.width % cfg.heads:
            raise ValueError(f"width {cfg.width} is not divisible by heads {cfg.heads}")
        self.heads = cfg.heads
        self.act = cfg.act
        self.ln1 = LayerNorm(cfg.width, cfg.eps, rngs=rngs)
        self.qkv = Dense(cfg.width, 3 * cfg.width, rngs=rngs)
        self.out = Dense(cfg.width, cfg.width, rngs=rngs)
        self.ln2 = LayerNorm(cfg.width, cfg.eps, rngs=rngs)
        self.fc1 = Dense(cfg.width, cfg.mlp_dim, rngs=rngs)
        self.fc2 = Dense(cfg.mlp_dim, cfg.width, rngs=rngs)

    def attention(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
        """`(B, T, W)` -> `(B, T, W)`; `mask` `(T, T)` bool, True where attending is allowed.

        Heads-major layout `(B, heads, T, hd)` and the head merge folded into the output
        projection: about 2x faster attention on XLA CPU than `bqhd` einsums.
        """
        b, t, w = x.shape
        h = self.heads
        hd = w // h
        qkv = self.qkv(x).reshape(b, t, 3, h, hd).transpose(2, 0, 3, 1, 4)  # (3, B, heads, T, hd)
        logits = (qkv[0] * hd**-0.5) @ qkv[1].swapaxes(-1, -2)  # (B, heads, T, T)
        if mask is not None:
            logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        heads = jax.nn.softmax(logits, axis=-1) @ qkv[2]  # (B, heads, T, hd)
        kernel = self.out.kernel[...].reshape(h, hd, w)
        return jnp.einsum("bhtd,hdw->btw", heads, kernel) + self.out.bias[...]

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        x = x + self.attention(self.ln1(x), mask)
        return x + self.fc2(activation(self.act)(self.fc1(self.ln2(x))))


def patchify(pixels: jax.Array, patch: int, size: int) -> jax.Array:
    """`(B, S, S, 3)` -> `(B, g * g, p * p * 3)` patches of side p = `patch`, g = S // p, in (row, column,
    channel) order; S must be `size`."""
    b, h, w, c = pixels.shape
    if (h, w, c) != (size, size, 3):
        raise ValueError(f"expected pixels (B, {size}, {size}, 3), got {pixels.shape}")
    g = size // patch
    grid = pixels.reshape(b, g, patch, g, patch, 3).transpose(0, 1, 3, 2, 4, 5)
    return grid.reshape(b, g * g, patch * patch * 3)


class VisionTower(nnx.Module):
    """ViT image tower: pixels `(B, H, W, 3)` -> projected class embedding `(B, E)` (not normalised)."""

    def __init__(self, cfg: VisionConfig, embed_dim: int, *, rngs: nnx.Rngs | None):
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
        self.cfg = cfg
        w, p = cfg.width, cfg.patch_size
        # Conv weight as a matmul: rows ordered (patch row, patch column, channel).
        self.patch_kernel = param(rngs, (p * p * 3, w))
        self.class_embedding = param(rngs, (w,))
        self.pos_embedding = param(rngs, (cfg.grid**2 + 1, w))
        self.pre_ln = LayerNorm(w, cfg.eps, rngs=rngs)
        self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.depth)])
        self.post_ln = LayerNorm(w, cfg.eps, rngs=rngs)
        self.proj = Dense(w, embed_dim, use_bias=False, rngs=rngs)
        self.prompts = nnx.data(None)

    def set_prompts(self, prompts: jax.Array | None) -> None:
        """Install `(L_p, n, W)` prompt tokens (L_p=1 shallow, L_p=depth deep), or None to remove."""
        if prompts is None:
            self.prompts = nnx.data(None)
            return
        lp, _, w = prompts.shape
        if w != self.cfg.width or not 1 <= lp <= self.cfg.depth:
            raise ValueError(f"visual prompts {prompts.shape} do not fit (1..{self.cfg.depth}, n, {self.cfg.width})")
        self.prompts = VisualPrompt(jnp.asarray(prompts, jnp.float32))

    def embed(self, pixels: jax.Array) -> jax.Array:
        """`(B, H, W, 3)` -> `(B, 1 + P, W)` class + patch tokens with position embeddings."""
        x = patchify(pixels, self.cfg.patch_size, self.cfg.image_size) @ self.patch_kernel[...]
        b = x.shape[0]
        cls = jnp.broadcast_to(self.class_embedding[...], (b, 1, x.shape[-1])).astype(x.dtype)
        return jnp.concatenate([cls, x], axis=1) + self.pos_embedding[...]

    def n_prompts(self) -> int:
        return 0 if self.prompts is None else self.prompts.shape[1]

    def tokens(self, pixels: jax.Array, collect: tuple[int, ...] = ()) -> tuple[jax.Array, dict]:
        """Run the encoder. Returns the last tokens `(B, 1 + n + P, W)` and {block: patches `(B, P, W)`}."""
        x = self.embed(pixels)
        b, _, w = x.shape
        n = self.n_prompts()
        if n:  # the first prompt set enters after CLS, before ln_pre, which normalises it too (VPT)
            tok = jnp.broadcast_to(self.prompts[0], (b, n, w)).astype(x.dtype)
            x = jnp.concatenate([x[:, :1], tok, x[:, 1:]], axis=1)
        x = self.pre_ln(x)
        out = {}
        for i, block in enumerate(self.layers):
            if n and 0 < i < self.prompts.shape[0]:  # deep prompts replace the previous block's
                tok = jnp.broadcast_to(self.prompts[i], (b, n, w)).astype(x.dtype)
                x = jnp.concatenate([x[:, :1], tok, x[:, 1 + n :]], axis=1)
            x = block(x)
            if i in collect:
                out[i] = x[:, 1 + n :]
        return x, out

    def __call__(self, pixels: jax.Array) -> jax.Array:
        x, _ = self.tokens(pixels)
        return self.proj(self.post_ln(x[:, 0]))
