"""CLIP towers: parity with transformers' PyTorch CLIPModel, hooks, sharding, loader errors, tokenizer."""
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P
from safetensors.numpy import load_file, save_file

from adapt import assets
from adapt.models.clip import CLIPModel, jit_call, load_clip, trainable_filter
from adapt.models.clip_vision import Prompt
from adapt.models.tokenizer import CHECK_IDS, load_tokenizer
from tests.clip_fixtures import TEXT_B, VIT_B16, VIT_B32, copy_tokenizer, hf_clip, write_tiny_clip

torch.set_num_threads(2)
TEXTS = ["a photo of a cat.", "an old, blurry photo of a Golden Retriever!", "", "two photos"]


def encode_images(model, pixels):
    return jit_call(model, "encode_images", pixels)


def _unit(t: torch.Tensor) -> np.ndarray:
    t = getattr(t, "pooler_output", t)  # transformers 5 returns a model output
    return (t / t.norm(dim=-1, keepdim=True)).numpy()


def torch_images(hf, pixels: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return _unit(hf.get_image_features(pixel_values=torch.from_numpy(pixels).permute(0, 3, 1, 2)))


def torch_texts(hf, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return _unit(hf.get_text_features(input_ids=torch.from_numpy(ids).long()))


def pixels_for(model: CLIPModel, n: int, seed: int = 0) -> np.ndarray:
    s = model.cfg.vision.image_size
    return np.random.default_rng(seed).normal(size=(n, s, s, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = write_tiny_clip(tmp_path_factory.mktemp("tiny") / "tiny-clip")
    return path, load_clip(path)


def test_tokenizer_ids():
    tok = load_tokenizer()
    assert tok.vocab_size == 49408
    assert tok.encode("a photo of a cat.") == CHECK_IDS
    ids = tok(["a photo of a cat.", "word " * 100], context_length=77)
    assert ids.shape == (2, 77) and ids.dtype == np.int32
    assert list(ids[0, :8]) == CHECK_IDS and not ids[0, 8:].any()
    assert ids[1, 0] == 49406 and ids[1, -1] == 49407  # truncated texts still end in EOT


def test_tokenizer_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(assets, "FOLDER", tmp_path / "nowhere")  # an install without its package data
    with pytest.raises(FileNotFoundError, match="nowhere.*reinstall"):
        load_tokenizer()
    (tmp_path / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(ValueError, match="49408"):
        load_tokenizer(tmp_path)


@functools.partial(jax.jit, static_argnums=0)
def _image_and_patches(graphdef, state, pixels, layers=(0, -1)):
    model = nnx.merge(graphdef, state)
    return model.encode_images(pixels), model.patch_tokens(pixels, layers)


def hf_clip_from(path):
    from transformers import CLIPModel as HFCLIPModel

    return HFCLIPModel.from_pretrained(path).eval()


@pytest.mark.parametrize("act,eos", [("quick_gelu", 49407), ("gelu", 2)])
def test_tiny_parity(tmp_path, act, eos):
    """Both activations; eos 2 (legacy: pool at the largest id) and 49407 (pool at the first eos)."""
    path = write_tiny_clip(tmp_path / "c", hidden_act=act, text=dict(eos_token_id=eos), seed=1)
    model, hf = load_clip(path), hf_clip_from(path)
    x = pixels_for(model, 3)
    img, patches = _image_and_patches(*nnx.split(model), jnp.asarray(x))
    np.testing.assert_allclose(img, torch_images(hf, x), atol=1e-5)
    with torch.no_grad():
        hs = hf.vision_model(pixel_values=torch.from_numpy(x).permute(0, 3, 1, 2), output_hidden_states=True)
    for got, layer in zip(patches, (1, 2)):
        np.testing.assert_allclose(got, hs.hidden_states[layer][:, 1:].numpy(), atol=1e-5)
    ids = model.tokenize(TEXTS)
    ids[ids == 0] = 49407  # pads equal to eos: only the first eos may be pooled
    ids[3, 1] = 2  # id 2 inside a text: the legacy eos_token_id=2 rule still pools at the largest id
    got = jit_call(model, "encode_tokens", jnp.asarray(ids), use_context=False)
    np.testing.assert_allclose(got, torch_texts(hf, ids), atol=1e-5)
    np.testing.assert_allclose(model.encode_texts(TEXTS[:3]), got[:3], atol=1e-6)
    assert nnx.eval_shape(lambda m, p: m.patch_features(p, (1,)), model, x)[0].shape == (3, 4, 4, 32)
    assert model.logit_scale == pytest.approx(float(hf.logit_scale.detach().exp()))
    assert model.model_id == "clip:c" and len(model.weights_hash) == 16 and model.embed_dim == 16
    assert model.preprocess.image_size == model.preprocess.resize_size == 32


@pytest.mark.parametrize("name,vision,n_img,check_text", [("b32", VIT_B32, 2, True), ("b16", VIT_B16, 1, False)])
def test_real_config_parity(tmp_path, name, vision, n_img, check_text):
    """Random weights at the real ViT-B/32 and ViT-B/16 shapes (the text tower is the same in both)."""
    hf = hf_clip(vision, TEXT_B, 512, seed=3)
    hf.save_pretrained(tmp_path / name)
    copy_tokenizer(tmp_path / name)
    model = load_clip(tmp_path / name)
    x = pixels_for(model, n_img)
    np.testing.assert_allclose(encode_images(model, jnp.asarray(x)), torch_images(hf, x), atol=1e-4)
    if check_text:
        np.testing.assert_allclose(model.encode_texts(TEXTS[:2]), torch_texts(hf, model.tokenize(TEXTS[:2])), atol=1e-4)


@functools.partial(jax.jit, static_argnums=0)
def _both(graphdef, state, pixels, ids):
    model = nnx.merge(graphdef, state)
    return model.encode_images(pixels), model.encode_tokens(ids)


def test_empty_and_identity_prompts(tiny):
    _, model = tiny
    x = jnp.asarray(pixels_for(model, 2))
    plain_ids = jnp.asarray(model.tokenize(["a photo of a dog.", "a photo of a cat."]))
    plain_img, plain_txt = _both(*nnx.split(model), x, plain_ids)
    model.add_visual_prompts(0)
    model.add_text_context(init_text="a photo of a")
    assert model.context_texts(["dog"]) == ["X X X X dog."]
    img, txt = _both(*nnx.split(model), x, jnp.asarray(model.context_ids(["dog", "cat"])))
    np.testing.assert_allclose(img, plain_img, atol=1e-6)
    np.testing.assert_allclose(txt, plain_txt, atol=1e-5)
    model.add_visual_prompts(3, deep=True)
    model.add_text_context(init_text="a photo of a", n_classes=2)
    assert model.vision.prompts.shape == (2, 3, 32) and model.text.context.shape == (2, 4, 32)
    img, txt = _both(*nnx.split(model), x, jnp.asarray(model.context_ids(["dog", "cat"])))
    assert not np.allclose(img, plain_img, atol=1e-4)
    np.testing.assert_allclose(txt, plain_txt, atol=1e-5)
    shapes = [t.shape for t in nnx.eval_shape(lambda m, p: m.patch_tokens(p, (0, 1)), model, x)]
    assert shapes == [(2, 16, 32)] * 2
    model.vision.set_prompts(None)
    model.text.set_context(None)
    img, txt = _both(*nnx.split(model), x, plain_ids)  # back to the plain structure: cached
    np.testing.assert_allclose(img, plain_img, atol=1e-6)


def _loss(model, x, ids):
    return jnp.sum(model.encode_images(x) ** 2 * jnp.arange(16)) + jnp.sum(model.encode_tokens(ids)[:, :3])


def test_gradients_reach_only_prompts(tiny):
    path, _ = tiny
    model = load_clip(path)
    model.add_visual_prompts(2, deep=True)
    model.add_text_context(4)
    x, ids = jnp.asarray(pixels_for(model, 2)), jnp.asarray(model.context_ids(["cat", "dog"]))
    grads = nnx.jit(nnx.grad(_loss, argnums=nnx.DiffState(0, trainable_filter("prompts"))))(model, x, ids)
    flat = dict(nnx.to_flat_state(grads))
    assert set(flat) == {("vision", "prompts"), ("text", "context")}
    assert all(np.abs(np.asarray(v[...])).max() > 0 for v in flat.values())
    _, trainable, rest = nnx.split(model, trainable_filter("prompts"), ...)
    assert not any(isinstance(v, Prompt) for _, v in nnx.to_flat_state(rest))
    ln = dict(nnx.to_flat_state(nnx.split(model, model.trainable_filter("layernorm"), ...)[1]))
    assert len(ln) == 2 * (2 + 2 * 2) and all(k[0] == "vision" for k in ln)
    last = dict(nnx.to_flat_state(nnx.split(model, model.trainable_filter("last_block"), ...)[1]))
    assert len(last) == 12 and all(k[:3] == ("vision", "layers", 1) for k in last)


def _embed_on(mesh, graphdef, state, pixels):
    state = jax.device_put(state, NamedSharding(mesh, P()))
    pixels = jax.device_put(pixels, NamedSharding(mesh, P("pool")))
    fn = jax.jit(lambda s, x: nnx.merge(graphdef, s).encode_images(x))
    out = fn(state, pixels)
    assert out.sharding.is_equivalent_to(NamedSharding(mesh, P("pool")), 2) or mesh.size == 1
    return np.asarray(out)


def test_same_embedding_on_1_and_8_devices(tiny):
    _, model = tiny
    graphdef, state = nnx.split(model)
    x = pixels_for(model, 16, seed=5)
    auto = (jax.sharding.AxisType.Auto,)
    one = _embed_on(jax.make_mesh((1,), ("pool",), axis_types=auto, devices=jax.devices()[:1]), graphdef, state, x)
    eight = _embed_on(jax.make_mesh((8,), ("pool",), axis_types=auto), graphdef, state, x)
    np.testing.assert_allclose(eight, one, atol=1e-5)
    chunked = jit_call(model, "encode_images", jnp.asarray(x), chunk=4)  # lax.map over 4 slices
    np.testing.assert_allclose(chunked, one, atol=1e-5)


def test_preprocess_from_checkpoint(tiny, tmp_path):
    path, model = tiny
    assert model.preprocess.mean == (0.48145466, 0.4578275, 0.40821073)  # CLIP defaults without a file
    folder = tmp_path / "with-pp"
    folder.mkdir()
    for f in path.iterdir():
        (folder / f.name).symlink_to(f)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3}))
    pp = load_clip(folder).preprocess
    assert (pp.mean, pp.std, pp.image_size, pp.resize_size) == ((0.5,) * 3, (0.25,) * 3, 32, 32)


def test_bad_checkpoints(tmp_path, tiny, monkeypatch):
    path, _ = tiny
    tensors = load_file(path / "model.safetensors")
    bad = write_tiny_clip(tmp_path / "missing")
    save_file({k: v for k, v in tensors.items() if k != "text_model.final_layer_norm.bias"}, bad / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing tensor text_model\.final_layer_norm\.bias"):
        load_clip(bad)
    bad = write_tiny_clip(tmp_path / "shape")
    w = "vision_model.encoder.layers.1.mlp.fc1.weight"
    save_file({**tensors, w: np.zeros((48, 32), np.float32)}, bad / "model.safetensors")
    with pytest.raises(ValueError, match=r"fc1\.weight: expected shape \(64, 32\), found \(48, 32\)"):
        load_clip(bad)
    bad = write_tiny_clip(tmp_path / "notok", tokenizer=False)
    with pytest.raises(FileNotFoundError, match=r"notok.*missing vocab\.json, merges\.txt, tokenizer\.json"):
        load_clip(bad)  # no silent fallback by default
    (bad / "vocab.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"notok.*missing merges\.txt, tokenizer\.json"):
        load_clip(bad)
    (bad / "vocab.json").unlink()
    with pytest.raises(FileNotFoundError, match="notok"):
        load_tokenizer(bad)
    shipped = load_clip(bad, allow_shipped_tokenizer=True)  # explicit opt-in
    assert shipped.tokenize(["a cat"])[0, :4].tolist() == [49406, 320, 2368, 49407]
    monkeypatch.setattr(assets, "FOLDER", tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        load_clip(bad, allow_shipped_tokenizer=True)
    (bad / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_clip(bad)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_clip(tmp_path)
