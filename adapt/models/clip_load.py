"""Reading Hugging Face CLIP checkpoints: config.json, name and layout mapping (the files
themselves are read by `adapt.models.checkpoint`).

The mapping is strict: every tensor our towers need must be present with the shape the config
implies, otherwise one `ValueError` lists each missing tensor and each shape mismatch. Nothing is
ever left randomly initialised.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from adapt.models import checkpoint
from adapt.models.base import check_tensor_shapes
from adapt.models.checkpoint import fused_linear, layer_norm, linear, patch_kernel
from adapt.models.clip_text import TextConfig
from adapt.models.clip_vision import VisionConfig


@dataclasses.dataclass(frozen=True)
class ClipConfig:
    vision: VisionConfig
    text: TextConfig
    embed_dim: int


def _tower(d: dict, width, mlp, depth, heads) -> dict:
    return dict(
        width=d.get("hidden_size", width), mlp_dim=d.get("intermediate_size", mlp),
        depth=d.get("num_hidden_layers", depth), heads=d.get("num_attention_heads", heads),
        act=d.get("hidden_act", "quick_gelu"), eps=float(d.get("layer_norm_eps", 1e-5)),
    )


def _square(v, what: str) -> int:
    if isinstance(v, (list, tuple)):
        if len(set(v)) != 1:
            raise ValueError(f"non-square {what} {v} is not supported")
        v = v[0]
    return int(v)


def parse_config(raw: dict) -> ClipConfig:
    """A Hugging Face `CLIPConfig` dict -> ClipConfig; missing keys take transformers' defaults."""
    if raw.get("model_type", "clip") != "clip":
        raise ValueError(f"config.json has model_type {raw.get('model_type')!r}; only 'clip' (CLIPModel) is supported")
    # Old configs carry `*_config_dict`, which transformers lets override `*_config`.
    t = {**(raw.get("text_config") or {}), **(raw.get("text_config_dict") or {})}
    v = {**(raw.get("vision_config") or {}), **(raw.get("vision_config_dict") or {})}
    if v.get("num_channels", 3) != 3:
        raise ValueError(f"vision num_channels {v['num_channels']} is not supported (RGB only)")
    text = TextConfig(
        **_tower(t, 512, 2048, 12, 8), vocab_size=t.get("vocab_size", 49408),
        context_length=t.get("max_position_embeddings", 77), eos_token_id=t.get("eos_token_id", 49407),
    )
    vision = VisionConfig(
        **_tower(v, 768, 3072, 12, 12), image_size=_square(v.get("image_size", 224), "image_size"),
        patch_size=_square(v.get("patch_size", 32), "patch_size"),
    )
    return ClipConfig(vision=vision, text=text, embed_dim=raw.get("projection_dim", 512))


def read_config(folder: Path) -> ClipConfig:
    return parse_config(checkpoint.read_config(folder, "CLIP"))


def _block_shapes(prefix: str, width: int, mlp: int) -> dict:
    s = {}
    for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
        s[f"{prefix}.self_attn.{n}.weight"], s[f"{prefix}.self_attn.{n}.bias"] = (width, width), (width,)
    for n in ("layer_norm1", "layer_norm2"):
        s[f"{prefix}.{n}.weight"] = s[f"{prefix}.{n}.bias"] = (width,)
    s[f"{prefix}.mlp.fc1.weight"], s[f"{prefix}.mlp.fc1.bias"] = (mlp, width), (mlp,)
    s[f"{prefix}.mlp.fc2.weight"], s[f"{prefix}.mlp.fc2.bias"] = (width, mlp), (width,)
    return s


def expected_shapes(cfg: ClipConfig) -> dict[str, tuple[int, ...]]:
    """Hugging Face tensor name -> shape, for every tensor the towers read."""
    v, t, e = cfg.vision, cfg.text, cfg.embed_dim
    s = {
        "vision_model.embeddings.class_embedding": (v.width,),
        "vision_model.embeddings.patch_embedding.weight": (v.width, 3, v.patch_size, v.patch_size),
        "vision_model.embeddings.position_embedding.weight": (v.grid**2 + 1, v.width),
        "visual_projection.weight": (e, v.width),
        "text_model.embeddings.token_embedding.weight": (t.vocab_size, t.width),
        "text_model.embeddings.position_embedding.weight": (t.context_length, t.width),
        "text_projection.weight": (e, t.width),
        "logit_scale": (),
    }
    for name, w in (("vision_model.pre_layrnorm", v.width), ("vision_model.post_layernorm", v.width),
                    ("text_model.final_layer_norm", t.width)):
        s[f"{name}.weight"] = s[f"{name}.bias"] = (w,)
    for i in range(v.depth):
        s.update(_block_shapes(f"vision_model.encoder.layers.{i}", v.width, v.mlp_dim))
    for i in range(t.depth):
        s.update(_block_shapes(f"text_model.encoder.layers.{i}", t.width, t.mlp_dim))
    return s


def check_tensors(tensors: dict[str, np.ndarray], cfg: ClipConfig, where: str) -> None:
    """One ValueError naming every missing tensor and every shape mismatch."""
    check_tensor_shapes(tensors, expected_shapes(cfg), f"CLIP checkpoint {where}")


def _block(t, p):
    a = f"{p}.self_attn"
    qkv = fused_linear(t, [f"{a}.{n}_proj" for n in "qkv"])
    return {"ln1": layer_norm(t, f"{p}.layer_norm1"), "qkv": qkv, "out": linear(t, f"{a}.out_proj"),
            "ln2": layer_norm(t, f"{p}.layer_norm2"), "fc1": linear(t, f"{p}.mlp.fc1"),
            "fc2": linear(t, f"{p}.mlp.fc2")}


def to_pure_dict(t: dict[str, np.ndarray], cfg: ClipConfig) -> dict:
    """Checked HF tensors -> the nested parameter dict of `CLIPModel` (as `nnx.to_pure_dict` gives it)."""
    v = cfg.vision
    vision = {
        "patch_kernel": patch_kernel(t["vision_model.embeddings.patch_embedding.weight"]),
        "class_embedding": t["vision_model.embeddings.class_embedding"],
        "pos_embedding": t["vision_model.embeddings.position_embedding.weight"],
        "pre_ln": layer_norm(t, "vision_model.pre_layrnorm"),
        "layers": {i: _block(t, f"vision_model.encoder.layers.{i}") for i in range(v.depth)},
        "post_ln": layer_norm(t, "vision_model.post_layernorm"),
        "proj": linear(t, "visual_projection", bias=False),
    }
    text = {
        "token_embedding": t["text_model.embeddings.token_embedding.weight"],
        "pos_embedding": t["text_model.embeddings.position_embedding.weight"],
        "layers": {i: _block(t, f"text_model.encoder.layers.{i}") for i in range(cfg.text.depth)},
        "final_ln": layer_norm(t, "text_model.final_layer_norm"),
        "proj": linear(t, "text_projection", bias=False),
    }
    return {"vision": vision, "text": text}


def read_preprocess(folder: Path, image_size: int) -> dict:
    """Preprocess fields from `preprocessor_config.json` if present, else CLIP's defaults."""
    d = {"image_size": image_size, "resize_size": image_size}
    path = folder / "preprocessor_config.json"
    if path.is_file():
        raw = json.loads(path.read_text())
        if "image_mean" in raw and "image_std" in raw:
            d["mean"], d["std"] = tuple(raw["image_mean"]), tuple(raw["image_std"])
    return d
