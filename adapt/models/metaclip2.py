"""MetaCLIP 2 (Hugging Face `MetaClip2Model` folders) as a frozen model on our CLIP towers.

    model = load_metaclip2("/path/to/metaclip-2-worldwide-huge-quickgelu")   # config.json, model.safetensors, tokenizer.json

transformers' `modeling_metaclip_2.py` (5.25) is CLIP's architecture with CLIP's tensor names
(`vision_model.*`, `text_model.*`, `visual_projection`, `text_projection`, `logit_scale`), so the
config, shape checks and key mapping are `adapt.models.clip_load`'s. Two differences from CLIP:
- Text pooling: always the first position whose id is the config's `eos_token_id`, also when that id
  is 2 (it is 2, XLM-V's `</s>`, in the released weights). CLIP's loader reads eos 2 as the legacy
  "largest id" rule, so `MetaClip2TextTower` pools with the first-eos rule unconditionally.
- Tokenizer: the folder's multilingual tokenizer (`adapt.models.metaclip2_tokenizer`), never the CLIP BPE.
Everything else (pre-LN ViT, QuickGELU by default, class-token pooling, preprocessing from
preprocessor_config.json) is CLIP's; the prompt hooks (VPT, CoOp) work as for CLIP.
"""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapt.models import checkpoint, clip_load
from adapt.models.base import Preprocess
from adapt.models.clip import CLIPModel
from adapt.models.clip_load import ClipConfig
from adapt.models.clip_text import TextTower
from adapt.models.metaclip2_tokenizer import MetaClip2Tokenizer

MODEL_TYPE = "metaclip_2"


class MetaClip2TextTower(TextTower):
    """CLIP's text tower pooled at the first `eos_token_id` whatever its value (MetaClip2TextModel)."""

    def pool_positions(self, ids: jax.Array) -> jax.Array:
        return jnp.argmax(ids == self.cfg.eos_token_id, axis=-1)


class MetaClip2Model(CLIPModel):
    """A MetaCLIP 2 image + text model (the FrozenModel protocol, CLIP's hooks)."""

    def __init__(self, cfg: ClipConfig, *, rngs: nnx.Rngs | None):
        super().__init__(cfg, rngs=rngs)
        self.text = MetaClip2TextTower(cfg.text, cfg.embed_dim, rngs=rngs)
        self.model_id = "metaclip2:random"


def parse_config(raw: dict) -> ClipConfig:
    """A `MetaClip2Config` dict -> ClipConfig (its defaults are CLIPConfig's)."""
    if raw.get("model_type") != MODEL_TYPE:
        raise ValueError(f"config.json has model_type {raw.get('model_type')!r}; expected {MODEL_TYPE!r}")
    return clip_load.parse_config({**raw, "model_type": "clip"})


def from_tensors(tensors: dict[str, np.ndarray], cfg: ClipConfig, where: str = "MetaCLIP 2 state dict") -> MetaClip2Model:
    """Hugging Face-named float32 tensors -> MetaClip2Model (no tokenizer, default preprocessing)."""
    clip_load.check_tensors(tensors, cfg, where)
    graphdef, state = nnx.split(MetaClip2Model(cfg, rngs=None))
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, clip_load.to_pure_dict(tensors, cfg)))
    model = nnx.merge(graphdef, state)
    model.logit_scale = float(np.exp(tensors["logit_scale"]))
    return model


def load_metaclip2(path: str | Path) -> MetaClip2Model:
    """A Hugging Face MetaCLIP 2 folder -> MetaClip2Model. Missing tokenizer.json: FileNotFoundError;
    missing or misshapen tensors: one ValueError naming each."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"MetaCLIP 2 checkpoint folder {folder} does not exist")
    cfg = parse_config(checkpoint.read_config(folder, "MetaCLIP 2"))
    files = checkpoint.weight_files(folder, "MetaCLIP 2")
    tokenizer = MetaClip2Tokenizer(folder, cfg.text.vocab_size, cfg.text.eos_token_id)
    tensors, digest = checkpoint.read_weights(files)
    model = from_tensors(tensors, cfg, str(folder))
    model.model_id = f"metaclip2:{folder.name}"
    model.weights_hash = digest[:16]
    model.preprocess = Preprocess(**clip_load.read_preprocess(folder, cfg.vision.image_size))
    model.tokenizer = tokenizer
    return model
