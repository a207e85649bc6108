"""Tunable parts of the offline default model (tuning methods: pseudolabel, NoLA, S3A).

The model has no prompt tokens, so prompt tuning maps onto what each tower offers:

- visual: the head BatchNorm's affine (scale, bias: 2 x 1280 parameters, the "norm affines" of the
  tuning issue). Everything before it is frozen, so its input, the head conv's pre-activation
  (N, 7, 7, 1280), is computed once per pool and cached like embeddings (`cache_head_inputs`).
  Training then costs an affine + relu6 + mean per image instead of a pass through the CNN. The
  price: no pixel augmentation on this path (the cached map is of the unaugmented image); flips of
  the 7 x 7 map are the only augmentation it admits.
- textual: CoOp-style context vectors in MiniLM's token-embedding space, [CLS] ctx_1..ctx_n
  name [SEP]; the sentence embedding goes through the ConSE class map (softmax(cos / tau) over the
  top-T ImageNet classes; the top-T support is picked without gradient, the weights carry it)
  into image space. A context initialised from the token embeddings of "a photo of a" gives the
  model's own text embedding of "a photo of a {name}" (tests/test_tuning.py).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapt.features.embed import embed_pool
from adapt.models.efficientnet import BN_EPS

PLACEHOLDER = "x"  # one wordpiece in MiniLM's vocabulary; replaced by the learned context


class HeadInputs(nnx.Module):
    """Embedding-cache adapter: encode_images = the head pre-activation (B, h*w*1280), or with
    what="block_output" the last MBConv block's output (B, h*w*320), the head conv's input."""

    def __init__(self, model, what: str = "preactivation"):
        if what not in ("preactivation", "block_output"):
            raise ValueError(f"what must be preactivation or block_output, not {what!r}")
        self.image, self.what = model.image, what
        self.model_id = model.model_id + (":head_preactivation" if what == "preactivation" else ":block_output")
        self.weights_hash, self.preprocess = model.weights_hash, model.preprocess

    def encode_images(self, pixels: jax.Array) -> jax.Array:
        z = self.image.head_preactivation(pixels, block_output=self.what == "block_output")
        return z.reshape(z.shape[0], -1)


def cache_head_inputs(model, pool, mesh, what: str = "preactivation", **embed_kwargs):
    """(N, 7, 7, c) float32 head pre-activations (c 1280) or block outputs (c 320) of the decodable
    pool items (cached on disk, resumable, like embeddings), with the kept item indices."""
    emb = embed_pool(HeadInputs(model, what), pool, mesh, **embed_kwargs)
    c = 1280 if what == "preactivation" else 320
    hw = int(round((emb.embeddings.shape[1] // c) ** 0.5))
    return emb.embeddings.reshape(-1, hw, hw, c), emb.kept


class HeadAffine(NamedTuple):
    """Visual parameters: the head BN's scale and bias (1280,) each."""
    scale: jax.Array
    bias: jax.Array


def head_affine(model) -> HeadAffine:
    bn = model.image.head_bn
    return HeadAffine(jnp.asarray(bn.scale[...]), jnp.asarray(bn.bias[...]))


def pooled_features(model_bn_stats, params: HeadAffine, z: jax.Array, flip: jax.Array | None = None,
                    lora: tuple | None = None, x: jax.Array | None = None):
    """z (B, h, w, 1280) cached pre-activations -> (B, 1280) L2-normalised embeddings with the
    head BN affine `params`; `lora` = (A (320, r), B (r, 1280)) adds the low-rank head-conv update
    x @ A @ B given the block outputs x (B, h, w, 320); `flip` (B,) bool mirrors the maps
    horizontally (the cached-path stand-in for an image flip)."""
    mean, var, eps = model_bn_stats
    mul = params.scale * jax.lax.rsqrt(var + eps)
    if lora is not None:
        z = z + (x @ lora[0]) @ lora[1]
    if flip is not None:
        z = jnp.where(flip[:, None, None, None], z[:, :, ::-1], z)
    f = jax.nn.relu6(z * mul + (params.bias - mean * mul)).mean(axis=(1, 2))
    return f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), 1e-12)


def bn_stats(model):
    bn = model.image.head_bn
    return jnp.asarray(bn.mean[...]), jnp.asarray(bn.var[...]), BN_EPS


def set_head_affine(model, params: HeadAffine) -> None:
    """Writes tuned visual parameters into the model (what the artifact saves)."""
    model.image.head_bn.scale[...] = jnp.asarray(params.scale)
    model.image.head_bn.bias[...] = jnp.asarray(params.bias)


class ContextText:
    """MiniLM text side with n learned context vectors: class names -> (C, 1280) class embeddings.

    `ids`/`mask` (C, L) hold "[CLS] x .. x name [SEP]"; positions 1..n are replaced by the context.
    """

    def __init__(self, model, names: Sequence[str], n_ctx: int):
        text = model._text
        self.minilm, self.n_ctx = text.minilm, n_ctx
        prompts = [" ".join([PLACEHOLDER] * n_ctx + [n.replace("_", " ")]) for n in names]
        ids, mask = text.minilm.tokenize(prompts)
        pid = self.minilm.tokenizer.convert_tokens_to_ids(PLACEHOLDER)
        if n_ctx and not (ids[:, 1:n_ctx + 1] == pid).all():
            raise ValueError("context placeholders are not at positions 1..n of every prompt")
        self.ids, self.mask = jnp.asarray(ids), jnp.asarray(mask)
        self.graph, self.state = nnx.split(self.minilm.encoder)
        self.class_emb = jnp.asarray(text.class_emb)  # (1000, 384) ImageNet class texts
        self.rows = jnp.asarray(model.imagenet_class_embeddings())  # (1000, 1280)
        self.top_t, self.temperature = text.top_t, text.temperature
        support = text.support(list(names))  # WordNet grounding of each class name, or None
        self.support = None if support is None else jnp.asarray(support)

    def init_context(self, init_text: str | None = None, std: float = 0.02, seed: int = 0) -> jax.Array:
        """(n, 384): the token embeddings of `init_text` (n wordpieces) or N(0, std^2), seeded."""
        word = np.asarray(self.state["word"][...])
        if init_text:
            tok = self.minilm.tokenizer(init_text, add_special_tokens=False)["input_ids"]
            if len(tok) != self.n_ctx:
                raise ValueError(f"{init_text!r} has {len(tok)} wordpieces, n_ctx is {self.n_ctx}")
            return jnp.asarray(word[tok])
        return jnp.asarray(std * np.random.default_rng(seed).standard_normal((self.n_ctx, word.shape[1]), np.float32))

    def sentence(self, ctx: jax.Array) -> jax.Array:
        """ctx (n, 384) -> (C, 384) L2-normalised MiniLM sentence embeddings of the prompts."""
        enc = nnx.merge(self.graph, self.state)
        x = enc.word[...][self.ids]
        if self.n_ctx:
            x = x.at[:, 1:self.n_ctx + 1].set(jnp.broadcast_to(ctx, (x.shape[0], *ctx.shape)))
        n = self.ids.shape[1]
        x = enc.emb_ln(x + enc.position[...][:n][None] + enc.token_type[...][0])
        bias = jnp.where(self.mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min)
        for layer in enc.layers:
            x = layer(x, bias)
        m = self.mask[..., None].astype(x.dtype)
        pooled = (x * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
        return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)

    def class_weights(self, ctx: jax.Array) -> jax.Array:
        """ctx (n, 384) -> (C, 1280) class embeddings in image space, rows L2-normalised."""
        cos = self.sentence(ctx) @ self.class_emb.T
        if self.support is not None:  # -inf outside the support: zero weight, zero gradient
            cos = jnp.where(self.support, cos, -jnp.inf)
        _, top = jax.lax.top_k(jax.lax.stop_gradient(cos), self.top_t)
        w = jax.nn.softmax(jnp.take_along_axis(cos, top, axis=1) / self.temperature, axis=1)
        e = jnp.einsum("ct,ctd->cd", w, self.rows[top])
        return e / jnp.linalg.norm(e, axis=-1, keepdims=True)
