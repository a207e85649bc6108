"""Tiny (and real-sized) random Hugging Face CLIP checkpoints for tests.

    path = write_tiny_clip(tmp_path / "clip")                  # width 32, 2 blocks, 32 px, patch 8
    path = write_tiny_clip(tmp_path / "clip", hidden_act="gelu", projection_dim=24)

Each folder holds what `transformers.CLIPModel.save_pretrained` writes (config.json, model.safetensors)
plus the shipped CLIP tokenizer files (vocab.json, merges.txt). All weights, LayerNorms and biases
included, are random (seeded) so parity tests do not pass by identity LayerNorms or zero biases.
"""
from __future__ import annotations

import shutil
from pathlib import Path

TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   image_size=32, patch_size=8)
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=77, vocab_size=49408)
# The real OpenAI shapes (text tower shared by B/32 and B/16).
VIT_B32 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
               image_size=224, patch_size=32)
VIT_B16 = {**VIT_B32, "patch_size": 16}
TEXT_B = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
              max_position_embeddings=77, vocab_size=49408)
_BOTH = ("hidden_act", "layer_norm_eps", "hidden_size", "intermediate_size", "num_hidden_layers",
         "num_attention_heads")
_TOP = ("projection_dim", "logit_scale_init_value")


def hf_clip(vision: dict, text: dict, projection_dim: int = 512, seed: int = 0, std: float = 0.02, **top):
    """A random `transformers.CLIPModel` (torch, eval mode), seeded.

    Built on the meta device and filled here (transformers' own init is ~5x slower at ViT-B size):
    matrices N(0, std), LayerNorm scales 1 + N(0, std), biases and the class token N(0, std), so a
    parity test also checks LayerNorms and biases; logit_scale = `logit_scale_init_value`.
    """
    import torch
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(text_config=dict(text), vision_config=dict(vision), projection_dim=projection_dim, **top)
    with torch.device("meta"):
        model = CLIPModel(cfg)
    model = model.to_empty(device="cpu").eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(cfg.logit_scale_init_value)
                continue
            p.normal_(0.0, std, generator=gen)
            if p.ndim == 1 and name.endswith("weight"):  # LayerNorm scale
                p.add_(1.0)
        for name, b in model.named_buffers():
            if name.endswith("position_ids"):
                b.copy_(torch.arange(b.shape[-1]).expand_as(b))
    return model


def copy_tokenizer(path: str | Path) -> None:
    from adapt.models.tokenizer import shipped_tokenizer_dir

    for name in ("vocab.json", "merges.txt"):
        shutil.copy(shipped_tokenizer_dir() / name, Path(path) / name)


def write_clip(path: str | Path, vision: dict, text: dict, projection_dim: int = 512, seed: int = 0,
               tokenizer: bool = True, **top) -> Path:
    """Save a random CLIPModel with the given HF sub-configs to `path`; returns the folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    hf_clip(vision, text, projection_dim, seed, **top).save_pretrained(path)
    if tokenizer:
        copy_tokenizer(path)
    return path


def write_tiny_clip(path: str | Path, *, seed: int = 0, tokenizer: bool = True, vision: dict | None = None,
                    text: dict | None = None, **overrides) -> Path:
    """A tiny random CLIP checkpoint folder (well under a second to write and load).

    `overrides`: keys of both tower configs (hidden_act, layer_norm_eps, hidden_size, ...) apply to
    both towers; `projection_dim` (default 16) and `logit_scale_init_value` to the top config;
    `vision` / `text` dicts override one tower (e.g. vision=dict(image_size=48, patch_size=16)).
    """
    v, t, top = dict(TINY_VISION), dict(TINY_TEXT), {"projection_dim": 16}
    for k, val in overrides.items():
        if k in _BOTH:
            v[k] = t[k] = val
        elif k in _TOP:
            top[k] = val
        else:
            raise TypeError(f"unknown tiny CLIP override {k!r}; use vision=... or text=... for one tower")
    v.update(vision or {})
    t.update(text or {})
    return write_clip(path, v, t, seed=seed, tokenizer=tokenizer, **top)
