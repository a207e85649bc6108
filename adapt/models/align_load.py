"""Reading Hugging Face ALIGN (`AlignModel`) checkpoint folders: config.json, tensor names and layouts,
the weights (`model.safetensors` or `pytorch_model.bin`), the BERT tokenizer, the preprocessing.

The mapping is strict: every tensor the towers need must be present with the shape the config implies,
else one ValueError lists each problem; nothing is left randomly initialised. Tensors the towers do not
read: BatchNorm `num_batches_tracked` and the text pooler (`text_model.pooler.*`: `AlignModel` embeds
texts from the [CLS] hidden state, not from the pooler).

Tokenizer: the folder's BERT WordPiece tokenizer (`tokenizer.json` or `vocab.txt`) read by transformers'
`AutoTokenizer` with `local_files_only=True`; texts are padded to 64 tokens and truncated, as
`AlignProcessor` does (its text defaults: `padding="max_length"`, `max_length=64`), with the attention
mask. Its size must equal the text `vocab_size`.

Preprocessing (`EfficientNetImageProcessor`, read from `preprocessor_config.json`): pixels x in 0..255
are rescaled `x * rescale_factor` (minus 1 with `rescale_offset`), normalised `(x - mean) / std` with
`do_normalize`, divided by `std` once more with `include_top`; all of it is one per-channel affine map,
written here as our `(p - mean') / std'` on p = x / 255. align-base: factor 1/127.5 with offset, no
normalisation: p * 2 - 1. Resize: `size` (a square) then the centre `crop_size` with `do_center_crop`.
Without the file: the processor's class defaults at the config's `image_size`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from adapt.models import checkpoint, torch_pickle
from adapt.models.align_vision import AlignVisionConfig, block_specs
from adapt.models.base import check_tensor_shapes
from adapt.models.minilm import BertConfig

MODEL_TYPE = "align"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
TEXT_LENGTH = 64  # AlignProcessor's max_length
_VISION_FIELDS = {f.name for f in dataclasses.fields(AlignVisionConfig)}
_BN = ("weight", "bias", "running_mean", "running_var")


@dataclasses.dataclass(frozen=True)
class AlignConfig:
    vision: AlignVisionConfig
    text: BertConfig
    projection_dim: int

    @property
    def embed_dim(self) -> int:
        return self.projection_dim


def parse_config(raw: dict) -> AlignConfig:
    """A Hugging Face `AlignConfig` dict -> AlignConfig (transformers' defaults for missing fields)."""
    if raw.get("model_type") != MODEL_TYPE:
        raise ValueError(f"config.json has model_type {raw.get('model_type')!r}; expected {MODEL_TYPE!r}")
    v, t = raw.get("vision_config") or {}, raw.get("text_config") or {}
    if v.get("num_channels", 3) != 3:
        raise ValueError(f"vision num_channels {v['num_channels']} is not supported (RGB only)")
    if v.get("hidden_act", "swish") not in ("swish", "silu"):
        raise ValueError(f"vision hidden_act {v['hidden_act']!r} is not supported (swish only)")
    if v.get("pooling_type", "mean") not in ("mean", "max"):
        raise ValueError(f"vision pooling_type {v['pooling_type']!r} is not supported (mean or max)")
    if t.get("hidden_act", "gelu") != "gelu" or t.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only a BERT text tower with exact GELU and absolute positions is supported")
    fields = {k: tuple(x) if isinstance(x, list) else x for k, x in v.items() if k in _VISION_FIELDS}
    size = fields.get("image_size", 600)
    fields["image_size"] = int(size[0] if isinstance(size, tuple) else size)
    vision = AlignVisionConfig(**fields)
    if any(k % 2 == 0 for k in vision.kernel_sizes):
        raise ValueError(f"vision kernel_sizes {vision.kernel_sizes}: only odd kernels are supported")
    text = BertConfig(t.get("vocab_size", 30522), t.get("hidden_size", 768), t.get("num_hidden_layers", 12),
                      t.get("num_attention_heads", 12), t.get("intermediate_size", 3072),
                      t.get("max_position_embeddings", 512), t.get("type_vocab_size", 2),
                      float(t.get("layer_norm_eps", 1e-12)))
    proj = int(raw.get("projection_dim", 640))
    if proj != vision.out_dim:
        raise ValueError(f"projection_dim {proj} differs from the image tower's output width {vision.out_dim}: "
                         "AlignModel compares the unprojected image output with the projected text")
    return AlignConfig(vision=vision, text=text, projection_dim=proj)


def _bn(prefix: str, c: int) -> dict:
    return {f"{prefix}.{n}": (c,) for n in _BN}


def expected_shapes(cfg: AlignConfig) -> dict[str, tuple[int, ...]]:
    """Hugging Face tensor name -> shape, for every tensor the towers read."""
    v, t = cfg.vision, cfg.text
    e = "vision_model.embeddings"
    s = {f"{e}.convolution.weight": (v.stem_channels, 3, 3, 3), **_bn(f"{e}.batchnorm", v.stem_channels)}
    for i, b in enumerate(block_specs(v)):
        p, mid = f"vision_model.encoder.blocks.{i}", b.cin * b.expand
        if b.expand != 1:
            s.update({f"{p}.expansion.expand_conv.weight": (mid, b.cin, 1, 1), **_bn(f"{p}.expansion.expand_bn", mid)})
        s.update({f"{p}.depthwise_conv.depthwise_conv.weight": (mid, 1, b.kernel, b.kernel),
                  **_bn(f"{p}.depthwise_conv.depthwise_norm", mid),
                  f"{p}.squeeze_excite.reduce.weight": (b.se_dim, mid, 1, 1),
                  f"{p}.squeeze_excite.reduce.bias": (b.se_dim,),
                  f"{p}.squeeze_excite.expand.weight": (mid, b.se_dim, 1, 1),
                  f"{p}.squeeze_excite.expand.bias": (mid,),
                  f"{p}.projection.project_conv.weight": (b.cout, mid, 1, 1),
                  **_bn(f"{p}.projection.project_bn", b.cout)})
    h, e = t.hidden, "text_model.embeddings"
    s.update({f"{e}.word_embeddings.weight": (t.vocab_size, h), f"{e}.position_embeddings.weight": (t.max_positions, h),
              f"{e}.token_type_embeddings.weight": (t.type_vocab, h), f"{e}.LayerNorm.weight": (h,),
              f"{e}.LayerNorm.bias": (h,), "text_projection.weight": (cfg.projection_dim, h),
              "text_projection.bias": (cfg.projection_dim,), "temperature": ()})
    for i in range(t.layers):
        p = f"text_model.encoder.layer.{i}"
        dense = {"attention.self.query": (h, h), "attention.self.key": (h, h), "attention.self.value": (h, h),
                 "attention.output.dense": (h, h), "intermediate.dense": (t.intermediate, h),
                 "output.dense": (h, t.intermediate)}
        for name, (dout, din) in dense.items():
            s.update({f"{p}.{name}.weight": (dout, din), f"{p}.{name}.bias": (dout,)})
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            s.update({f"{p}.{ln}.weight": (h,), f"{p}.{ln}.bias": (h,)})
    return s


def check_tensors(tensors: dict, cfg: AlignConfig, where: str) -> None:
    check_tensor_shapes(tensors, expected_shapes(cfg), f"ALIGN checkpoint {where}")


def _bn_dict(t: dict, prefix: str) -> dict:
    return {ours: t[f"{prefix}.{theirs}"] for ours, theirs in zip(("scale", "bias", "mean", "var"), _BN)}


def _mat(w: np.ndarray) -> np.ndarray:
    return w[:, :, 0, 0].T  # 1x1 conv (out, in, 1, 1) -> (in, out)


def _vision(t: dict, v: AlignVisionConfig) -> dict:
    e = "vision_model.embeddings"
    blocks = {}
    for i, b in enumerate(block_specs(v)):
        p, se = f"vision_model.encoder.blocks.{i}", f"vision_model.encoder.blocks.{i}.squeeze_excite"
        d = {"dw": t[f"{p}.depthwise_conv.depthwise_conv.weight"][:, 0].transpose(1, 2, 0),
             "dw_bn": _bn_dict(t, f"{p}.depthwise_conv.depthwise_norm"),
             "se": {"reduce": _mat(t[f"{se}.reduce.weight"]), "reduce_bias": t[f"{se}.reduce.bias"],
                    "expand": _mat(t[f"{se}.expand.weight"]), "expand_bias": t[f"{se}.expand.bias"]},
             "project": _mat(t[f"{p}.projection.project_conv.weight"]),
             "project_bn": _bn_dict(t, f"{p}.projection.project_bn")}
        if b.expand != 1:
            d["expand"] = _mat(t[f"{p}.expansion.expand_conv.weight"])
            d["expand_bn"] = _bn_dict(t, f"{p}.expansion.expand_bn")
        blocks[i] = d
    return {"stem": t[f"{e}.convolution.weight"].transpose(2, 3, 1, 0), "stem_bn": _bn_dict(t, f"{e}.batchnorm"),
            "blocks": blocks}


def _dense(t: dict, name: str) -> dict:
    return {"kernel": t[f"{name}.weight"].T, "bias": t[f"{name}.bias"]}


def _ln(t: dict, name: str) -> dict:
    return {"scale": t[f"{name}.weight"], "bias": t[f"{name}.bias"]}


def _text(t: dict, cfg: BertConfig) -> dict:
    e = "text_model.embeddings"
    layers = {}
    for i in range(cfg.layers):
        p = f"text_model.encoder.layer.{i}"
        layers[i] = {"query": _dense(t, f"{p}.attention.self.query"), "key": _dense(t, f"{p}.attention.self.key"),
                     "value": _dense(t, f"{p}.attention.self.value"),
                     "attn_out": _dense(t, f"{p}.attention.output.dense"),
                     "attn_ln": _ln(t, f"{p}.attention.output.LayerNorm"),
                     "mlp_in": _dense(t, f"{p}.intermediate.dense"), "mlp_out": _dense(t, f"{p}.output.dense"),
                     "mlp_ln": _ln(t, f"{p}.output.LayerNorm")}
    return {"word": t[f"{e}.word_embeddings.weight"], "position": t[f"{e}.position_embeddings.weight"],
            "token_type": t[f"{e}.token_type_embeddings.weight"], "emb_ln": _ln(t, f"{e}.LayerNorm"),
            "layers": layers}


def to_pure_dict(t: dict[str, np.ndarray], cfg: AlignConfig) -> dict:
    """Checked HF tensors -> the nested parameter dict of `AlignModel` (`nnx.to_pure_dict` layout)."""
    return {"vision": _vision(t, cfg.vision), "text": _text(t, cfg.text),
            "text_projection": _dense(t, "text_projection")}


def read_weights(folder: Path) -> tuple[dict[str, np.ndarray], str]:
    """(float32 tensors, sha256 of the files) from `model.safetensors` (or its shards), else from
    `pytorch_model.bin` (read without torch by `torch_pickle`, tensors only)."""
    has_safetensors = (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()
    if has_safetensors or not (folder / "pytorch_model.bin").is_file():
        return checkpoint.read_weights(checkpoint.weight_files(folder, "ALIGN"))
    path = folder / "pytorch_model.bin"
    tensors = {k: np.asarray(x, np.float32) for k, x in torch_pickle.load_state_dict(path).items()}
    return tensors, checkpoint.files_sha256([path])


def read_preprocess(folder: Path, image_size: int) -> dict:
    """Preprocess fields (see the module docstring) from `preprocessor_config.json`, if present."""
    path = folder / "preprocessor_config.json"
    raw = json.loads(path.read_text()) if path.is_file() else {}
    size = raw.get("size", {"height": image_size, "width": image_size})
    crop = raw.get("crop_size", size) if raw.get("do_center_crop", False) else size
    if size.get("height") != size.get("width") or crop.get("height") != crop.get("width"):
        raise ValueError(f"{path}: only square size / crop_size are supported, got {size} / {crop}")
    rescale = raw.get("do_rescale", True)
    factor = float(raw.get("rescale_factor", 1 / 255)) * 255.0 if rescale else 255.0
    offset = 1.0 if rescale and raw.get("rescale_offset", False) else 0.0
    mean = np.asarray(raw.get("image_mean", (0.5, 0.5, 0.5)), np.float64)
    std = np.asarray(raw.get("image_std", (0.5, 0.5, 0.5)), np.float64)
    norm = raw.get("do_normalize", True)
    m = (offset + (mean if norm else 0.0)) / factor + np.zeros(3)
    s = (std if norm else 1.0) * (std if raw.get("include_top", True) else 1.0) / factor + np.zeros(3)
    return {"image_size": int(crop["height"]), "resize_size": int(size["height"]),
            "mean": tuple(float(x) for x in m), "std": tuple(float(x) for x in s)}
