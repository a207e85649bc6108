"""DINO / DINOv2 encoders against transformers' PyTorch `ViTModel` and `Dinov2Model`.

Parity runs at the real widths, heads and patch sizes (DINO ViT-S/16: 384 wide, 6 heads, MLP 1536,
image 224; DINOv2 ViT-B/14: 768 wide, 12 heads, config image_size 518 as the released checkpoint)
but with `DEPTH` = 2 blocks to keep this file fast; `DINO_TEST_DEPTH=12 python -m pytest
tests/test_dino.py -k parity` runs the full 12-block versions. Max abs error (CLS, patch tokens),
fp32, measured 2026-11-29 on 2 CPU cores with transformers 5.24 / torch 2.13:
  12 blocks: DINO ViT-S/16 224: 1.3e-6, 2.4e-6; 160x192: 1.5e-6, 3.7e-6
             DINOv2 ViT-B/14 518: 8.3e-7, 1.7e-6; 224 (interpolated): 7.2e-7, 1.9e-6; 224x308: 7.2e-7, 2.9e-6
  2 blocks:  DINO 224: 6.6e-7, 1.6e-6; 160x192: 7.2e-7, 2.6e-6
             DINOv2 518: 7.2e-7, 1.4e-6; 224: 4.8e-7, 1.4e-6; 224x308: 4.8e-7, 2.4e-6
Weights, LayerNorms, biases and layer scales are random (seeded); the CLS token and position
embeddings are N(0, 1) so that a wrong position resampling shows.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from adapt.core import mesh as mesh_lib
from adapt.data.arrays import ArrayPool
from adapt.features.embed import embed_pool
from adapt.models import load_image_encoder, model_kind
from adapt.models.clip import jit_call
from adapt.models.dino import bicubic_matrix, load_dino

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

DEPTH = int(os.environ.get("DINO_TEST_DEPTH", "2"))
ATOL = 1e-4
DINO_S16 = dict(hidden_size=384, num_hidden_layers=DEPTH, num_attention_heads=6, intermediate_size=1536,
                image_size=224, patch_size=16)
DINOV2_B14 = dict(hidden_size=768, num_hidden_layers=DEPTH, num_attention_heads=12, mlp_ratio=4,
                  image_size=518, patch_size=14)
TINY_V2 = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=56, patch_size=14)


def hf_model(kind: str, seed: int = 0, **config):
    """A random HF `ViTModel` (kind "vit", no pooler) or `Dinov2Model`, eval mode, seeded."""
    if kind == "vit":
        cfg, cls, kw = transformers.ViTConfig(**config), transformers.ViTModel, dict(add_pooling_layer=False)
    else:
        cfg, cls, kw = transformers.Dinov2Config(**config), transformers.Dinov2Model, {}
    with torch.device("meta"):  # transformers' own init is slow at real sizes; we fill everything
        model = cls(cfg, **kw)
    model = model.to_empty(device="cpu").eval()
    assert not list(model.named_buffers())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            big = "position_embeddings" in name or "cls_token" in name
            p.normal_(0.0, 1.0 if big else 0.02, generator=gen)
            if name.endswith("lambda1"):  # layer scale
                p.add_(0.1)
            elif p.ndim == 1 and name.endswith("weight"):  # LayerNorm scale
                p.add_(1.0)
    return model


def write(tmp_path, name: str, kind: str, seed: int = 0, **config):
    model = hf_model(kind, seed, **config)
    path = tmp_path / name
    model.save_pretrained(path, safe_serialization=True)
    return path, model


def hf_tokens(model, pixels: np.ndarray) -> np.ndarray:
    """NHWC pixels -> HF last_hidden_state `(B, 1 + P, D)` (after the final layernorm)."""
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    kw = dict(interpolate_pos_encoding=True) if isinstance(model, transformers.ViTModel) else {}
    with torch.no_grad():
        return model(pixel_values=x, **kw).last_hidden_state.numpy()


def max_errors(enc, model, pixels) -> tuple[float, float]:
    ref = hf_tokens(model, pixels)
    out = jit_call(enc, "features", pixels)
    cls = float(np.abs(np.asarray(out["cls"]) - ref[:, 0]).max())
    patches = np.asarray(out["patch_tokens"])
    assert patches.shape == ref[:, 1:].shape
    return cls, float(np.abs(patches - ref[:, 1:]).max())


def pixels(b: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(b, h, w, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_v2(tmp_path_factory):
    return write(tmp_path_factory.mktemp("dino"), "tiny-dinov2", "dinov2", seed=3, **TINY_V2)


def test_bicubic_matches_torch_interpolate():
    x = np.random.default_rng(0).normal(size=(1, 4, 37, 37)).astype(np.float32)
    f = torch.nn.functional.interpolate
    for out in [(16, 16), (16, 22), (40, 9)]:
        ours = np.einsum("yi,cij,xj->cyx", bicubic_matrix(37, out[0]), x[0], bicubic_matrix(37, out[1]))
        ref = f(torch.from_numpy(x), size=out, mode="bicubic", align_corners=False).numpy()[0]
        np.testing.assert_allclose(ours, ref, atol=2e-5)
        # The original DINO repositories: scale_factor (g_out + 0.1) / g_in.
        ours = np.einsum("yi,cij,xj->cyx", bicubic_matrix(37, out[0], 0.1), x[0], bicubic_matrix(37, out[1], 0.1))
        sf = ((out[0] + 0.1) / 37, (out[1] + 0.1) / 37)
        ref = f(torch.from_numpy(x), scale_factor=sf, mode="bicubic", align_corners=False).numpy()[0]
        np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_dino_vits16_parity(tmp_path):
    path, hf = write(tmp_path, "dino-vits16", "vit", **DINO_S16)
    enc = load_dino(path)
    assert (enc.embed_dim, enc.model_id, enc.cfg.eps) == (384, "dino:dino-vits16", 1e-12)
    for h, w in [(224, 224), (160, 192)]:  # config size, then resampled position embeddings
        cls, patches = max_errors(enc, hf, pixels(2, h, w))
        assert cls < ATOL and patches < ATOL, (h, w, cls, patches)


def test_dinov2_vitb14_parity_and_interpolation(tmp_path):
    path, hf = write(tmp_path, "dinov2-base", "dinov2", **DINOV2_B14)
    enc = load_dino(path)
    assert (enc.embed_dim, enc.model_id, enc.cfg.grid) == (768, "dinov2:dinov2-base", 37)
    for b, h, w in [(1, 518, 518), (2, 224, 224), (2, 224, 308)]:
        cls, patches = max_errors(enc, hf, pixels(b, h, w))
        assert cls < ATOL and patches < ATOL, (h, w, cls, patches)
    # The resampled position embeddings themselves, against transformers' interpolate_pos_encoding.
    with torch.no_grad():
        ref = hf.embeddings.interpolate_pos_encoding(torch.zeros(1, 1 + 16 * 22, 768), 224, 308).numpy()[0]
    np.testing.assert_allclose(np.asarray(enc.net.position_embeddings(16, 22)), ref, atol=2e-5)


def test_dinov2_swiglu_prefix_and_odd_sizes(tmp_path, tiny_v2):
    path, hf = write(tmp_path, "swiglu", "dinov2", seed=1, use_swiglu_ffn=True, **TINY_V2)
    # 45x60: the remainders are dropped, as by the stride-14 convolution.
    for (folder, model), (h, w) in [((path, hf), (42, 70)), (tiny_v2, (45, 60))]:
        assert max(max_errors(load_dino(folder), model, pixels(2, h, w))) < ATOL, (folder, h, w)
    # A classification checkpoint's backbone (tensors under "dinov2.") loads the same.
    tensors = load_file(tiny_v2[0] / "model.safetensors")
    pre = tmp_path / "prefixed"
    pre.mkdir()
    (pre / "config.json").write_text((tiny_v2[0] / "config.json").read_text())
    save_file({f"dinov2.{k}": v for k, v in tensors.items()} | {"classifier.weight": np.zeros((2, 64), np.float32)},
              pre / "model.safetensors")
    x = pixels(1, 56, 56)
    np.testing.assert_array_equal(np.asarray(jit_call(load_dino(pre), "encode_images", x)),
                                  np.asarray(jit_call(load_dino(tiny_v2[0]), "encode_images", x)))


def test_encoder_interface(tiny_v2):
    path, _ = tiny_v2
    enc = load_dino(path)
    pp = enc.preprocess
    assert (pp.image_size, pp.resize_size, pp.interpolation) == (224, 256, "bicubic")
    assert pp.mean == (0.485, 0.456, 0.406) and pp.std == (0.229, 0.224, 0.225)
    assert enc.weights_hash == hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    z = np.asarray(jit_call(enc, "encode_images", pixels(3, 224, 224)))
    assert z.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    maps = jit_call(enc, "patch_features", pixels(2, 56, 70), layers=(0, -1))
    assert [m.shape for m in maps] == [(2, 4, 5, 32)] * 2
    with pytest.raises(ValueError, match="out of range"):
        enc.patch_tokens(pixels(1, 56, 56), (2,))
    assert load_image_encoder(str(path)).model_id == "dinov2:tiny-dinov2"
    with pytest.raises(ValueError, match="image-only"):
        model_kind(str(path))


def test_embed_pool_caches_dino_features(tmp_path, tiny_v2):
    from adapt.models.preprocess import to_pixels

    enc = load_dino(tiny_v2[0])
    images = np.random.default_rng(0).integers(0, 256, size=(11, 40, 48, 3), dtype=np.uint8)
    pool = ArrayPool(images)
    mesh = mesh_lib.make_mesh()
    out = embed_pool(enc, pool, mesh, cache_root=tmp_path, batch_size=8, chunk_size=8, progress=False)
    assert out.embeddings.shape == (11, 32) and out.chunks_computed == 2
    x = np.stack([to_pixels(pool.load(i), enc.preprocess) for i in (0, 10)])
    direct = np.asarray(jit_call(enc, "encode_images", x))
    np.testing.assert_allclose(out.embeddings[[0, 10]], direct, atol=1e-5)
    again = embed_pool(enc, pool, mesh, cache_root=tmp_path, batch_size=8, chunk_size=8, progress=False)
    assert again.chunks_reused == 2 and again.chunks_computed == 0


def test_bad_checkpoints(tmp_path, tiny_v2):
    path, _ = tiny_v2
    tensors = load_file(path / "model.safetensors")
    config = json.loads((path / "config.json").read_text())

    def folder(name, tensors=tensors, **changes):
        f = tmp_path / name
        f.mkdir()
        (f / "config.json").write_text(json.dumps({**config, **changes}))
        save_file(tensors, f / "model.safetensors")
        return f

    gone = "encoder.layer.1.layer_scale2.lambda1"
    with pytest.raises(ValueError, match=rf"missing tensor {gone}"):
        load_dino(folder("missing", {k: v for k, v in tensors.items() if k != gone}))
    fc1 = "encoder.layer.0.mlp.fc1.weight"
    with pytest.raises(ValueError, match=r"fc1\.weight: expected shape \(128, 32\), found \(96, 32\)"):
        load_dino(folder("shape", {**tensors, fc1: np.zeros((96, 32), np.float32)}))
    with pytest.raises(ValueError, match=r"position_embeddings: expected shape \(1, 10, 32\)"):
        load_dino(folder("size", image_size=42))  # config disagrees with the tensors
    with pytest.raises(ValueError, match="model_type 'dinov3'.*not a DINO model"):
        load_dino(folder("kind", model_type="dinov3"))
    with pytest.raises(ValueError, match="model_type 'dinov3' is not supported"):
        load_image_encoder(str(tmp_path / "kind"))
    with pytest.raises(ValueError, match="hidden_act 'swish-ish'"):
        load_dino(folder("act", hidden_act="swish-ish"))
    bare = folder("bare")
    (bare / "model.safetensors").unlink()
    (bare / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no model.safetensors.*pytorch_model.bin"):
        load_dino(bare)
    (bare / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_dino(bare)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dino(tmp_path / "nowhere")
