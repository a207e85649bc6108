"""MetaCLIP 2: parity with transformers' PyTorch MetaClip2Model (tiny and ViT-B-32 shapes), its tokenizer
against transformers' XLMRobertaTokenizer, first-eos pooling, clear errors, 1 vs 8 devices, `adapt run`."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from adapt import cli
from adapt.models import load_model
from adapt.models.clip import jit_call
from adapt.models.metaclip2 import MetaClip2Model, from_tensors, load_metaclip2, parse_config
from adapt.models.metaclip2_tokenizer import MetaClip2Tokenizer
from tests.clip_fixtures import TEXT_B, TINY_TEXT, TINY_VISION, VIT_B32
from tests.model_kind_fixtures import embed_on_1_and_8_devices, randomize_, write_pool

torch.set_num_threads(2)
TEXTS = ["a photo of a cat.", "ein Foto, zwei Katzen!", "", "une photo " * 60]
CORPUS = ["a photo of a cat.", "une photo d'un chat.", "ein Foto einer Katze.", "una foto de un perro",
          "a blurry photo of a golden retriever!", "写真 猫 犬", "two photos of dogs and cats", "red square green disc"]
SPECIAL = {"bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2}


def write_tokenizer(folder) -> int:
    """An XLM-R-style (Unigram, metaspace) tokenizer.json + tokenizer_config.json; returns its size."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(CORPUS * 3, trainers.UnigramTrainer(
        vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "XLMRobertaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
        "unk_token": "<unk>", "model_max_length": 77}))
    return tok.get_vocab_size()


def write_metaclip2(folder, vision: dict, text: dict, projection_dim: int, seed: int, save: bool = True):
    """A random MetaClip2Model (built on the meta device, filled by `randomize_`) with its tokenizer in
    `folder`, saved there with `save_pretrained` unless `save` is False."""
    from transformers import MetaClip2Config, MetaClip2Model as HFMetaClip2

    folder.mkdir(parents=True)
    vocab = write_tokenizer(folder)
    cfg = MetaClip2Config(text_config={**text, "vocab_size": vocab, **SPECIAL},
                          vision_config=dict(vision), projection_dim=projection_dim)
    with torch.device("meta"):
        hf = HFMetaClip2(cfg)
    hf = randomize_(hf.to_empty(device="cpu"), seed)
    if save:
        hf.save_pretrained(folder)
    return folder, hf


def oracle(hf, pixels: np.ndarray, ids: np.ndarray):
    unit = lambda t: (lambda p: (p / p.norm(dim=-1, keepdim=True)).numpy())(getattr(t, "pooler_output", t))  # noqa: E731
    with torch.no_grad():
        return (unit(hf.get_image_features(pixel_values=torch.from_numpy(pixels).permute(0, 3, 1, 2))),
                unit(hf.get_text_features(input_ids=torch.from_numpy(ids).long())))


def pixels(size: int, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path, hf = write_metaclip2(tmp_path_factory.mktemp("m") / "tiny-metaclip2", TINY_VISION, TINY_TEXT, 16, seed=1)
    return path, hf, load_metaclip2(path)


def test_tokenizer_matches_transformers(tiny):
    from transformers import AutoTokenizer

    path, _, model = tiny
    hf_tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    want = hf_tok(TEXTS, padding="max_length", max_length=77, truncation=True)["input_ids"]
    np.testing.assert_array_equal(model.tokenize(TEXTS), np.asarray(want))


def test_tiny_parity_first_eos_pooling(tiny):
    _, hf, model = tiny
    x = pixels(32, 3)
    ids = model.tokenize(TEXTS)
    assert (ids.argmax(1) != (ids == 2).argmax(1))[[0, 1, 3]].all()  # CLIP's eos-2 rule would pool elsewhere
    want_img, want_txt = oracle(hf, x, ids)
    np.testing.assert_allclose(jit_call(model, "encode_images", jnp.asarray(x)), want_img, atol=1e-5)
    np.testing.assert_allclose(model.encode_texts(TEXTS), want_txt, atol=1e-5)
    assert isinstance(model, MetaClip2Model) and model.model_id == "metaclip2:tiny-metaclip2"
    assert model.logit_scale == pytest.approx(1 / 0.07, rel=1e-5)


def test_real_config_vit_b32_parity(tmp_path):
    """ViT-B-32 image tower and the base text tower at their real shapes; the vocabulary is the test
    tokenizer's (the real XLM-V table, 901,629 x 512, only adds embedding rows). Mapped from the
    in-memory tensors: the folder reader is covered by the tiny checkpoint (600 MB of IO costs seconds)."""
    path, hf = write_metaclip2(tmp_path / "b32", VIT_B32, TEXT_B, 512, seed=3, save=False)
    cfg = parse_config(hf.config.to_dict())
    model = from_tensors({k: v.numpy() for k, v in hf.state_dict().items()}, cfg)
    model.tokenizer = MetaClip2Tokenizer(path, cfg.text.vocab_size, cfg.text.eos_token_id)
    x = pixels(224, 1)
    want_img, want_txt = oracle(hf, x, model.tokenize(TEXTS[:2]))
    np.testing.assert_allclose(jit_call(model, "encode_images", jnp.asarray(x)), want_img, atol=1e-4)
    np.testing.assert_allclose(model.encode_texts(TEXTS[:2]), want_txt, atol=1e-4)


def test_same_embedding_on_1_and_8_devices(tiny):
    one, eight = embed_on_1_and_8_devices(tiny[2], pixels(32, 8, seed=5))
    np.testing.assert_allclose(eight, one, atol=1e-5)


def _copy(src, dst, skip=()):
    dst.mkdir()
    for f in src.iterdir():
        if f.name not in skip:
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_clear_errors(tiny, tmp_path):
    path, _, _ = tiny
    assert type(load_model("auto", str(path))) is MetaClip2Model  # auto: config.json model_type metaclip_2
    bad = _copy(path, tmp_path / "notok", skip=("tokenizer.json",))
    (bad / "sentencepiece.bpe.model").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"notok: missing tokenizer\.json.*sentencepiece.*save_pretrained"):
        load_metaclip2(bad)
    bad = _copy(path, tmp_path / "eos")
    raw = json.loads((bad / "config.json").read_text())
    raw["text_config"]["eos_token_id"] = 5
    (bad / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="eos_token_id is 5"):
        load_metaclip2(bad)
    raw["text_config"].update(eos_token_id=2, vocab_size=10)
    (bad / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="more than the text embedding table's 10 rows"):
        load_metaclip2(bad)
    bad = _copy(path, tmp_path / "missing")
    tensors = load_file(bad / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if k != "visual_projection.weight"}, bad / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing tensor visual_projection\.weight"):
        load_metaclip2(bad)


def test_adapt_run_end_to_end(tiny, tmp_path):
    path = tiny[0]
    pool = write_pool(tmp_path / "pool")
    argv = ["run", "configs/zero_shot.py", "--workdir", str(tmp_path / "run"), "--quiet",
            "--set", f"pool.path={pool}", "--set", f"model.path={path}",
            "--set", f"embed.cache_dir={tmp_path / 'cache'}", "--set", "embed.batch_size=4"]
    assert cli.main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["n_embedded"] == 6 and metrics["accuracy"] is not None
    meta = json.loads((tmp_path / "run" / "classifier" / "meta.json").read_text())
    assert meta["model"]["id"] == "metaclip2:tiny-metaclip2" and meta["model"]["kind"] == "auto"
