"""A frozen model with tunable prompt parameters, seen as a classifier over the pool's rows.

`make_prompted(inputs, prompt, ...)` returns a `Prompted` for the run's model:
- CLIP (`adapt.models.clip.CLIPModel`): textual = CoOp context vectors, visual = VPT tokens
  (shallow), multimodal = both; trained from the pool's preprocessed pixels with on-device
  augmentation.
- the offline default (`adapt.models.offline.OfflineModel`): textual = MiniLM context vectors
  through the ConSE map, visual = the head BatchNorm's affine, trained on cached head
  pre-activations (`adapt.tuning.offline_head`), multimodal = both.

Every adapter gives: `data` (per-row training inputs, host arrays, rows = the pool's real rows),
`init(seed)` (params pytree; zero = the frozen model for the visual side), `features(params,
batch, key, augment)` (B, D) and `class_weights(params)` (C, D), rows L2-normalised, `probs(params)`
over the whole pool, and `export(params)` -> (Head, model parameters for the artifact, model setup).
Image features are centred on the frozen pool mean when `center` (the centred zero-shot step).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapt.core.distributed import to_host
from adapt.core.method import Head
from adapt.models.preprocess import to_pixels
from adapt.tuning import augment as aug
from adapt.tuning import offline_head

PROMPTS = ("textual", "visual", "multimodal")


def _unit(x):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class Prompted:
    prompt: str
    data: dict
    scale: float

    center = None

    def _jitted(self, name, fn):
        """One compiled pool pass per adapter (called once per round), not one per call."""
        cache = self.__dict__.setdefault("_jit_cache", {})
        if name not in cache:
            cache[name] = jax.jit(fn)
        return cache[name]

    def features(self, params, batch, key, augment="none"):
        """(B, D) the classifier's image features: the embedding, centred when `center`, unit rows."""
        f = self.embed(params, batch, key, augment)
        return _unit(f - self.center) if self.center is not None else f

    def embed_all(self, params, batch_size: int = 512) -> np.ndarray:
        """(n, D) the tuned model's image embeddings of every pool row (what the artifact computes)."""
        fn = self._jitted("embed", lambda p, b: self.embed(p, b, jax.random.key(0)))
        n = len(next(iter(self.data.values())))
        return np.concatenate([np.asarray(fn(params, {k: jnp.asarray(v[s:s + batch_size]) for k, v in self.data.items()}))
                               for s in range(0, n, batch_size)])

    def logits(self, params, batch, key, augment="none"):
        return self.scale * self.features(params, batch, key, augment) @ self.class_weights(params).T

    def probs(self, params, batch_size: int = 512) -> np.ndarray:
        """(n, C) softmax probabilities over every pool row, unaugmented."""
        fn = self._jitted("probs", lambda p, b: jax.nn.softmax(self.logits(p, b, jax.random.key(0)), -1))
        n = len(next(iter(self.data.values())))
        out = [np.asarray(fn(params, {k: jnp.asarray(v[s:s + batch_size]) for k, v in self.data.items()}))
               for s in range(0, n, batch_size)]
        return np.concatenate(out)


class OfflinePrompted(Prompted):
    def __init__(self, inputs, prompt, *, n_ctx=16, center=True, head_inputs=None, block_outputs=None,
                 lora_rank=0):
        self.prompt, self.model, self.scale = prompt, inputs.model, float(inputs.logit_scale)
        n = int(to_host(inputs.mask).sum())
        x = to_host(inputs.x)[:n]
        self.center = jnp.asarray(x.mean(0)) if center else None
        self.fixed_weights = jnp.asarray(to_host(inputs.class_weights))
        self.text = offline_head.ContextText(self.model, inputs.class_names, n_ctx) if prompt != "visual" else None
        self.base = offline_head.head_affine(self.model)
        self.stats = offline_head.bn_stats(self.model)
        self.data = {"z": head_inputs} if prompt != "textual" else {"emb": x}
        self.lora_rank = lora_rank if prompt != "textual" else 0
        if self.lora_rank:
            self.data["x"] = block_outputs
            self.head_conv = jnp.asarray(self.model.image.conv_head[...])  # (320, 1280)

    def init(self, seed: int):
        p = {}
        if self.text is not None:
            p["ctx"] = self.text.init_context(seed=seed)
        if self.prompt != "textual":
            p["affine"] = jax.tree.map(jnp.zeros_like, self.base)  # deltas: zero = frozen model
        if self.lora_rank:  # LoRA: A ~ N(0, 1/320), B = 0, so the update starts at zero
            a = np.random.default_rng(seed + 1).standard_normal((320, self.lora_rank)) / np.sqrt(320)
            p["lora"] = (jnp.asarray(a, jnp.float32), jnp.zeros((self.lora_rank, 1280)))
        return p

    def _affine(self, params):
        """Deltas in the units of the BN output: scale s0 (1 + d_s), bias b0 + |s0| d_b (the BN
        output has std about |s0| per channel), so one LR moves every channel alike."""
        d, s0 = params["affine"], self.base.scale
        return type(self.base)(s0 * (1.0 + d.scale), self.base.bias + jnp.abs(s0) * d.bias)

    def embed(self, params, batch, key, augment="none"):
        if "z" not in batch:
            return batch["emb"]
        flip = jax.random.bernoulli(key, shape=(batch["z"].shape[0],)) if augment != "none" else None
        return offline_head.pooled_features(self.stats, self._affine(params), batch["z"], flip,
                                  params.get("lora"), batch.get("x"))

    def class_weights(self, params):
        return self.text.class_weights(params["ctx"]) if "ctx" in params else self.fixed_weights

    def export(self, params):
        cw = np.asarray(self.class_weights(params))
        head = Head(cw, "embedding", None if self.center is None else np.asarray(self.center), True, self.scale)
        if "affine" not in params:
            return head, None, None
        a = self._affine(params)
        offline_head.set_head_affine(self.model, a)
        tuned = {"image/head_bn/scale": np.asarray(a.scale), "image/head_bn/bias": np.asarray(a.bias)}
        if "lora" in params:  # merged: x @ (W + A B) = z + x A B
            w = np.asarray(self.head_conv + params["lora"][0] @ params["lora"][1])
            self.model.image.conv_head[...] = jnp.asarray(w)
            tuned["image/conv_head"] = w
        return head, tuned, None


class ClipPrompted(Prompted):
    def __init__(self, inputs, prompt, *, n_ctx=16, n_visual=16, center=False, pixels=None):
        self.prompt, self.model, self.scale = prompt, inputs.model, float(inputs.logit_scale)
        m = self.model
        self.n_visual = n_visual if prompt != "textual" else 0
        if self.n_visual:
            m.add_visual_prompts(n_visual, std=m.cfg.vision.width ** -0.5)
        if prompt != "visual":
            m.add_text_context(n_ctx)
            self.ids = jnp.asarray(m.context_ids(inputs.class_names))
        kind = {"textual": "text_context", "visual": "visual_prompts", "multimodal": "prompts"}[prompt]
        self.graph, self.params0, self.rest = nnx.split(m, m.trainable_filter(kind), ...)
        self.fixed_weights = jnp.asarray(to_host(inputs.class_weights))
        self.pre = m.preprocess
        self.data = {"pixels": pixels}
        n = int(to_host(inputs.mask).sum())
        self.center = jnp.asarray(to_host(inputs.x)[:n].mean(0)) if center else None

    def init(self, seed: int):
        """Visual prompts ~ width^-1/2 N(0, 1), text context ~ 0.02 N(0, 1) (the spec's inits), seeded."""
        rng = np.random.default_rng(seed)
        flat = []
        for path, v in nnx.to_flat_state(self.params0):
            std = self.model.cfg.vision.width ** -0.5 if "prompts" in map(str, path) else 0.02
            flat.append((path, v.replace(jnp.asarray(std * rng.standard_normal(v.shape), jnp.float32))))
        return nnx.from_flat_state(flat)

    def embed(self, params, batch, key, augment="none"):
        m = nnx.merge(self.graph, params, self.rest)
        px = aug.augment(key, batch["pixels"], self.pre.mean, self.pre.std, augment)
        return m.encode_images(px)

    def class_weights(self, params):
        if self.prompt == "visual":
            return self.fixed_weights
        m = nnx.merge(self.graph, params, self.rest)
        return m.encode_tokens(self.ids)

    def export(self, params):
        nnx.update(self.model, params)
        head = Head(np.asarray(self.class_weights(params)), "embedding",
                    None if self.center is None else np.asarray(self.center), True, self.scale)
        if not self.n_visual:
            return head, None, None
        flat = {"/".join(map(str, k)): np.asarray(v) for k, v in nnx.to_flat_state(params)
                if "prompts" in map(str, k)}
        return head, flat, {"visual_prompts": self.n_visual}


def pool_pixels(pool, kept, preprocess) -> np.ndarray:
    """(n, H, W, 3) float32 preprocessed pixels of the kept pool items (for pixel-level tuning)."""
    return np.stack([to_pixels(pool.load(int(i)), preprocess) for i in kept]).astype(np.float32)


def model_family(model) -> str:
    """"offline" for the offline default (a CNN image tower with a head BatchNorm), "clip" for a
    transformer two-tower model that takes prompts (CLIP and the CLIP-like kinds)."""
    if model is None:
        raise ValueError("prompt tuning needs the model: the engine passes it in MethodInputs.model")
    if hasattr(model, "image") and hasattr(model.image, "head_bn"):
        return "offline"
    if hasattr(model, "add_visual_prompts"):
        return "clip"
    raise TypeError(f"{type(model).__name__} has no prompt-tuning adapter")


def make_prompted(inputs, prompt: str, *, n_ctx: int = 16, center: bool | None = None, lora_rank: int = 0,
                  embed_kwargs: dict | None = None, progress: bool = True) -> Prompted:
    if prompt not in PROMPTS:
        raise ValueError(f"prompt must be one of {PROMPTS}, not {prompt!r}")
    model = inputs.model
    if model is None:
        raise ValueError("prompt tuning needs the model: the engine passes it in MethodInputs.model")
    if model_family(model) == "offline":
        head_inputs = None
        if prompt != "textual":
            head_inputs, kept = offline_head.cache_head_inputs(model, inputs.pool, inputs.mesh,
                                                               progress=progress, **(embed_kwargs or {}))
            if not np.array_equal(kept, inputs.kept):
                raise RuntimeError("the head-input cache and the embedding cache kept different items")
        block_outputs = None
        if prompt != "textual" and lora_rank:
            block_outputs, _ = offline_head.cache_head_inputs(model, inputs.pool, inputs.mesh, what="block_output",
                                                              progress=progress, **(embed_kwargs or {}))
        return OfflinePrompted(inputs, prompt, n_ctx=n_ctx, center=True if center is None else center,
                               head_inputs=head_inputs, block_outputs=block_outputs, lora_rank=lora_rank)
    pixels = pool_pixels(inputs.pool, inputs.kept, model.preprocess)
    return ClipPrompted(inputs, prompt, n_ctx=n_ctx, center=bool(center), pixels=pixels)
