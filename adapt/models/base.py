"""What every frozen model presents to the engine and to the methods.

A frozen model is an `nnx.Module` with these members:

  model_id: str            stable id, e.g. "clip:openai/clip-vit-base-patch32" or "offline-default"
  weights_hash: str        hex digest of the loaded weights (cache keys, artifact meta)
  preprocess: Preprocess   how a PIL image becomes the model's input pixels
  embed_dim: int           D, the joint embedding size
  logit_scale: float       s, the temperature of zero-shot logits
  logit_bias: float        b, the bias of a sigmoid-trained model (SigLIP, SigLIP 2): sigmoid(s cos + b)
                           is its probability that an image and a text match; 0.0 for softmax models.
                           Over K classes softmax(s cos) is unchanged by b and has the argmax of
                           sigmoid(s cos + b), so methods use softmax(s cos) for every model kind.

  encode_images(pixels)    (B, H, W, 3) float32, already preprocessed -> (B, D), rows L2-normalised.
                           Pure and jit-able (the embedder jits it through nnx.split / nnx.merge).
  encode_texts(texts)      list of str -> np.ndarray (n, D) float32, rows L2-normalised, in the same
                           space as encode_images. Tokenises and batches internally.

Optional members (methods that need them check with hasattr and fail clearly):

  patch_features(pixels, layers)  -> list of (B, h, w, C) maps (MuSc)
"""
from __future__ import annotations

import dataclasses
import json
from typing import Protocol, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Deterministic weak-view preprocessing, applied on the host.

    The shorter side is resized to `resize_size` (bicubic by default), the centre `image_size` square
    is cropped, and pixels in [0, 1] are normalised as (x - mean) / std per channel.
    """

    image_size: int = 224
    resize_size: int = 224
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    interpolation: str = "bicubic"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)


class FrozenModel(Protocol):
    model_id: str
    weights_hash: str
    preprocess: Preprocess
    embed_dim: int
    logit_scale: float
    logit_bias: float

    def encode_images(self, pixels): ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def check_tensor_shapes(tensors: dict, expected: dict, what: str) -> None:
    """One ValueError naming every missing tensor and every shape mismatch of a checkpoint.
    expected: tensor name -> shape; what: e.g. "CLIP checkpoint DIR"."""
    problems = []
    for name, shape in expected.items():
        if name not in tensors:
            problems.append(f"missing tensor {name} (expected shape {shape})")
        elif tuple(tensors[name].shape) != shape:
            problems.append(f"tensor {name}: expected shape {shape}, found {tuple(tensors[name].shape)}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ValueError(f"{what} does not match its config.json:\n  " + "\n  ".join(shown))
