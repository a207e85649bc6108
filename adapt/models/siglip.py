"""SigLIP and SigLIP 2 as frozen models, loaded from Hugging Face checkpoint folders.

    model = load_siglip("/path/to/siglip-base-patch16-224")   # config.json, model.safetensors, tokenizer
    img = model.encode_images(pixels)                           # (B, S, S, 3) -> (B, D), jit-able
    txt = model.encode_texts(["a photo of a cat"])              # -> np.ndarray (1, D)
    p = sigmoid(model.logit_scale * img @ txt.T + model.logit_bias)   # SigLIP's pairwise probability

`SiglipModel` reuses `CLIPModel`'s interface and hooks (it subclasses it: text batching, CoOp
context, VPT prompts, trainable filters) over the towers of `adapt.models.siglip_towers`. SigLIP 2
checkpoints (`Siglip2Model`, NaFlex) take any patch grid through `encode_patches`; `encode_images`
feeds them the square `image_size` = sqrt(num_patches) * patch_size input the engine's preprocessing
gives (e.g. 256 px for 256 patches of 16 px: the grid NaFlex picks for a square image).

Deviations from transformers' processors (the towers themselves match to float precision): images are
resized on the shorter side and centre-cropped (the SigLIP processor resizes to a square without
cropping; the NaFlex processor keeps the aspect ratio), so non-square images see a crop.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapt.models import checkpoint, siglip_load
from adapt.models.base import Preprocess
from adapt.models.clip import PLACEHOLDER, CLIPModel, l2_normalize
from adapt.models.siglip_load import KINDS, SiglipConfig
from adapt.models.siglip_towers import SiglipTextTower, SiglipVisionTower


class SiglipModel(CLIPModel):
    """SigLIP / SigLIP 2 image + text model implementing the FrozenModel protocol (adapt.models.base)."""

    def __init__(self, cfg: SiglipConfig, *, rngs: nnx.Rngs | None):
        """Random weights from `rngs`; `rngs=None` gives an abstract skeleton for `load_siglip` to fill."""
        self.cfg = cfg
        self.vision = SiglipVisionTower(cfg.vision, rngs=rngs)
        self.text = SiglipTextTower(cfg.text, rngs=rngs)
        self.model_id = f"{cfg.kind}:random"
        self.weights_hash = "random"
        self.preprocess = Preprocess(image_size=cfg.vision.image_size, resize_size=cfg.vision.image_size,
                                     mean=siglip_load.SIGLIP_MEAN_STD, std=siglip_load.SIGLIP_MEAN_STD)
        self.embed_dim = cfg.embed_dim
        self.logit_scale = 10.0
        self.logit_bias = -10.0
        self.tokenizer: siglip_load.FolderTokenizer | None = None

    def encode_patches(self, patches: jax.Array, spatial: jax.Array, mask: jax.Array,
                       normalize: bool = True) -> jax.Array:
        """NaFlex input (SigLIP 2): patches `(B, P, p * p * 3)` in (row, column, channel) order, spatial
        `(B, 2)` int patch rows and columns, mask `(B, P)` (1 for the first rows * columns) -> `(B, D)`."""
        if not self.cfg.vision.naflex:
            raise ValueError("encode_patches needs a SigLIP 2 (NaFlex) checkpoint")
        z = self.vision.encode_patches(patches, spatial, mask)
        return l2_normalize(z) if normalize else z

    def patch_tokens(self, pixels: jax.Array, layers: tuple[int, ...]) -> list[jax.Array]:
        """Outputs of blocks `layers` (0-based, negative from the end) without prompt tokens:
        `(B, H, W, 3)` -> list of `(B, P, W)`, P = (image_size / patch_size)^2."""
        depth = self.cfg.vision.depth
        idx = [l % depth if -depth <= l < depth else None for l in layers]
        if None in idx:
            raise ValueError(f"layers {layers} out of range for a {depth}-block image tower")
        _, out = self.vision.tokens(self.vision.patchify(pixels), collect=tuple(idx))
        return [out[i] for i in idx]

    def _content_ids(self, text: str) -> list[int]:
        """A text's ids without its trailing end token (SigLIP texts have no start token)."""
        ids = self.tokenizer.encode(text)
        eos = self.tokenizer.backend.eos_token_id
        return ids[:-1] if ids and ids[-1] == eos else ids

    def context_ids(self, classnames: Sequence[str]) -> np.ndarray:
        """`(N, T)` ids of `context_texts`, checked so the placeholders sit at positions 0..n-1."""
        ids = self.tokenize(self.context_texts(classnames))
        n = self.n_context()
        ph = self._content_ids(PLACEHOLDER)
        if len(ph) != 1 or not (ids[:, :n] == ph[0]).all():
            raise ValueError(f"placeholder {PLACEHOLDER!r} is not one token at positions 0..n-1 with the "
                             f"tokenizer of {self.tokenizer.source}")
        return ids

    def add_text_context(self, n_ctx: int | None = None, init_text: str | None = None,
                         n_classes: int | None = None, std: float = 0.02, seed: int = 0) -> None:
        """CoOp context `(n, W)` (or `(n_classes, n, W)`), placed at positions 0..n-1; `init_text`
        initialises it with that text's token embeddings."""
        if init_text is None:
            return super().add_text_context(n_ctx, None, n_classes, std, seed)
        tok = self._content_ids(init_text)
        if n_ctx is not None and n_ctx != len(tok):
            raise ValueError(f"init_text {init_text!r} has {len(tok)} tokens, n_ctx is {n_ctx}")
        ctx = np.asarray(self.text.token_embedding[...])[tok]
        if n_classes is not None:
            ctx = np.broadcast_to(ctx, (n_classes, *ctx.shape))
        self.text.set_context(ctx)


def load_siglip(path: str | Path) -> SiglipModel:
    """A Hugging Face SigLIP / SigLIP 2 folder (config.json, model.safetensors, tokenizer files) ->
    SiglipModel. Missing tokenizer files: FileNotFoundError; missing or misshapen tensors, a tokenizer
    whose size is not the text vocab_size: ValueError."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"SigLIP checkpoint folder {folder} does not exist")
    cfg = siglip_load.read_config(folder)
    files = checkpoint.weight_files(folder, KINDS[cfg.kind])
    tokenizer = siglip_load.load_tokenizer(folder, cfg.kind)
    if cfg.text.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"text vocab_size {cfg.text.vocab_size} in {folder}/config.json differs from "
                         f"the tokenizer's {tokenizer.vocab_size}")
    tensors, digest = checkpoint.read_weights(files)
    siglip_load.check_tensors(tensors, cfg, str(folder))
    graphdef, state = nnx.split(SiglipModel(cfg, rngs=None))
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, siglip_load.to_pure_dict(tensors, cfg)))
    model = nnx.merge(graphdef, state)
    model.model_id = f"{cfg.kind}:{folder.name}"
    model.weights_hash = digest[:16]  # sha256 of the weight files, first 16 hex digits
    model.preprocess = Preprocess(**siglip_load.read_preprocess(folder, cfg.vision.image_size))
    model.logit_scale = float(np.exp(tensors["logit_scale"].reshape(())))
    model.logit_bias = float(tensors["logit_bias"].reshape(()))
    model.tokenizer = tokenizer
    return model
