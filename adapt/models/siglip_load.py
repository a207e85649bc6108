"""Reading Hugging Face SigLIP (`SiglipModel`) and SigLIP 2 (`Siglip2Model`) checkpoint folders:
config.json, tensor names and layouts, the tokenizer, preprocessing.

The mapping is strict (as for CLIP): every tensor the towers need must be present with the shape the
config implies, else one ValueError lists each problem; nothing is left randomly initialised.

Tokenizer: the folder's own, loaded by transformers' `AutoTokenizer` with `local_files_only=True`
(SigLIP: SentencePiece `spiece.model`, needs the `sentencepiece` package; SigLIP 2 and the SigLIP 2
fixed-resolution checkpoints: Gemma `tokenizer.json`). Texts are tokenized as the model cards say
SigLIP was trained: `padding="max_length"`, max_length = the text context length (64), truncated; the
padding side and special tokens are the folder's tokenizer settings. Its size must equal the text
`vocab_size` of config.json.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from adapt.models import checkpoint
from adapt.models.base import check_tensor_shapes
from adapt.models.checkpoint import layer_norm, linear, patch_kernel
from adapt.models.clip_load import _block, _block_shapes, _square
from adapt.models.siglip_towers import SiglipTextConfig, SiglipVisionConfig

KINDS = {"siglip": "SigLIP", "siglip2": "SigLIP 2"}
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer.model")
SIGLIP_MEAN_STD = (0.5, 0.5, 0.5)


@dataclasses.dataclass(frozen=True)
class SiglipConfig:
    vision: SiglipVisionConfig
    text: SiglipTextConfig
    kind: str  # "siglip" | "siglip2"

    @property
    def embed_dim(self) -> int:
        return self.vision.width


def _tower(d: dict) -> dict:
    return dict(width=d.get("hidden_size", 768), mlp_dim=d.get("intermediate_size", 3072),
                depth=d.get("num_hidden_layers", 12), heads=d.get("num_attention_heads", 12),
                act=d.get("hidden_act", "gelu_pytorch_tanh"), eps=float(d.get("layer_norm_eps", 1e-6)))


def parse_config(raw: dict) -> SiglipConfig:
    """A Hugging Face `SiglipConfig` / `Siglip2Config` dict -> SiglipConfig (transformers' defaults)."""
    kind = raw.get("model_type", "")
    if kind not in KINDS:
        raise ValueError(f"config.json has model_type {kind!r}; expected 'siglip' or 'siglip2'")
    v, t = raw.get("vision_config") or {}, raw.get("text_config") or {}
    if v.get("num_channels", 3) != 3:
        raise ValueError(f"vision num_channels {v['num_channels']} is not supported (RGB only)")
    if not v.get("vision_use_head", True):
        raise ValueError("vision_use_head=false (no attention-pooling head) is not supported")
    p = _square(v.get("patch_size", 16), "patch_size")
    if kind == "siglip2":
        n = int(v.get("num_patches", 256))
        g = int(round(n**0.5))
        if g * g != n:
            raise ValueError(f"SigLIP 2 num_patches {n} is not a square grid")
        vision = SiglipVisionConfig(**_tower(v), image_size=g * p, patch_size=p, pos_grid=g, naflex=True)
    else:
        s = _square(v.get("image_size", 224), "image_size")
        vision = SiglipVisionConfig(**_tower(v), image_size=s, patch_size=p, pos_grid=s // p)
    text = SiglipTextConfig(**_tower(t), vocab_size=t.get("vocab_size", 32000),
                            context_length=t.get("max_position_embeddings", 64),
                            projection_size=t.get("projection_size", t.get("hidden_size", 768)))
    if text.projection_size != vision.width:
        raise ValueError(f"text projection_size {text.projection_size} differs from the image width {vision.width}")
    return SiglipConfig(vision=vision, text=text, kind=kind)


def expected_shapes(cfg: SiglipConfig) -> dict[str, tuple[int, ...]]:
    """Hugging Face tensor name -> shape, for every tensor the towers read."""
    v, t = cfg.vision, cfg.text
    e, h = "vision_model.embeddings", "vision_model.head"
    patch = (v.width, 3 * v.patch_size**2) if v.naflex else (v.width, 3, v.patch_size, v.patch_size)
    s = {f"{e}.patch_embedding.weight": patch, f"{e}.patch_embedding.bias": (v.width,),
         f"{e}.position_embedding.weight": (v.pos_grid**2, v.width),
         f"{h}.probe": (1, 1, v.width), f"{h}.attention.in_proj_weight": (3 * v.width, v.width),
         f"{h}.attention.in_proj_bias": (3 * v.width,), f"{h}.attention.out_proj.weight": (v.width, v.width),
         f"{h}.attention.out_proj.bias": (v.width,), f"{h}.mlp.fc1.weight": (v.mlp_dim, v.width),
         f"{h}.mlp.fc1.bias": (v.mlp_dim,), f"{h}.mlp.fc2.weight": (v.width, v.mlp_dim), f"{h}.mlp.fc2.bias": (v.width,),
         "text_model.embeddings.token_embedding.weight": (t.vocab_size, t.width),
         "text_model.embeddings.position_embedding.weight": (t.context_length, t.width),
         "text_model.head.weight": (t.projection_size, t.width), "text_model.head.bias": (t.projection_size,),
         "logit_scale": (1,), "logit_bias": (1,)}
    for name, w in (("vision_model.post_layernorm", v.width), (f"{h}.layernorm", v.width),
                    ("text_model.final_layer_norm", t.width)):
        s[f"{name}.weight"] = s[f"{name}.bias"] = (w,)
    for i in range(v.depth):
        s.update(_block_shapes(f"vision_model.encoder.layers.{i}", v.width, v.mlp_dim))
    for i in range(t.depth):
        s.update(_block_shapes(f"text_model.encoder.layers.{i}", t.width, t.mlp_dim))
    return s


def check_tensors(tensors: dict[str, np.ndarray], cfg: SiglipConfig, where: str) -> None:
    check_tensor_shapes(tensors, expected_shapes(cfg), f"{KINDS[cfg.kind]} checkpoint {where}")


def _map_head(t: dict[str, np.ndarray], width: int) -> dict:
    h = "vision_model.head"
    w, b = t[f"{h}.attention.in_proj_weight"], t[f"{h}.attention.in_proj_bias"]
    return {"probe": t[f"{h}.probe"].reshape(width),
            "q": {"kernel": w[:width].T, "bias": b[:width]},
            "kv": {"kernel": w[width:].T, "bias": b[width:]},
            "out": linear(t, f"{h}.attention.out_proj"), "ln": layer_norm(t, f"{h}.layernorm"),
            "fc1": linear(t, f"{h}.mlp.fc1"), "fc2": linear(t, f"{h}.mlp.fc2")}


def vision_pure_dict(t: dict[str, np.ndarray], v: SiglipVisionConfig) -> dict:
    """Checked HF `vision_model.*` tensors -> the parameter dict of `SiglipVisionTower`."""
    e = "vision_model.embeddings"
    w = t[f"{e}.patch_embedding.weight"]
    kernel = w.T if v.naflex else patch_kernel(w)  # NaFlex patches are already (row, column, channel)
    return {"patch": {"kernel": kernel, "bias": t[f"{e}.patch_embedding.bias"]},
            "pos_embedding": t[f"{e}.position_embedding.weight"],
            "layers": {i: _block(t, f"vision_model.encoder.layers.{i}") for i in range(v.depth)},
            "post_ln": layer_norm(t, "vision_model.post_layernorm"), "head": _map_head(t, v.width)}


def to_pure_dict(t: dict[str, np.ndarray], cfg: SiglipConfig) -> dict:
    """Checked HF tensors -> the nested parameter dict of `SiglipModel` (`nnx.to_pure_dict` layout)."""
    text = {"token_embedding": t["text_model.embeddings.token_embedding.weight"],
            "pos_embedding": t["text_model.embeddings.position_embedding.weight"],
            "layers": {i: _block(t, f"text_model.encoder.layers.{i}") for i in range(cfg.text.depth)},
            "final_ln": layer_norm(t, "text_model.final_layer_norm"), "head": linear(t, "text_model.head")}
    return {"vision": vision_pure_dict(t, cfg.vision), "text": text}


def read_preprocess(folder: Path, image_size: int) -> dict:
    """Preprocess fields: mean / std from `preprocessor_config.json` if present, else SigLIP's 0.5 / 0.5."""
    d = {"image_size": image_size, "resize_size": image_size, "mean": SIGLIP_MEAN_STD, "std": SIGLIP_MEAN_STD}
    path = folder / "preprocessor_config.json"
    if path.is_file():
        raw = json.loads(path.read_text())
        if "image_mean" in raw and "image_std" in raw:
            d["mean"], d["std"] = tuple(raw["image_mean"]), tuple(raw["image_std"])
    return d


class FolderTokenizer:
    """Texts -> `(N, T)` int32 ids, padded to T ("max_length") and truncated, by the folder's tokenizer."""

    def __init__(self, backend, source: str):
        self.backend, self.source = backend, source

    @property
    def vocab_size(self) -> int:
        return len(self.backend)

    def encode(self, text: str) -> list[int]:
        """One text -> ids with the tokenizer's special tokens (SigLIP: a final eos), not padded."""
        return list(self.backend(text)["input_ids"])

    def __call__(self, texts: Sequence[str], context_length: int = 64) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        enc = self.backend(list(texts), padding="max_length", max_length=context_length, truncation=True)
        return np.asarray(enc["input_ids"], np.int32).reshape(len(texts), context_length)


def load_tokenizer(folder: Path, kind: str) -> FolderTokenizer:
    """The folder's tokenizer; FileNotFoundError naming the folder and the files it needs."""
    if not any((folder / n).is_file() for n in TOKENIZER_FILES):
        raise FileNotFoundError(f"{KINDS[kind]} checkpoint folder {folder}: no tokenizer files (needs "
                                "spiece.model for SigLIP, tokenizer.json for SigLIP 2 / Gemma); copy the "
                                "tokenizer files of the checkpoint into the folder")
    from transformers import AutoTokenizer  # local: transformers takes seconds to import

    try:
        backend = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except ImportError as err:  # SentencePiece tokenizers need the sentencepiece package
        raise ImportError(f"cannot load the tokenizer of {folder}: {err} (pip install sentencepiece)") from err
    return FolderTokenizer(backend, str(folder))


def read_config(folder: Path) -> SiglipConfig:
    return parse_config(checkpoint.read_config(folder, "SigLIP"))
