"""CLIP text tower: causal transformer pooled at the end-of-text token, as Hugging Face `CLIPTextModel`.

Pooling follows transformers: configs with the legacy `eos_token_id == 2` take the position of the
largest token id (the end-of-text id is the largest in the CLIP vocabulary); all others take the first
position whose id equals `eos_token_id`.

Prompt hook (CoOp): `TextContext` vectors `(n, W)` (shared) or `(N, n, W)` (one set per text) replace
the token embeddings at positions 1..n, i.e. the n placeholder tokens right after the start token of a
template such as "X X X X {class}.". Position embeddings are added afterwards, as for real tokens.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from adapt.models.clip_vision import Block, Dense, LayerNorm, Prompt, TowerConfig, param


class TextContext(Prompt):
    """Learned text context vectors `(n, W)` or `(N, n, W)`."""


@dataclasses.dataclass(frozen=True)
class TextConfig(TowerConfig):
    vocab_size: int = 49408
    context_length: int = 77
    eos_token_id: int = 49407


def first_eos(ids: jax.Array, eos_token_id: int) -> jax.Array:
    """`(N, T)` int token ids -> `(N,)` pooling positions, transformers' rule."""
    if eos_token_id == 2:
        return jnp.argmax(ids, axis=-1)
    return jnp.argmax(ids == eos_token_id, axis=-1)


class TextTower(nnx.Module):
    """Token ids `(N, T)` -> projected end-of-text embedding `(N, E)` (not normalised)."""

    CONTEXT_START = 1  # installed context vectors replace the tokens after the start token

    def __init__(self, cfg: TextConfig, embed_dim: int, *, rngs: nnx.Rngs | None):
        self.cfg = cfg
        self.token_embedding = param(rngs, (cfg.vocab_size, cfg.width))
        self.pos_embedding = param(rngs, (cfg.context_length, cfg.width))
        self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.depth)])
        self.final_ln = LayerNorm(cfg.width, cfg.eps, rngs=rngs)
        self.proj = Dense(cfg.width, embed_dim, use_bias=False, rngs=rngs)
        self.context = nnx.data(None)

    def set_context(self, context: jax.Array | None) -> None:
        """Install `(n, W)` or `(N, n, W)` context vectors, or None to remove them."""
        if context is None:
            self.context = nnx.data(None)
            return
        if context.ndim not in (2, 3) or context.shape[-1] != self.cfg.width:
            raise ValueError(f"text context {context.shape} must be (n, {self.cfg.width}) or (N, n, {self.cfg.width})")
        if context.shape[-2] > self.cfg.context_length - 2:
            raise ValueError(f"{context.shape[-2]} context vectors leave no room in {self.cfg.context_length} tokens")
        self.context = TextContext(jnp.asarray(context, jnp.float32))

    def embed(self, ids: jax.Array, use_context: bool = True) -> jax.Array:
        """`(N, T)` -> `(N, T, W)` token (or context) plus position embeddings."""
        n_txt, t = ids.shape
        if t > self.cfg.context_length:
            raise ValueError(f"{t} tokens exceed the context length {self.cfg.context_length}")
        x = jnp.take(self.token_embedding[...], ids, axis=0)
        if use_context and self.context is not None and self.context.shape[-2]:
            ctx = self.context[...]
            ctx = jnp.broadcast_to(ctx, (n_txt, *ctx.shape[-2:])).astype(x.dtype)
            start = self.CONTEXT_START
            x = jnp.concatenate([x[:, :start], ctx, x[:, start + ctx.shape[1] :]], axis=1)
        return x + self.pos_embedding[:t]

    def __call__(self, ids: jax.Array, use_context: bool = True) -> jax.Array:
        x = self.embed(ids, use_context)
        t = ids.shape[1]
        mask = jnp.tril(jnp.ones((t, t), bool))
        for block in self.layers:
            x = block(x, mask)
        x = self.final_ln(x)
        pooled = jnp.take_along_axis(x, self.pool_positions(ids)[:, None, None], axis=1)[:, 0]
        return self.proj(pooled)

    def pool_positions(self, ids: jax.Array) -> jax.Array:
        """`(N, T)` ids -> `(N,)` the position each text is pooled at (transformers' CLIP rule)."""
        return first_eos(ids, self.cfg.eos_token_id)
