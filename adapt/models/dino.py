"""DINO and DINOv2 ViTs as frozen image encoders (Flax NNX), loaded from Hugging Face folders.

    enc = load_dino("/models/dinov2-base")   # config.json (model_type "vit" or "dinov2") + model.safetensors
    z = enc.encode_images(pixels)             # (B, H, W, 3) preprocessed -> (B, D) CLS, L2-normalised
    f = enc.features(pixels)                  # {"cls": (B, D), "patch_tokens": (B, h*w, D)}

Numerically this follows transformers' `ViTModel` (DINO: pre-LN blocks, CLS token, learned position
embeddings, final layernorm; the pooler is not used) and `Dinov2Model` (the same plus layer scale
and an optional SwiGLU MLP). Position embeddings are resampled whenever the patch grid differs from
the config's, exactly as transformers' `interpolate_pos_encoding` does: torch's bicubic (A = -0.75,
align_corners=False, clamped borders) to the target grid size; `ViTModel` does this only when called
with `interpolate_pos_encoding=True`, we always do. Inputs whose sides are not multiples of the
patch size lose the remainder, as a stride-p convolution does. Matmuls run at HIGHEST precision.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapt.models import checkpoint, dino_load
from adapt.models.base import Preprocess
from adapt.models.clip_vision import LayerNorm, activation, param
from adapt.models.dino_load import DinoConfig

_HI = jax.lax.Precision.HIGHEST
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def bicubic_matrix(n_in: int, n_out: int, offset: float = 0.0) -> np.ndarray:
    """`(n_out, n_in)` float32 weights W of torch's 1-D bicubic resampling: out = W @ in.

    align_corners=False, A = -0.75, indices clamped at the borders, float32 arithmetic as torch's CPU
    kernel. offset 0: a target size (scale n_in / n_out); offset > 0: torch called with
    scale_factor (n_out + offset) / n_in, whose coordinate scale is n_in / (n_out + offset).
    """
    f32 = np.float32
    scale = f32(1.0 / ((n_out + offset) / n_in)) if offset else f32(n_in) / f32(n_out)
    src = scale * (np.arange(n_out, dtype=f32) + f32(0.5)) - f32(0.5)
    i0 = np.floor(src)
    t = (src - i0).astype(f32)
    a = f32(-0.75)

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)  # (n_out, 4)
    idx = np.clip(i0.astype(np.int64)[:, None] + np.arange(-1, 3), 0, n_in - 1)
    w = np.zeros((n_out, n_in), np.float64)
    np.add.at(w, (np.repeat(np.arange(n_out), 4), idx.ravel()), weights.ravel().astype(np.float64))
    return w.astype(f32)


def resample_grid(grid: jax.Array, out_hw: tuple[int, int], offset: float = 0.0) -> jax.Array:
    """`(g_h, g_w, D)` -> `(h, w, D)` by separable bicubic resampling (see `bicubic_matrix`)."""
    wy = bicubic_matrix(grid.shape[0], out_hw[0], offset)
    wx = bicubic_matrix(grid.shape[1], out_hw[1], offset)
    rows = jnp.einsum("yi,ijd->yjd", wy, grid, precision=_HI)
    return jnp.einsum("xj,yjd->yxd", wx, rows, precision=_HI)


class Dense(nnx.Module):
    """`(..., din)` -> `(..., dout)`: x @ kernel + bias at HIGHEST precision."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs | None):
        self.kernel = param(rngs, (din, dout))
        self.bias = param(rngs, (dout,), "zeros")

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.matmul(x, self.kernel[...], precision=_HI) + self.bias[...]


class Block(nnx.Module):
    """Pre-LN block: x + ls1 * attn(ln1(x)), then x + ls2 * mlp(ln2(x)); ls = 1 without layer scale."""

    def __init__(self, cfg: DinoConfig, *, rngs: nnx.Rngs | None):
        d, m = cfg.width, cfg.mlp_dim
        self.heads, self.act, self.swiglu = cfg.heads, cfg.act, cfg.swiglu
        self.ln1 = LayerNorm(d, cfg.eps, rngs=rngs)
        self.qkv = Dense(d, 3 * d, rngs=rngs)
        self.out = Dense(d, d, rngs=rngs)
        self.ln2 = LayerNorm(d, cfg.eps, rngs=rngs)
        self.fc1 = Dense(d, 2 * m if cfg.swiglu else m, rngs=rngs)  # SwiGLU: [gate | up]
        self.fc2 = Dense(m, d, rngs=rngs)
        self.ls1 = param(rngs, (d,), "ones") if cfg.layer_scale else nnx.data(None)
        self.ls2 = param(rngs, (d,), "ones") if cfg.layer_scale else nnx.data(None)

    def attention(self, x: jax.Array) -> jax.Array:
        """`(B, T, D)` -> `(B, T, D)`, heads-major `(B, heads, T, hd)` inside."""
        b, t, d = x.shape
        h = self.heads
        hd = d // h
        q, k, v = self.qkv(x).reshape(b, t, 3, h, hd).transpose(2, 0, 3, 1, 4)
        logits = jnp.matmul(q, k.swapaxes(-1, -2), precision=_HI) * hd**-0.5  # (B, heads, T, T)
        heads = jnp.matmul(jax.nn.softmax(logits, axis=-1), v, precision=_HI)
        kernel = self.out.kernel[...].reshape(h, hd, d)
        return jnp.einsum("bhtd,hdw->btw", heads, kernel, precision=_HI) + self.out.bias[...]

    def mlp(self, x: jax.Array) -> jax.Array:
        y = self.fc1(x)
        if self.swiglu:
            gate, up = jnp.split(y, 2, axis=-1)
            return self.fc2(jax.nn.silu(gate) * up)
        return self.fc2(activation(self.act)(y))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.attention(self.ln1(x))
        x = x + (y if self.ls1 is None else y * self.ls1[...])
        y = self.mlp(self.ln2(x))
        return x + (y if self.ls2 is None else y * self.ls2[...])


class DinoViT(nnx.Module):
    """The ViT itself: pixels `(B, H, W, 3)` -> tokens `(B, 1 + h*w, D)`, h = H // p, w = W // p."""

    def __init__(self, cfg: DinoConfig, *, rngs: nnx.Rngs | None):
        """Random weights from `rngs`; `rngs=None` gives an abstract skeleton for `load_dino` to fill."""
        d, p = cfg.width, cfg.patch_size
        self.cfg = cfg
        self.patch_kernel = param(rngs, (p * p * 3, d))  # conv as matmul: rows (patch row, column, channel)
        self.patch_bias = param(rngs, (d,), "zeros")
        self.cls_token = param(rngs, (d,))
        self.pos_embedding = param(rngs, (cfg.grid**2 + 1, d))
        self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.depth)])
        self.final_ln = LayerNorm(d, cfg.eps, rngs=rngs)

    def position_embeddings(self, h: int, w: int) -> jax.Array:
        """`(1 + h*w, D)`: the class position, then the patch grid resampled to `(h, w)` if it differs."""
        pos, g = self.pos_embedding[...], self.cfg.grid
        if (h, w) == (g, g):
            return pos
        grid = resample_grid(pos[1:].reshape(g, g, -1), (h, w), self.cfg.interpolate_offset)
        return jnp.concatenate([pos[:1], grid.reshape(h * w, -1)], axis=0)

    def embed(self, pixels: jax.Array) -> jax.Array:
        """`(B, H, W, 3)` -> `(B, 1 + h*w, D)` class + patch tokens with position embeddings."""
        b, hh, ww, c = pixels.shape
        p = self.cfg.patch_size
        h, w = hh // p, ww // p
        if c != 3 or h < 1 or w < 1:
            raise ValueError(f"expected pixels (B, H, W, 3) with H, W >= {p}, got {pixels.shape}")
        x = pixels[:, : h * p, : w * p].reshape(b, h, p, w, p, 3).transpose(0, 1, 3, 2, 4, 5)
        x = jnp.matmul(x.reshape(b, h * w, p * p * 3), self.patch_kernel[...], precision=_HI) + self.patch_bias[...]
        cls = jnp.broadcast_to(self.cls_token[...], (b, 1, x.shape[-1])).astype(x.dtype)
        return jnp.concatenate([cls, x], axis=1) + self.position_embeddings(h, w)

    def tokens(self, pixels: jax.Array, collect: tuple[int, ...] = ()) -> tuple[jax.Array, dict]:
        """Last block's tokens `(B, 1 + h*w, D)` (before the final layernorm) and {block: `(B, h*w, D)`}."""
        x = self.embed(pixels)
        out = {}
        for i, block in enumerate(self.layers):
            x = block(x)
            if i in collect:
                out[i] = x[:, 1:]
        return x, out

    def __call__(self, pixels: jax.Array) -> dict[str, jax.Array]:
        """{"cls": `(B, D)`, "patch_tokens": `(B, h*w, D)`}, both after the final layernorm."""
        x = self.final_ln(self.tokens(pixels)[0])
        return {"cls": x[:, 0], "patch_tokens": x[:, 1:]}


class DinoEncoder(nnx.Module):
    """A frozen image-only encoder: model_id, weights_hash, preprocess, embed_dim, encode_images.

    Enough for `adapt.features.embed.embed_pool` (a second image tower's features for a pool); it has no
    text side, so it is not a zero-shot model.
    """

    def __init__(self, cfg: DinoConfig, *, rngs: nnx.Rngs | None):
        self.cfg = cfg
        self.net = DinoViT(cfg, rngs=rngs)
        self.model_id = f"{'dino' if cfg.kind == 'vit' else 'dinov2'}:random"
        self.weights_hash = "random"
        self.preprocess = Preprocess(image_size=224, resize_size=256, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        self.embed_dim = cfg.width

    def features(self, pixels: jax.Array) -> dict[str, jax.Array]:
        """`(B, H, W, 3)` -> {"cls": `(B, D)`, "patch_tokens": `(B, h*w, D)`}, after the final layernorm."""
        return self.net(pixels)

    def encode_images(self, pixels: jax.Array, normalize: bool = True) -> jax.Array:
        """`(B, H, W, 3)` preprocessed pixels -> `(B, D)` CLS features, rows L2-normalised by default."""
        z = self.net(pixels)["cls"]
        return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12) if normalize else z

    def patch_tokens(self, pixels: jax.Array, layers: tuple[int, ...]) -> list[jax.Array]:
        """Outputs of blocks `layers` (0-based, negative from the end), class token dropped: `(B, h*w, D)`."""
        depth = self.cfg.depth
        if any(not -depth <= l < depth for l in layers):
            raise ValueError(f"layers {layers} out of range for a {depth}-block encoder")
        idx = [l % depth for l in layers]
        _, out = self.net.tokens(pixels, collect=tuple(idx))
        return [out[i] for i in idx]

    def patch_features(self, pixels: jax.Array, layers: tuple[int, ...]) -> list[jax.Array]:
        """As `patch_tokens`, as maps `(B, h, w, D)` with h = H // p, w = W // p."""
        p = self.cfg.patch_size
        h, w = pixels.shape[1] // p, pixels.shape[2] // p
        return [t.reshape(t.shape[0], h, w, t.shape[-1]) for t in self.patch_tokens(pixels, layers)]


def load_dino(path: str | Path, *, image_size: int = 224, resize_size: int = 256,
              interpolate_offset: float | None = None) -> DinoEncoder:
    """A Hugging Face DINO (`model_type` "vit") or DINOv2 ("dinov2") folder -> DinoEncoder.

    Preprocessing: shorter side to `resize_size` (bicubic), centre crop `image_size`, ImageNet
    mean/std. `interpolate_offset` overrides the position-embedding resampling (see DinoConfig).
    Missing folder or files: FileNotFoundError; unknown model_type, missing or misshapen tensors:
    ValueError naming each problem. Nothing is left randomly initialised.
    """
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"DINO checkpoint folder {folder} does not exist")
    cfg = dino_load.read_config(folder)
    if interpolate_offset is not None:
        cfg = dataclasses.replace(cfg, interpolate_offset=float(interpolate_offset))
    tensors, digest = checkpoint.read_weights(checkpoint.weight_files(folder, "DINO"))
    tensors = dino_load.strip_prefix(tensors)
    dino_load.check_tensors(tensors, cfg, str(folder))
    graphdef, state = nnx.split(DinoEncoder(cfg, rngs=None))
    nnx.replace_by_pure_dict(state, {"net": jax.tree.map(jnp.asarray, dino_load.to_pure_dict(tensors, cfg))})
    model = nnx.merge(graphdef, state)
    model.model_id = f"{'dino' if cfg.kind == 'vit' else 'dinov2'}:{folder.name}"
    model.weights_hash = digest
    model.preprocess = Preprocess(image_size=image_size, resize_size=resize_size, mean=IMAGENET_MEAN,
                                  std=IMAGENET_STD, interpolation="bicubic")
    return model
