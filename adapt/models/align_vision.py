"""ALIGN's image tower in Flax NNX: the EfficientNet of transformers' `AlignVisionModel`, inference form.

Architecture, as `modeling_align.py` (transformers 5.25) builds it from `AlignVisionConfig`:
- channels `round_filters(c)` (scaled by `width_coefficient`, rounded to `depth_divisor`), each stage
  repeated `ceil(depth_coefficient * repeats)` times (B7 for kakaobrain/align-base: 2.0 / 3.1, 55 blocks);
- stem: zero pad one pixel right and bottom, 3x3 stride-2 conv (no bias), BatchNorm, swish;
- block: [1x1 expand + BN + swish] -> kxk depthwise (+ BN + swish) -> squeeze-excite (mean over the
  map, 1x1 reduce to `int(block input * squeeze_expansion_ratio)` + swish, 1x1 expand + sigmoid, times
  the map) -> 1x1 project + BN; the input is added back in every block but the first of its stage;
- no top 1x1 conv (EfficientNet's classification top is absent in ALIGN): the pooled output, which
  `AlignModel` uses as the image embedding without any projection, is the mean (or, with
  `pooling_type="max"`, the max) over the map of the last block's output. HF writes it as
  `AvgPool2d(hidden_dim, ceil_mode=True)`, a single window over the whole map while the map is at most
  `hidden_dim` pixels a side (9 x 9 at 289 px); `hidden_dim` itself never sizes a tensor.

Depthwise padding is HF's, not TensorFlow "SAME": stride 2 pads (k//2 - 1, k//2) on each axis (or
(k//2, k//2) for blocks listed in `depthwise_padding`), then a valid conv; stride 1 pads k//2 on all
sides. On odd map sizes (145 px after the stem at 289 px input) this differs from
`adapt.models.efficientnet.same_pads`, so the convolution here takes explicit pads; its two equal forms
(sum of k*k shifted products, fast on CPU; XLA's grouped convolution elsewhere) follow efficientnet.py.
BatchNorm runs in inference form, folded into the preceding convolution (efficientnet.BatchNorm, with
the config's `batch_norm_eps`). Input NHWC `(B, H, W, 3)`, any size; output `(B, C_last)`.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from adapt.models import efficientnet
from adapt.models.clip_vision import param

_HI = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class AlignVisionConfig:
    """The fields of a Hugging Face `AlignVisionConfig` the tower reads (transformers' defaults = B7)."""

    image_size: int = 600
    width_coefficient: float = 2.0
    depth_coefficient: float = 3.1
    depth_divisor: int = 8
    kernel_sizes: tuple[int, ...] = (3, 3, 5, 3, 5, 5, 3)
    in_channels: tuple[int, ...] = (32, 16, 24, 40, 80, 112, 192)
    out_channels: tuple[int, ...] = (16, 24, 40, 80, 112, 192, 320)
    depthwise_padding: tuple[int, ...] = ()
    strides: tuple[int, ...] = (1, 2, 2, 2, 1, 2, 1)
    num_block_repeats: tuple[int, ...] = (1, 2, 2, 3, 3, 4, 1)
    expand_ratios: tuple[int, ...] = (1, 6, 6, 6, 6, 6, 6)
    squeeze_expansion_ratio: float = 0.25
    pooling_type: str = "mean"
    batch_norm_eps: float = 1e-3

    def round_filters(self, c: int) -> int:
        """HF `round_filters`: c * width_coefficient rounded to a multiple of depth_divisor (>= 90%)."""
        d, scaled = self.depth_divisor, c * self.width_coefficient
        new = max(d, int(scaled + d / 2) // d * d)
        return int(new + d if new < 0.9 * scaled else new)

    @property
    def stem_channels(self) -> int:
        return self.round_filters(32)

    @property
    def out_dim(self) -> int:
        """C_last: the width of the pooled output (640 for align-base)."""
        return self.round_filters(self.out_channels[-1])


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    cin: int
    cout: int
    kernel: int
    stride: int
    expand: int
    se_dim: int
    residual: bool
    adjust_padding: bool


def block_specs(cfg: AlignVisionConfig) -> list[BlockSpec]:
    """Every block of `AlignVisionEncoder`, in order."""
    specs = []
    for i, k in enumerate(cfg.kernel_sizes):
        cin, cout = cfg.round_filters(cfg.in_channels[i]), cfg.round_filters(cfg.out_channels[i])
        for j in range(int(math.ceil(cfg.depth_coefficient * cfg.num_block_repeats[i]))):
            c = cin if j == 0 else cout
            specs.append(BlockSpec(cin=c, cout=cout, kernel=k, stride=cfg.strides[i] if j == 0 else 1,
                                   expand=cfg.expand_ratios[i],
                                   se_dim=max(1, int(c * cfg.squeeze_expansion_ratio)), residual=j > 0,
                                   adjust_padding=len(specs) not in cfg.depthwise_padding))
    return specs


def depthwise_pads(k: int, stride: int, adjust: bool) -> tuple[int, int]:
    """(before, after) zero padding of one spatial axis, HF's `correct_pad` / "same" rule."""
    if stride == 1:
        return k // 2, k // 2
    return (k // 2 - 1, k // 2) if adjust else (k // 2, k // 2)


def depthwise(x: jax.Array, w: jax.Array, stride: int, pads: tuple[int, int], form: str = "auto") -> jax.Array:
    """Depthwise conv with explicit symmetric-per-axis `pads`: x `(B, H, W, C)`, w `(k, k, C)`."""
    if form == "auto":
        form = "shifted" if jax.default_backend() == "cpu" else "grouped"
    if form == "grouped":
        return jax.lax.conv_general_dilated(x, w[:, :, None, :], (stride, stride), [pads, pads],
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=x.shape[-1], precision=_HI)
    if form != "shifted":
        raise ValueError(f"unknown depthwise form {form!r} (auto, shifted, grouped)")
    return efficientnet.shifted_sum(jnp.pad(x, ((0, 0), pads, pads, (0, 0))), w, stride)


class BatchNorm(efficientnet.BatchNorm):
    """efficientnet.BatchNorm (inference, folded into the previous op) with the config's eps."""

    def __init__(self, c: int, eps: float):
        super().__init__(c)
        self.eps = eps

    def affine(self) -> tuple[jax.Array, jax.Array]:
        mul = self.scale[...] * jax.lax.rsqrt(self.var[...] + self.eps)
        return mul, self.bias[...] - self.mean[...] * mul


def pointwise(x: jax.Array, w: jax.Array, bn: BatchNorm) -> jax.Array:
    """1x1 conv `(C_in, C_out)` with its BatchNorm folded in."""
    mul, add = bn.affine()
    return jnp.dot(x, w * mul, precision=_HI) + add


class SqueezeExcite(nnx.Module):
    def __init__(self, c: int, se: int, rngs: nnx.Rngs | None):
        self.reduce, self.reduce_bias = param(rngs, (c, se)), param(rngs, (se,), "zeros")
        self.expand, self.expand_bias = param(rngs, (se, c)), param(rngs, (c,), "zeros")

    def __call__(self, x: jax.Array) -> jax.Array:
        s = jax.nn.silu(jnp.dot(x.mean(axis=(1, 2)), self.reduce[...], precision=_HI) + self.reduce_bias[...])
        s = jax.nn.sigmoid(jnp.dot(s, self.expand[...], precision=_HI) + self.expand_bias[...])
        return x * s[:, None, None, :]


class MBConvSE(nnx.Module):
    """One `AlignVisionBlock`: expand -> depthwise -> squeeze-excite -> project (+ input)."""

    def __init__(self, spec: BlockSpec, eps: float, rngs: nnx.Rngs | None):
        mid = spec.cin * spec.expand
        self.spec = spec
        self.expand = param(rngs, (spec.cin, mid)) if spec.expand != 1 else nnx.data(None)
        self.expand_bn = BatchNorm(mid, eps) if spec.expand != 1 else nnx.data(None)
        self.dw, self.dw_bn = param(rngs, (spec.kernel, spec.kernel, mid)), BatchNorm(mid, eps)
        self.se = SqueezeExcite(mid, spec.se_dim, rngs)
        self.project, self.project_bn = param(rngs, (mid, spec.cout)), BatchNorm(spec.cout, eps)

    def __call__(self, x: jax.Array, form: str = "auto") -> jax.Array:
        s, h = self.spec, x
        if self.expand is not None:
            h = jax.nn.silu(pointwise(h, self.expand[...], self.expand_bn))
        mul, add = self.dw_bn.affine()
        pads = depthwise_pads(s.kernel, s.stride, s.adjust_padding)
        h = jax.nn.silu(depthwise(h, self.dw[...] * mul, s.stride, pads, form) + add)
        h = pointwise(self.se(h), self.project[...], self.project_bn)
        return h + x if s.residual else h


class AlignVisionTower(nnx.Module):
    """Pixels `(B, H, W, 3)` -> pooled `(B, C_last)` (not normalised): AlignVisionModel's pooler_output."""

    def __init__(self, cfg: AlignVisionConfig, *, rngs: nnx.Rngs | None, depthwise_form: str = "auto"):
        self.cfg, self.depthwise_form = cfg, depthwise_form
        self.stem = param(rngs, (3, 3, 3, cfg.stem_channels))
        self.stem_bn = BatchNorm(cfg.stem_channels, cfg.batch_norm_eps)
        self.blocks = nnx.List([MBConvSE(s, cfg.batch_norm_eps, rngs) for s in block_specs(cfg)])

    def feature_map(self, pixels: jax.Array) -> jax.Array:
        """`(B, H, W, 3)` -> the last block's output `(B, h, w, C_last)` (HF's last_hidden_state)."""
        mul, add = self.stem_bn.affine()
        x = jax.lax.conv_general_dilated(pixels, self.stem[...] * mul, (2, 2), [(0, 1), (0, 1)],
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=_HI)
        x = jax.nn.silu(x + add)
        for block in self.blocks:
            x = block(x, self.depthwise_form)
        return x

    def __call__(self, pixels: jax.Array) -> jax.Array:
        x = self.feature_map(pixels)
        return x.max(axis=(1, 2)) if self.cfg.pooling_type == "max" else x.mean(axis=(1, 2))
