"""Reading DINO (HF `ViTModel`, model_type "vit") and DINOv2 (`Dinov2Model`, "dinov2") checkpoints:
config and name mapping (the files themselves are read by `adapt.models.checkpoint`).

A checkpoint folder holds `config.json` and `model.safetensors` (or shards named by
`model.safetensors.index.json`), with the tensor names `save_pretrained` writes, optionally under a
`vit.` or `dinov2.` prefix (the backbone of a classification checkpoint). The mapping is strict:
every tensor the encoder reads must be there with the shape the config implies, else one
`ValueError` lists each problem. Unread tensors (pooler, mask token, heads) are ignored.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from adapt.models import checkpoint
from adapt.models.base import check_tensor_shapes
from adapt.models.checkpoint import fused_linear, layer_norm, linear, patch_kernel
from adapt.models.clip_vision import activation

KINDS = {"vit": "DINO (ViTModel)", "dinov2": "DINOv2 (Dinov2Model)"}


@dataclasses.dataclass(frozen=True)
class DinoConfig:
    """Size of a DINO / DINOv2 ViT, as read from a Hugging Face config.

    `mlp_dim` is the MLP hidden size (for SwiGLU: of each of its gate and up projections).
    `image_size` fixes the position-embedding grid `image_size // patch_size` (square).
    `interpolate_offset` 0.0 resamples position embeddings as transformers does (target size);
    0.1 reproduces the original DINO/DINOv2 repositories (scale factor (g_out + 0.1) / g_in).
    """

    kind: str
    width: int
    depth: int
    heads: int
    mlp_dim: int
    patch_size: int
    image_size: int
    eps: float
    act: str = "gelu"
    qkv_bias: bool = True
    layer_scale: bool = False
    swiglu: bool = False
    interpolate_offset: float = 0.0

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def _square(v, what: str, where: str) -> int:
    if isinstance(v, (list, tuple)):
        if len(set(v)) != 1:
            raise ValueError(f"{where}: non-square {what} {list(v)} is not supported")
        v = v[0]
    return int(v)


def parse_config(raw: dict, where: str = "config.json") -> DinoConfig:
    """A Hugging Face ViT / DINOv2 config dict -> DinoConfig; missing keys take transformers' defaults."""
    kind = raw.get("model_type")
    if kind not in KINDS:
        raise ValueError(f"{where}: model_type {kind!r} is not a DINO model "
                         f"(expected {' or '.join(repr(k) for k in KINDS)})")
    if raw.get("num_channels", 3) != 3:
        raise ValueError(f"{where}: num_channels {raw['num_channels']} is not supported (RGB only)")
    width = int(raw.get("hidden_size", 768))
    common = dict(
        kind=kind, width=width, depth=int(raw.get("num_hidden_layers", 12)),
        heads=int(raw.get("num_attention_heads", 12)), act=raw.get("hidden_act", "gelu"),
        qkv_bias=bool(raw.get("qkv_bias", True)),
        patch_size=_square(raw.get("patch_size", 16 if kind == "vit" else 14), "patch_size", where),
        image_size=_square(raw.get("image_size", 224), "image_size", where),
    )
    if kind == "vit":
        cfg = DinoConfig(**common, mlp_dim=int(raw.get("intermediate_size", 3072)),
                         eps=float(raw.get("layer_norm_eps", 1e-12)))
    else:
        swiglu = bool(raw.get("use_swiglu_ffn", False))
        mlp = int(width * raw.get("mlp_ratio", 4))
        if swiglu:  # two thirds of the MLP size, rounded up to a multiple of 8, as transformers does
            mlp = (int(mlp * 2 / 3) + 7) // 8 * 8
        cfg = DinoConfig(**common, mlp_dim=mlp, eps=float(raw.get("layer_norm_eps", 1e-6)),
                         layer_scale=True, swiglu=swiglu)
    if cfg.width % cfg.heads:
        raise ValueError(f"{where}: hidden_size {cfg.width} is not divisible by num_attention_heads {cfg.heads}")
    if cfg.image_size < cfg.patch_size:
        raise ValueError(f"{where}: image_size {cfg.image_size} is smaller than patch_size {cfg.patch_size}")
    if not cfg.swiglu:
        try:
            activation(cfg.act)
        except ValueError as e:
            raise ValueError(f"{where}: hidden_act {cfg.act!r} is not supported") from e
    return cfg


def read_config(folder: Path) -> DinoConfig:
    return parse_config(checkpoint.read_config(folder, "DINO"), str(folder / "config.json"))


def strip_prefix(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drops a `vit.` / `dinov2.` backbone prefix if the checkpoint has one."""
    for prefix in ("vit.", "dinov2."):
        if f"{prefix}embeddings.cls_token" in tensors and "embeddings.cls_token" not in tensors:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return tensors


def _names(cfg: DinoConfig, i: int) -> dict[str, str]:
    """Our block part -> the HF module name of layer i."""
    p = f"encoder.layer.{i}"
    if cfg.kind == "vit":
        return {"ln1": f"{p}.layernorm_before", "ln2": f"{p}.layernorm_after",
                "fc1": f"{p}.intermediate.dense", "fc2": f"{p}.output.dense"}
    fc1, fc2 = ("weights_in", "weights_out") if cfg.swiglu else ("fc1", "fc2")
    return {"ln1": f"{p}.norm1", "ln2": f"{p}.norm2", "fc1": f"{p}.mlp.{fc1}", "fc2": f"{p}.mlp.{fc2}"}


def expected_shapes(cfg: DinoConfig) -> dict[str, tuple[int, ...]]:
    """HF tensor name -> shape, for every tensor the encoder reads."""
    d, p, m = cfg.width, cfg.patch_size, cfg.mlp_dim
    s = {"embeddings.cls_token": (1, 1, d), "embeddings.position_embeddings": (1, cfg.grid**2 + 1, d),
         "embeddings.patch_embeddings.projection.weight": (d, 3, p, p),
         "embeddings.patch_embeddings.projection.bias": (d,), "layernorm.weight": (d,), "layernorm.bias": (d,)}
    fan = 2 * m if cfg.swiglu else m
    for i in range(cfg.depth):
        n, a = _names(cfg, i), f"encoder.layer.{i}.attention"
        for proj in ("query", "key", "value"):
            s[f"{a}.attention.{proj}.weight"] = (d, d)
            if cfg.qkv_bias:
                s[f"{a}.attention.{proj}.bias"] = (d,)
        s[f"{a}.output.dense.weight"], s[f"{a}.output.dense.bias"] = (d, d), (d,)
        for ln in ("ln1", "ln2"):
            s[f"{n[ln]}.weight"] = s[f"{n[ln]}.bias"] = (d,)
        s[f"{n['fc1']}.weight"], s[f"{n['fc1']}.bias"] = (fan, d), (fan,)
        s[f"{n['fc2']}.weight"], s[f"{n['fc2']}.bias"] = (d, m), (d,)
        if cfg.layer_scale:
            s[f"encoder.layer.{i}.layer_scale1.lambda1"] = s[f"encoder.layer.{i}.layer_scale2.lambda1"] = (d,)
    return s


def check_tensors(tensors: dict[str, np.ndarray], cfg: DinoConfig, where: str) -> None:
    """One ValueError naming every missing tensor and every shape mismatch."""
    check_tensor_shapes(tensors, expected_shapes(cfg), f"{KINDS[cfg.kind]} checkpoint {where}")


def _block(t, cfg: DinoConfig, i: int) -> dict:
    n, a = _names(cfg, i), f"encoder.layer.{i}.attention"
    out = {
        "ln1": layer_norm(t, n["ln1"]), "ln2": layer_norm(t, n["ln2"]),
        "fc1": linear(t, n["fc1"]), "fc2": linear(t, n["fc2"]),
        "qkv": fused_linear(t, [f"{a}.attention.{p}" for p in ("query", "key", "value")]),
        "out": linear(t, f"{a}.output.dense"),
    }
    if cfg.layer_scale:
        out["ls1"] = t[f"encoder.layer.{i}.layer_scale1.lambda1"]
        out["ls2"] = t[f"encoder.layer.{i}.layer_scale2.lambda1"]
    return out


def to_pure_dict(t: dict[str, np.ndarray], cfg: DinoConfig) -> dict:
    """Checked HF tensors -> the nested parameter dict of `DinoViT` (as `nnx.to_pure_dict` gives it)."""
    d = cfg.width
    return {
        "patch_kernel": patch_kernel(t["embeddings.patch_embeddings.projection.weight"]),
        "patch_bias": t["embeddings.patch_embeddings.projection.bias"],
        "cls_token": t["embeddings.cls_token"].reshape(d),
        "pos_embedding": t["embeddings.position_embeddings"].reshape(cfg.grid**2 + 1, d),
        "layers": {i: _block(t, cfg, i) for i in range(cfg.depth)},
        "final_ln": layer_norm(t, "layernorm"),
    }
