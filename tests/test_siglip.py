"""SigLIP / SigLIP 2 towers: parity with transformers' SiglipModel / Siglip2Model (PyTorch, random
weights) at tiny and real shapes, NaFlex input, 1 vs 8 devices, hooks, loader errors, tokenizers built
in the test (a SentencePiece model for SigLIP, a Gemma-style BPE tokenizer.json for SigLIP 2), and
`adapt run` end to end per model kind."""
import functools
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from PIL import Image
from safetensors.numpy import load_file, save_file

from adapt import cli, models
from adapt.models import siglip_load
from adapt.models.clip import jit_call, trainable_filter
from adapt.models.clip_vision import Prompt
from adapt.models.siglip import SiglipModel, load_siglip
from adapt.models.siglip_towers import resize_weights
from tests.model_kind_fixtures import embed_on_devices

torch.set_num_threads(2)
KINDS = ("siglip", "siglip2")
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
TINY_VISION = {"siglip": dict(TINY, image_size=32, patch_size=8), "siglip2": dict(TINY, num_patches=16, patch_size=8)}
# google/siglip-base-patch16-224 (model card / config.json): both towers ViT-B, 64 text positions
BASE = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
TEXTS = ["a photo of a cat.", "An old, blurry photo of a DOG!", "x x x x dog", ""]
CORPUS = ["a photo of a cat", "a photo of a dog", "an old blurry photo of a golden retriever", "x x x x",
          "red square green disc blue bar"] * 20


def _spm_tokenizer(folder):
    """A tiny SentencePiece unigram model, saved with transformers' SiglipTokenizer files."""
    import sentencepiece as spm
    from transformers import SiglipTokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_writer=buf, vocab_size=60,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", minloglevel=2,
                                   hard_vocab_limit=False)
    (folder / "spiece.model").write_bytes(buf.getvalue())
    tok = SiglipTokenizer(vocab_file=str(folder / "spiece.model"))
    tok.save_pretrained(folder)
    return len(tok)


def _gemma_tokenizer(folder):
    """A tiny byte-fallback BPE in the Gemma layout (pad 0, eos 1, bos 2): eos appended, no bos,
    padding on the right, lower-cased, as SigLIP 2's tokenizer is configured."""
    from tokenizers import normalizers
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for c in "abcdefghijklmnopqrstuvwxyz.▁":
        vocab[c] = len(vocab)
    merges = [("▁", "a"), ("c", "a"), ("ca", "t"), ("p", "h"), ("ph", "o"), ("▁", "x")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=False, add_eos_token=True, padding_side="right")
    tok.backend_tokenizer.normalizer = normalizers.Sequence([normalizers.Lowercase(), tok.backend_tokenizer.normalizer])
    tok.save_pretrained(folder)
    return len(tok)


def hf_siglip(kind, vision, text, seed=0, std=0.02):
    """A random transformers SiglipModel / Siglip2Model (eval), every weight N(0, std), LayerNorm
    scales 1 + N(0, std); logit scale exp(log 10), bias -10. Built on the meta device (fast)."""
    from transformers import Siglip2Config, Siglip2Model, SiglipConfig
    from transformers import SiglipModel as HF

    cfg_cls, cls = (SiglipConfig, HF) if kind == "siglip" else (Siglip2Config, Siglip2Model)
    cfg = cfg_cls(text_config=dict(text, pad_token_id=1, bos_token_id=None, eos_token_id=1), vision_config=vision)
    with torch.device("meta"):
        model = cls(cfg)
    model = model.to_empty(device="cpu").eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0.0, std, generator=gen)
            if p.ndim == 1 and name.endswith("weight"):
                p.add_(1.0)
        model.logit_scale.fill_(float(np.log(10.0)))
        model.logit_bias.fill_(-10.0)
        for name, b in model.named_buffers():
            if name.endswith("position_ids"):
                b.copy_(torch.arange(b.shape[-1]).expand_as(b))
    return model


def write_tiny_siglip(folder, kind, seed=0, tokenizer=True):
    folder.mkdir(parents=True, exist_ok=True)
    vocab = (_spm_tokenizer if kind == "siglip" else _gemma_tokenizer)(folder)
    hf = hf_siglip(kind, TINY_VISION[kind], dict(TINY, vocab_size=vocab, max_position_embeddings=16), seed)
    hf.save_pretrained(folder)
    if not tokenizer:
        for f in ("spiece.model", "tokenizer.json", "tokenizer_config.json"):
            (folder / f).unlink(missing_ok=True)
    return folder, hf


@pytest.fixture(scope="module", params=KINDS)
def tiny(request, tmp_path_factory):
    path, hf = write_tiny_siglip(tmp_path_factory.mktemp(request.param) / f"tiny-{request.param}", request.param)
    return path, hf, load_siglip(path)


def _unit(t):
    t = getattr(t, "pooler_output", t)
    return (t / t.norm(dim=-1, keepdim=True)).numpy()


def torch_images(hf, pixels=None, patches=None, mask=None, spatial=None):
    with torch.no_grad():
        if patches is None:
            return _unit(hf.get_image_features(pixel_values=torch.from_numpy(pixels).permute(0, 3, 1, 2)))
        return _unit(hf.get_image_features(pixel_values=torch.from_numpy(patches), spatial_shapes=torch.from_numpy(spatial),
                                           pixel_attention_mask=torch.from_numpy(mask)))


def torch_texts(hf, ids):
    with torch.no_grad():
        return _unit(hf.get_text_features(input_ids=torch.from_numpy(ids).long()))


def pixels_for(model, n, seed=0):
    s = model.cfg.vision.image_size
    return np.random.default_rng(seed).normal(size=(n, s, s, 3)).astype(np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _image_and_patches(graphdef, state, pixels):
    model = nnx.merge(graphdef, state)
    return model.encode_images(pixels), model.patch_tokens(pixels, (0, -1))


def test_tiny_parity_on_1_and_8_devices(tiny):
    path, hf, model = tiny
    x = pixels_for(model, 8)
    img, patches = _image_and_patches(*nnx.split(model), jnp.asarray(x))  # one device
    if model.cfg.kind == "siglip":
        want = torch_images(hf, x)
        with torch.no_grad():
            hs = hf.vision_model(pixel_values=torch.from_numpy(x).permute(0, 3, 1, 2), output_hidden_states=True)
    else:  # fixed resolution through the NaFlex inputs: the full 4 x 4 grid, no padding
        p, spatial = np.array(model.vision.patchify(jnp.asarray(x))), np.array([[4, 4]] * 8)
        mask = np.ones(p.shape[:2], np.int64)
        want = torch_images(hf, patches=p, mask=mask, spatial=spatial)
        with torch.no_grad():
            hs = hf.vision_model(pixel_values=torch.from_numpy(p), pixel_attention_mask=torch.from_numpy(mask),
                                 spatial_shapes=torch.from_numpy(spatial), output_hidden_states=True)
    np.testing.assert_allclose(img, want, atol=1e-5)
    np.testing.assert_allclose(embed_on_devices(model, x, 8), want, atol=1e-5)
    for got, layer in zip(patches, (1, 2)):
        np.testing.assert_allclose(got, hs.hidden_states[layer].numpy(), atol=1e-5)
    ids = model.tokenize(TEXTS)
    np.testing.assert_allclose(model.encode_texts(TEXTS), torch_texts(hf, ids), atol=1e-5)
    assert model.logit_scale == pytest.approx(10.0) and model.logit_bias == pytest.approx(-10.0)
    assert model.model_id == f"{model.cfg.kind}:{path.name}" and len(model.weights_hash) == 16
    assert model.embed_dim == 32 and model.preprocess.image_size == 32 and model.preprocess.mean == (0.5,) * 3


def test_naflex_patch_grids_and_position_resize(tiny):
    _, hf, model = tiny
    if model.cfg.kind != "siglip2":
        with pytest.raises(ValueError, match="SigLIP 2"):
            model.encode_patches(None, None, None)
        return
    spatial = np.array([[5, 6], [3, 2], [2, 8]])  # upscaled, downscaled (antialiased), mixed; padded to 32
    mask = (np.arange(32)[None] < spatial.prod(1)[:, None]).astype(np.int64)
    patches = np.random.default_rng(1).normal(size=(3, 32, 192)).astype(np.float32)
    got = jit_call(model, "encode_patches", jnp.asarray(patches), jnp.asarray(spatial), jnp.asarray(mask))
    np.testing.assert_allclose(got, torch_images(hf, patches=patches, mask=mask, spatial=spatial), atol=1e-5)
    grid = np.random.default_rng(2).normal(size=(1, 3, 6, 6)).astype(np.float32)  # (1, W, g, g)
    sizes = ((9, 4), (3, 2))  # up and down; one jitted call, the second grid padded to 36 rows
    weights = np.asarray(jax.jit(resize_weights, static_argnums=(1, 2))(np.array(sizes), 6, 36))
    for (h, w), rows in zip(sizes, weights):  # against torch's interpolate, which transformers restates
        want = torch.nn.functional.interpolate(torch.from_numpy(grid), size=(h, w), mode="bilinear",
                                               align_corners=False, antialias=True)[0].permute(1, 2, 0).reshape(h * w, 3)
        np.testing.assert_allclose(rows[: h * w] @ grid[0].reshape(3, 36).T, want.numpy(), atol=1e-5)


@pytest.mark.slow
def test_real_config_parity():
    """SigLIP base patch16 224 shapes, random weights; no files: the tensors go through the loader's own
    mapping. (SigLIP 2 at its real shape, ViT-B/16 with 256 NaFlex patches, is checked by
    experiments/towers/throughput.py, to keep this suite fast; its tiny parity is above.)"""
    hf = hf_siglip("siglip", dict(BASE, image_size=224, patch_size=16),
                   dict(BASE, vocab_size=32000, max_position_embeddings=64), seed=3)
    cfg = siglip_load.parse_config(json.loads(hf.config.to_json_string()))
    tensors = {k: v.numpy() for k, v in hf.state_dict().items() if not k.endswith("position_ids")}
    siglip_load.check_tensors(tensors, cfg, "in memory")
    graphdef, state = nnx.split(SiglipModel(cfg, rngs=None))
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, siglip_load.to_pure_dict(tensors, cfg)))
    model = nnx.merge(graphdef, state)
    x = pixels_for(model, 1)
    np.testing.assert_allclose(jit_call(model, "encode_images", jnp.asarray(x)), torch_images(hf, x), atol=1e-4)
    ids = np.random.default_rng(4).integers(2, 32000, size=(2, 64)).astype(np.int32)
    ids[0, 9:] = 1  # a short text padded with eos, and a full-length one
    np.testing.assert_allclose(jit_call(model, "encode_tokens", jnp.asarray(ids)), torch_texts(hf, ids), atol=1e-4)


def test_tokenizer_ids_match_the_tokenizer_files(tiny):
    """Our ids against the raw tokenizer files (sentencepiece / tokenizers), not transformers."""
    path, _, model = tiny
    ids = model.tokenize(["A photo, of a cat!", "x " * 40])
    assert ids.shape == (2, 16) and ids.dtype == np.int32 and model.tokenizer.vocab_size == model.cfg.text.vocab_size
    if model.cfg.kind == "siglip":  # lower-cased, punctuation removed, eos (1), padded with eos
        import sentencepiece as spm

        first = spm.SentencePieceProcessor(model_file=str(path / "spiece.model")).encode("a photo of a cat")
    else:  # the Gemma layout: eos (1) appended, <pad> (0) on the right
        from tokenizers import Tokenizer

        first = Tokenizer.from_file(str(path / "tokenizer.json")).encode("A photo, of a cat!", add_special_tokens=False).ids
    pad = 1 if model.cfg.kind == "siglip" else 0
    assert ids[0].tolist() == first + [1] + [pad] * (15 - len(first))
    assert ids[1, -1] == 1  # truncated texts still end in eos


def test_prompt_hooks(tiny):
    _, hf, plain = tiny
    if plain.cfg.kind != "siglip":
        pytest.skip("one kind is enough: the hooks are shared")
    model = nnx.clone(plain)  # the fixture's model stays plain
    model.add_text_context(init_text="x x x x")  # placeholders "X" embed as the init text: same texts
    names = ["dog", "cat", "bag", "coat"]  # 4 texts: the plain text program is the parity test's, cached
    np.testing.assert_allclose(model.encode_context_texts(names),
                               plain.encode_texts([f"x x x x {n}" for n in names]), atol=1e-5)
    model.add_visual_prompts(2, deep=True)
    x = pixels_for(model, 2)
    assert not np.allclose(jit_call(model, "encode_images", jnp.asarray(x)), torch_images(hf, x), atol=1e-3)
    _, prompts, rest = nnx.split(model, trainable_filter("prompts"), ...)
    assert {k for k, _ in nnx.to_flat_state(prompts)} == {("vision", "prompts"), ("text", "context")}
    assert not any(isinstance(v, Prompt) for _, v in nnx.to_flat_state(rest))
    assert model.vision.prompts.shape == (2, 2, 32) and model.text.context.shape == (4, 32)


def test_kinds_and_bad_checkpoints(tmp_path, tiny):
    path, _, model = tiny
    kind = model.cfg.kind
    assert models.model_kind(str(path)) == kind
    assert models.load_image_encoder(str(path)).model_id == model.model_id  # usable as a second tower
    other = "siglip2" if kind == "siglip" else "siglip"
    with pytest.raises(ValueError, match=f"model.kind='{other}'.*model_type '{kind}'"):
        models.load_model(other, str(path))
    with pytest.raises(ValueError, match="unknown model kind 'sigclip'"):
        models.load_model("sigclip", str(path))
    tensors = load_file(path / "model.safetensors")
    bad, _ = write_tiny_siglip(tmp_path / "missing", kind)
    save_file({k: v for k, v in tensors.items() if k != "vision_model.head.probe"}, bad / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing tensor vision_model\.head\.probe"):
        load_siglip(bad)
    w = "text_model.encoder.layers.1.mlp.fc1.weight"
    save_file({**tensors, w: np.zeros((48, 32), np.float32)}, bad / "model.safetensors")
    with pytest.raises(ValueError, match=r"fc1\.weight: expected shape \(64, 32\), found \(48, 32\)"):
        load_siglip(bad)
    raw = json.loads((bad / "config.json").read_text())
    raw["text_config"]["vocab_size"] += 1
    (bad / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="vocab_size .* differs from the tokenizer"):
        load_siglip(bad)
    for f in ("spiece.model", "tokenizer.json"):
        (bad / f).unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match=r"missing.*no tokenizer files"):
        load_siglip(bad)
    raw["model_type"] = "siglip3"
    (bad / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="'siglip3' is not supported"):
        models.load_model("auto", str(bad))


def _write_pool(root):
    rng = np.random.default_rng(0)
    for c, name in enumerate(("red square", "green disc", "blue bar")):
        (root / name).mkdir(parents=True)
        for i in range(3):
            a = rng.integers(0, 60, size=(40, 48, 3), dtype=np.uint8)
            a[..., c] += 180
            Image.fromarray(a).save(root / name / f"{i}.png")


def test_adapt_run_end_to_end(tmp_path, tiny, capsys):
    path, _, model = tiny
    _write_pool(tmp_path / "pool")
    argv = ["run", "configs/zero_shot.py", "--workdir", str(tmp_path / "run"), "--quiet",
            "--set", f"pool.path={tmp_path / 'pool'}", "--set", f"model.path={path}",
            "--set", f"model.kind={model.cfg.kind}", "--set", f"embed.cache_dir={tmp_path / 'cache'}"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["n_embedded"] == 9 and metrics["accuracy"] is not None
    meta = json.loads((tmp_path / "run" / "classifier" / "meta.json").read_text())
    assert model.cfg.kind in json.dumps(meta)
