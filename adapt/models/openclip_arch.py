"""OpenCLIP ViT architectures by name (`model.arch`), as our `ClipConfig`.

The shapes are those of open_clip's model configs (`open_clip/model_configs/<name>.json`, read for
version 3.3.0), written out here for the ViT towers with the CLIP BPE tokenizer (49,408 tokens, 77
positions). open_clip's rules for the derived sizes: vision heads = width / head_width (head_width 64
unless given), MLP width = int(width * mlp_ratio) (4.0 unless given), text MLP = 4 * width; LayerNorm
eps 1e-5; GELU (exact) unless the name ends in "-quickgelu", which selects QuickGELU
(x * sigmoid(1.702 x)), as open_clip's `quick_gelu` flag does for any name.

Which activation a checkpoint needs is not in its file. OpenAI-initialised towers use QuickGELU: open_clip
builds QuickGELU whenever it loads `pretrained="openai"`. GeoRSCLIP's code loads its ViT-B-32 and
ViT-L-14 files into `pretrained="openai"` models (so `ViT-B-32-quickgelu`, `ViT-L-14-quickgelu`), its
ViT-H-14 into a LAION one (`ViT-H-14`). RemoteCLIP's own loading snippet builds plain `ViT-B-32`
(GELU) although its weights descend from OpenAI's; `ViT-B-32` reproduces what its authors run,
`ViT-B-32-quickgelu` the activation of its initialisation (which scores better is untested here: no
real weights offline).

Text pooling: OpenCLIP pools at `argmax(ids)` (the end-of-text id 49407 is the largest id); our text
tower applies that rule when `eos_token_id == 2` (transformers' legacy flag), so the config says 2.

Not covered (errors name the nearest known names): ResNet towers (RN50...), timm towers (ConvNeXt,
EVA), SigLIP towers (their own kind), the MetaCLIP 2 "worldwide" names (XLM-V tokenizer: load the
Hugging Face MetaClip2Model folder with model.kind=metaclip2), CLIPA and CoCa variants.
"""
from __future__ import annotations

import difflib

from adapt.models.clip_load import ClipConfig
from adapt.models.clip_text import TextConfig
from adapt.models.clip_vision import VisionConfig

QUICKGELU = "-quickgelu"
ARGMAX_POOLING = 2  # TextConfig.eos_token_id value that selects argmax(ids) pooling (clip_text.first_eos)

# name: (embed_dim, (image_size, patch_size, width, layers, head_width, mlp_ratio), (width, heads, layers))
ARCHS: dict[str, tuple] = {
    "ViT-S-32": (384, (224, 32, 384, 12, 64, 4.0), (384, 6, 12)),
    "ViT-S-16": (384, (224, 16, 384, 12, 64, 4.0), (384, 6, 12)),
    "ViT-M-32": (512, (224, 32, 512, 12, 64, 4.0), (512, 8, 12)),
    "ViT-M-16": (512, (224, 16, 512, 12, 64, 4.0), (512, 8, 12)),
    "ViT-B-32": (512, (224, 32, 768, 12, 64, 4.0), (512, 8, 12)),
    "ViT-B-32-256": (512, (256, 32, 768, 12, 64, 4.0), (512, 8, 12)),
    "ViT-B-16": (512, (224, 16, 768, 12, 64, 4.0), (512, 8, 12)),
    "ViT-B-32-plus-256": (640, (256, 32, 896, 12, 64, 4.0), (640, 10, 12)),
    "ViT-B-16-plus": (640, (224, 16, 896, 12, 64, 4.0), (640, 10, 12)),
    "ViT-B-16-plus-240": (640, (240, 16, 896, 12, 64, 4.0), (640, 10, 12)),
    "ViT-L-14": (768, (224, 14, 1024, 24, 64, 4.0), (768, 12, 12)),
    "ViT-L-14-280": (768, (280, 14, 1024, 24, 64, 4.0), (768, 12, 12)),
    "ViT-L-14-336": (768, (336, 14, 1024, 24, 64, 4.0), (768, 12, 12)),
    "ViT-L-16": (768, (224, 16, 1024, 24, 64, 4.0), (768, 12, 12)),
    "ViT-L-16-320": (768, (320, 16, 1024, 24, 64, 4.0), (768, 12, 12)),
    "ViT-H-14": (1024, (224, 14, 1280, 32, 80, 4.0), (1024, 16, 24)),
    "ViT-H-14-378": (1024, (378, 14, 1280, 32, 80, 4.0), (1024, 16, 24)),
    "ViT-H-16": (1024, (224, 16, 1280, 32, 80, 4.0), (1024, 16, 24)),
    "ViT-g-14": (1024, (224, 14, 1408, 40, 88, 4.3637), (1024, 16, 24)),
    "ViT-bigG-14": (1280, (224, 14, 1664, 48, 104, 4.9231), (1280, 20, 32)),
    "ViT-e-14": (1280, (224, 14, 1792, 56, 112, 8.5715), (1280, 20, 36)),
}


def known_names() -> list[str]:
    return sorted([*ARCHS, *(n + QUICKGELU for n in ARCHS)])


def arch_config(name: str) -> ClipConfig:
    """`ViT-B-32`, `ViT-B-32-quickgelu`, ... -> ClipConfig; ValueError naming the nearest known names."""
    base, quick = (name[: -len(QUICKGELU)], True) if name.endswith(QUICKGELU) else (name, False)
    if base not in ARCHS:
        near = difflib.get_close_matches(name, known_names(), n=3, cutoff=0.5)
        hint = f"; nearest: {', '.join(near)}" if near else ""
        raise ValueError(f"unknown OpenCLIP architecture {name!r}{hint} (known ViT names: "
                         f"{', '.join(ARCHS)}, each also with {QUICKGELU!r})")
    embed_dim, (image, patch, width, layers, head_width, mlp_ratio), (t_width, t_heads, t_layers) = ARCHS[base]
    act = "quick_gelu" if quick else "gelu"
    vision = VisionConfig(width=width, depth=layers, heads=width // head_width, mlp_dim=int(width * mlp_ratio),
                          act=act, eps=1e-5, image_size=image, patch_size=patch)
    text = TextConfig(width=t_width, depth=t_layers, heads=t_heads, mlp_dim=4 * t_width, act=act, eps=1e-5,
                      vocab_size=49408, context_length=77, eos_token_id=ARGMAX_POOLING)
    return ClipConfig(vision=vision, text=text, embed_dim=embed_dim)
