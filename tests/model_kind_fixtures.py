"""Helpers for the OpenCLIP, MetaCLIP 2 and ALIGN tests: open_clip's model module as the PyTorch oracle, random
weights that exercise every tensor, a tiny folder pool and the 1-vs-8-device embedding check."""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P
from PIL import Image


def open_clip_model_module():
    """`open_clip.model` (open_clip_torch 3.3.0) without running `open_clip/__init__.py`.

    The package __init__ imports torchvision's transforms, and the only torchvision on the package
    index (0.28.0, built for CUDA torch) fails to import next to the CPU torch 2.13.0. The model code
    itself needs torchvision only for `FrozenBatchNorm2d` (freezing ResNet towers, unused for ViTs), so
    a stub provides that one name while `open_clip.model` is imported and is removed right after. The
    classes that compute (CLIP, VisionTransformer, TextTransformer) are open_clip's own.
    """
    import transformers  # noqa: F401  (imported first so it never sees the stub)

    if "open_clip.model" in sys.modules:
        return sys.modules["open_clip.model"], Path(sys.modules["open_clip.model"].__file__).parent
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        raise ImportError("open_clip_torch is not installed: `bash .ci/setup test` installs it (--no-deps)")
    root = Path(spec.origin).parent
    misc = types.ModuleType("torchvision.ops.misc")
    misc.FrozenBatchNorm2d = type("FrozenBatchNorm2d", (), {})
    stubs = {"torchvision": types.ModuleType("torchvision"), "torchvision.ops": types.ModuleType("torchvision.ops"),
             "torchvision.ops.misc": misc}
    package = types.ModuleType("open_clip")
    package.__path__ = [str(root)]
    sys.modules.setdefault("open_clip", package)
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        return importlib.import_module("open_clip.model"), root
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def randomize_(model, seed: int, std: float = 0.02, logit_scale: float = float(np.log(1 / 0.07))):
    """Fill a torch model in place: matrices, biases, embeddings N(0, std), LayerNorm scales 1 + N(0, std)
    (so parity also checks LayerNorms and biases), logit_scale fixed; position_ids buffers rebuilt."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                p.fill_(logit_scale)
                continue
            p.normal_(0.0, std, generator=gen)
            if p.ndim == 1 and name.endswith("weight"):
                p.add_(1.0)
        for name, b in model.named_buffers():
            if name.endswith("position_ids"):
                b.copy_(torch.arange(b.shape[-1]).expand_as(b))
    return model.eval()


def write_pool(root: Path, classes=("red square", "green disc"), n_per_class: int = 3) -> Path:
    """A folder pool: one sub-folder per class of small coloured random images."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            a = rng.integers(0, 60, size=(24, 24, 3), dtype=np.uint8)
            a[..., c] += 180
            Image.fromarray(a).save(root / name / f"{i}.png")
    return root


def embed_on_devices(model, pixels: np.ndarray, n_devices: int) -> np.ndarray:
    """`encode_images` with the pool axis sharded over the first `n_devices` test devices, weights
    replicated (checked: the output lies on all of them)."""
    graphdef, state = nnx.split(model)
    devices = jax.devices()[:n_devices]
    mesh = jax.make_mesh((len(devices),), ("pool",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    out = jax.jit(lambda s, x: nnx.merge(graphdef, s).encode_images(x))(
        state, jax.device_put(pixels, NamedSharding(mesh, P("pool"))))
    assert len(out.sharding.device_set) == n_devices
    return np.asarray(out)


def embed_on_1_and_8_devices(model, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`encode_images` with the pool axis on one device and sharded over eight."""
    return embed_on_devices(model, pixels, 1), embed_on_devices(model, pixels, 8)
