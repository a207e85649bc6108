"""OpenCLIP state dicts (open_clip_torch format, ViT towers) loaded into our CLIP towers.

    model = load_openclip("RemoteCLIP-ViT-B-32.pt", "ViT-B-32")     # -> adapt.models.clip.CLIPModel

A checkpoint is one file: `.pt` / `.pth` / `.bin` (a `torch.save`d dict, read without torch by
`adapt.models.torch_pickle`, which refuses anything but tensors and plain containers) or
`.safetensors`. Training checkpoints wrapped as {"state_dict": ...} (or {"model": ...}) and keys
prefixed "module." (DistributedDataParallel) are unwrapped. The architecture is not in the file: it
comes from its name (`adapt.models.openclip_arch`, `model.arch`), "-quickgelu" included.

Key mapping onto the towers of `adapt.models.clip` (OpenCLIP name -> ours):
  visual.conv1.weight (W, 3, p, p) -> vision.patch_kernel; visual.class_embedding; visual.positional_embedding;
  visual.ln_pre / ln_post; visual.proj (W, E) -> vision.proj.kernel (already input-major);
  [visual.]transformer.resblocks.N.{ln_1, attn.in_proj_weight (3W, W) + in_proj_bias (q, k, v rows),
  attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj} -> layers.N.{ln1, qkv, out, ln2, fc1, fc2};
  token_embedding.weight; positional_embedding; ln_final; text_projection (W, E); logit_scale (log).
Extra tensors (optimizer state, `attn_mask`, `logit_bias` ...) are ignored; every tensor the towers
need must be there with the architecture's shape, or one ValueError lists each problem.
The tokenizer is OpenCLIP's default for these names, the CLIP BPE tokenizer this package ships.
"""
from __future__ import annotations

import concurrent.futures
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapt.models import checkpoint, torch_pickle
from adapt.models.base import Preprocess
from adapt.models.checkpoint import layer_norm, linear, patch_kernel
from adapt.models.clip import CLIPModel
from adapt.models.clip_load import ClipConfig
from adapt.models.openclip_arch import ARCHS, arch_config
from adapt.models.tokenizer import load_tokenizer

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
SUFFIXES = (*TORCH_SUFFIXES, ".safetensors")


@functools.lru_cache(maxsize=1)
def shipped_tokenizer():
    """The shipped CLIP tokenizer, built once per process (it is stateless; building takes ~1 s)."""
    return load_tokenizer(None)


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """A checkpoint file -> {name: float32 array}, unwrapped ("state_dict"/"model", "module." prefixes)."""
    if path.suffix == ".safetensors":
        obj = checkpoint.read_tensors([path])
    elif path.suffix in TORCH_SUFFIXES:
        obj = torch_pickle.load_state_dict(path)
    else:
        raise ValueError(f"OpenCLIP checkpoint {path}: unknown file type {path.suffix!r} (expected one of "
                         f"{', '.join(SUFFIXES)})")
    for wrapper in ("state_dict", "model"):
        if isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    out = {}
    for name, value in obj.items():
        if isinstance(value, np.ndarray):
            out[name[len("module."):] if name.startswith("module.") else name] = np.asarray(value, np.float32)
    return out


def _block_shapes(prefix: str, width: int, mlp: int) -> dict:
    return {f"{prefix}.ln_1.weight": (width,), f"{prefix}.ln_1.bias": (width,),
            f"{prefix}.attn.in_proj_weight": (3 * width, width), f"{prefix}.attn.in_proj_bias": (3 * width,),
            f"{prefix}.attn.out_proj.weight": (width, width), f"{prefix}.attn.out_proj.bias": (width,),
            f"{prefix}.ln_2.weight": (width,), f"{prefix}.ln_2.bias": (width,),
            f"{prefix}.mlp.c_fc.weight": (mlp, width), f"{prefix}.mlp.c_fc.bias": (mlp,),
            f"{prefix}.mlp.c_proj.weight": (width, mlp), f"{prefix}.mlp.c_proj.bias": (width,)}


def expected_shapes(cfg: ClipConfig) -> dict[str, tuple[int, ...]]:
    """OpenCLIP tensor name -> shape, for every tensor the towers read (logit_scale apart)."""
    v, t, e = cfg.vision, cfg.text, cfg.embed_dim
    s = {"visual.conv1.weight": (v.width, 3, v.patch_size, v.patch_size), "visual.class_embedding": (v.width,),
         "visual.positional_embedding": (v.grid**2 + 1, v.width), "visual.proj": (v.width, e),
         "token_embedding.weight": (t.vocab_size, t.width), "positional_embedding": (t.context_length, t.width),
         "text_projection": (t.width, e)}
    for name, w in (("visual.ln_pre", v.width), ("visual.ln_post", v.width), ("ln_final", t.width)):
        s[f"{name}.weight"] = s[f"{name}.bias"] = (w,)
    for i in range(v.depth):
        s.update(_block_shapes(f"visual.transformer.resblocks.{i}", v.width, v.mlp_dim))
    for i in range(t.depth):
        s.update(_block_shapes(f"transformer.resblocks.{i}", t.width, t.mlp_dim))
    return s


def _kind_hint(sd: dict) -> str:
    """What a state dict that does not fit looks like, when we can tell."""
    if any(k.startswith("vision_model.") for k in sd):
        return "it looks like a Hugging Face CLIPModel state dict: load its folder with model.kind=clip"
    if any(k.startswith("visual.trunk.") for k in sd):
        return "its image tower is a timm model (visual.trunk.*), which this loader does not cover"
    if any(k.startswith("visual.layer1.") for k in sd):
        return "its image tower is a ResNet (visual.layer1.*), which this loader does not cover"
    conv, pos = sd.get("visual.conv1.weight"), sd.get("visual.positional_embedding")
    if conv is None or pos is None or conv.ndim != 4:
        return ""
    fits = [name for name in ARCHS if (lambda c: (c.vision.width, c.vision.patch_size, c.vision.grid**2 + 1)
                                       == (conv.shape[0], conv.shape[2], pos.shape[0]))(arch_config(name))]
    return f"its image tower fits {', '.join(fits)}" if fits else ""


def check_tensors(sd: dict, cfg: ClipConfig, where: str) -> None:
    """One ValueError naming every missing tensor and shape mismatch, with a hint at what the file is."""
    problems = []
    for name, shape in {**expected_shapes(cfg), "logit_scale": ()}.items():
        if name not in sd:
            problems.append(f"missing tensor {name} (expected shape {shape})")
        elif name == "logit_scale" and sd[name].size == 1:
            continue  # () or (1,), open_clip's `nonscalar_logit_scale`
        elif tuple(sd[name].shape) != shape:
            problems.append(f"tensor {name}: expected shape {shape}, found {tuple(sd[name].shape)}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        hint = _kind_hint(sd)
        raise ValueError(f"{where} does not fit its architecture{f' ({hint})' if hint else ''}:\n  "
                         + "\n  ".join(shown))


def _block(sd: dict, p: str) -> dict:
    return {"ln1": layer_norm(sd, f"{p}.ln_1"), "ln2": layer_norm(sd, f"{p}.ln_2"),
            "qkv": {"kernel": sd[f"{p}.attn.in_proj_weight"].T, "bias": sd[f"{p}.attn.in_proj_bias"]},
            "out": linear(sd, f"{p}.attn.out_proj"), "fc1": linear(sd, f"{p}.mlp.c_fc"),
            "fc2": linear(sd, f"{p}.mlp.c_proj")}


def to_pure_dict(sd: dict[str, np.ndarray], cfg: ClipConfig) -> dict:
    """Checked OpenCLIP tensors -> the nested parameter dict of `CLIPModel`."""
    vision = {
        "patch_kernel": patch_kernel(sd["visual.conv1.weight"]),
        "class_embedding": sd["visual.class_embedding"], "pos_embedding": sd["visual.positional_embedding"],
        "pre_ln": layer_norm(sd, "visual.ln_pre"), "post_ln": layer_norm(sd, "visual.ln_post"),
        "layers": {i: _block(sd, f"visual.transformer.resblocks.{i}") for i in range(cfg.vision.depth)},
        "proj": {"kernel": sd["visual.proj"]},
    }
    text = {
        "token_embedding": sd["token_embedding.weight"], "pos_embedding": sd["positional_embedding"],
        "layers": {i: _block(sd, f"transformer.resblocks.{i}") for i in range(cfg.text.depth)},
        "final_ln": layer_norm(sd, "ln_final"), "proj": {"kernel": sd["text_projection"]},
    }
    return {"vision": vision, "text": text}


def from_state_dict(sd: dict[str, np.ndarray], arch: str, where: str = "OpenCLIP state dict") -> CLIPModel:
    """An unwrapped OpenCLIP state dict (float32 arrays) and its architecture name -> CLIPModel;
    model_id and weights_hash are the caller's to set."""
    cfg = arch_config(arch)
    check_tensors(sd, cfg, f"{where} read as {arch}")
    graphdef, state = nnx.split(CLIPModel(cfg, rngs=None))
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, to_pure_dict(sd, cfg)))
    model = nnx.merge(graphdef, state)
    model.model_id = f"openclip:{arch}"
    model.preprocess = Preprocess(image_size=cfg.vision.image_size, resize_size=cfg.vision.image_size)
    model.logit_scale = float(np.exp(sd["logit_scale"].reshape(())))
    model.tokenizer = shipped_tokenizer()
    return model


def load_openclip(path: str | Path, arch: str) -> CLIPModel:
    """An OpenCLIP checkpoint file and its architecture name -> CLIPModel (see the module docstring)."""
    file = Path(path).expanduser().resolve()
    if not arch:
        raise ValueError(f"OpenCLIP checkpoint {file}: set model.arch to its architecture name (e.g. "
                         "ViT-B-32, ViT-B-32-quickgelu, ViT-L-14); the file does not say")
    arch_config(arch)  # an unknown name fails before the file is read
    if file.is_dir():
        raise ValueError(f"OpenCLIP checkpoint {file} is a folder: model.kind=openclip takes one state-dict "
                         f"file ({', '.join(SUFFIXES)}); a Hugging Face folder loads with model.kind=auto")
    if not file.is_file():
        raise FileNotFoundError(f"OpenCLIP checkpoint file {file} does not exist")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # hashing releases the GIL
        digest = pool.submit(checkpoint.files_sha256, [file])
        sd = read_state_dict(file)
    model = from_state_dict(sd, arch, f"OpenCLIP checkpoint {file}")
    model.model_id = f"openclip:{arch}:{file.name}"
    model.weights_hash = digest.result()[:16]
    return model
