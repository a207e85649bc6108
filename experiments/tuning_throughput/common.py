"""Settings and synthetic data both sides of the tuning-throughput benchmark share.

Every array is drawn here from a NumPy seed, so the JAX process and the PyTorch process see the
same pixels, BN statistics, class weights and labels without passing files between them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.clip_fixtures import TINY_TEXT, VIT_B32  # noqa: E402

MEAN = (0.48145466, 0.4578275, 0.40821073)  # adapt.models.base.Preprocess (CLIP)
STD = (0.26862954, 0.26130258, 0.27577711)
N_PROMPTS, N_CLASSES, PROJ_DIM = 16, 10, 512
CLIP_SCALE, OFFLINE_SCALE, BN_EPS = 100.0, 35.0, 1e-3
LR, MOMENTUM, WEIGHT_DECAY, WARMUP_EPOCHS = 0.1, 0.9, 0.1, 1
HW, CH = 7, 1280  # offline head pre-activation map


def vision_cfg(layers: int) -> dict:
    """ViT-B/32 at 224 px (real width, heads, patch, MLP), `layers` blocks."""
    return {**VIT_B32, "num_hidden_layers": layers}


TEXT_CFG = TINY_TEXT  # the text tower is never run; a tiny one keeps the checkpoint small


def lr_at(epoch: int, epochs: int) -> float:
    """adapt.tuning.loop.warmup_cosine, in plain Python."""
    if epoch < WARMUP_EPOCHS:
        return LR * (epoch + 1) / max(WARMUP_EPOCHS, 1)
    t = min(max((epoch - WARMUP_EPOCHS) / max(epochs - WARMUP_EPOCHS, 1), 0.0), 1.0)
    return 0.5 * LR * (1.0 + np.cos(np.pi * t))


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clip_data(n: int) -> dict:
    """(n, 224, 224, 3) preprocessed pixels (NHWC, as our pool caches them) and (C, 512) class weights."""
    rng = np.random.default_rng(0)
    return {"pixels": rng.standard_normal((n, 224, 224, 3), np.float32),
            "class_weights": unit_rows(rng.standard_normal((N_CLASSES, PROJ_DIM)))}


def offline_data(n: int) -> dict:
    """Cached head pre-activations z (n, 7, 7, 1280), BN statistics and affine, fixed class weights
    T (C, 1280), frozen pool embeddings (for the centre), labels and weights."""
    rng = np.random.default_rng(1)
    f32 = np.float32
    return {"z": rng.standard_normal((n, HW, HW, CH), f32),
            "bn_mean": 0.3 * rng.standard_normal(CH).astype(f32),
            "bn_var": rng.uniform(0.5, 2.0, CH).astype(f32),
            "bn_scale": rng.uniform(0.5, 1.5, CH).astype(f32),
            "bn_bias": 0.5 * rng.standard_normal(CH).astype(f32),
            "class_weights": unit_rows(rng.standard_normal((N_CLASSES, CH))),
            "emb": unit_rows(np.abs(rng.standard_normal((n, CH)))),
            "y": rng.integers(0, N_CLASSES, n).astype(np.int32),
            "w": np.ones(n, f32)}
