"""ALIGN: parity with transformers' AlignModel (PyTorch, random weights and random BatchNorm statistics)
at a tiny shape with both depthwise padding rules and an odd image size, 1 vs 8 devices, the
preprocessing rule against EfficientNetImageProcessor, the BERT tokenizer against its vocabulary,
loader errors, pytorch_model.bin, and `adapt run` end to end. The real align-base shape is checked by
experiments/towers/throughput_align.py (its compile alone costs more than this suite may add)."""
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from PIL import Image
from safetensors.numpy import load_file, save_file

from adapt import cli, models
from adapt.models import align_load
from adapt.models.align import load_align
from adapt.models.align_vision import block_specs
from adapt.models.base import Preprocess
from adapt.models.clip import jit_call
from adapt.models.preprocess import to_pixels
from tests.model_kind_fixtures import embed_on_devices, write_pool

torch.set_num_threads(2)
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"a photo of cat dog red square green disc , . ! x".split()]
TEXT = dict(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=80)
# 3 of B7's 7 stages at 0.25 width: 4 blocks (no expansion; k5 stride 2; its residual repeat; k3 stride 2
# with the symmetric padding of `depthwise_padding`), widths 8..40, 33 px -> 16 -> 8 -> 4 maps
VISION = dict(image_size=33, width_coefficient=0.25, depth_coefficient=1.0, hidden_dim=64, kernel_sizes=[3, 5, 3],
              in_channels=[32, 16, 24], out_channels=[16, 24, 160], strides=[1, 2, 2], num_block_repeats=[1, 2, 1],
              expand_ratios=[1, 6, 6], depthwise_padding=[3])
# kakaobrain/align-base's processor rule: x / 127.5 - 1, no mean / std
PREPROCESSOR = dict(do_resize=True, size={"height": 33, "width": 33}, do_center_crop=True,
                    crop_size={"height": 33, "width": 33}, do_rescale=True, rescale_factor=1 / 127.5,
                    rescale_offset=True, do_normalize=False, include_top=False,
                    image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
TEXTS = ["a photo of a cat.", "A RED square, green disc!", "x " * 100, "unknown words"]


def hf_align(vision, text, projection_dim, seed=0, std=0.1, gain=2.5):
    """A random transformers AlignModel (eval): matrices and kernels N(0, gain^2 / fan_in) (images, not
    biases, move the embeddings), vectors N(0, std), norm scales 1 + N(0, std), BatchNorm running means N(0, std)
    and variances U(0.5, 1.5), temperature 0.05. Built on the meta device."""
    from transformers import AlignConfig, AlignModel

    with torch.device("meta"):
        model = AlignModel(AlignConfig(text_config=text, vision_config=vision, projection_dim=projection_dim))
    model = model.to_empty(device="cpu").eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = int(np.prod(p.shape[1:])) if p.ndim > 1 and "embeddings" not in name else 0
            p.normal_(0.0, gain * fan_in**-0.5 if fan_in else std, generator=gen)
            if p.ndim == 1 and name.endswith("weight"):
                p.add_(1.0)
        model.temperature.fill_(0.05)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.normal_(0.0, std, generator=gen)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 1.5, generator=gen)
            elif name.endswith("position_ids"):
                b.copy_(torch.arange(b.shape[-1]).expand_as(b))
            else:  # token_type_ids, num_batches_tracked
                b.zero_()
    return model


def write_tiny_align(folder, seed=0):
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}).save_pretrained(folder)
    hf = hf_align(VISION, TEXT, 40, seed)
    hf.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    return folder, hf


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path, hf = write_tiny_align(tmp_path_factory.mktemp("align") / "tiny-align")
    return path, hf, load_align(path)


def _unit(t):
    t = t.pooler_output.numpy()
    return t / np.linalg.norm(t, axis=-1, keepdims=True)


def torch_images(hf, x):
    with torch.no_grad():
        return _unit(hf.get_image_features(pixel_values=torch.from_numpy(x).permute(0, 3, 1, 2)))


def torch_texts(hf, ids, mask):
    with torch.no_grad():
        return _unit(hf.get_text_features(input_ids=torch.from_numpy(ids).long(),
                                          attention_mask=torch.from_numpy(mask).long()))


def test_tiny_parity_on_1_and_8_devices(tiny):
    path, hf, model = tiny
    specs = block_specs(model.cfg.vision)
    assert [(b.stride, b.residual, b.adjust_padding) for b in specs] == [(1, False, True), (2, False, True),
                                                                           (1, True, True), (2, False, False)]
    rng = np.random.default_rng(0)  # odd size (HF's pads differ from SAME); a colour per image + noise
    x = (rng.normal(size=(8, 1, 1, 3)) + 0.5 * rng.normal(size=(8, 33, 33, 3))).astype(np.float32)
    want = torch_images(hf, x)
    assert np.ptp(want, axis=0).max() > 0.1  # the images, not the biases, move the embeddings
    np.testing.assert_allclose(jit_call(model, "encode_images", jnp.asarray(x)), want, atol=1e-5)
    model.vision.depthwise_form = "grouped"  # XLA's grouped convolution (the GPU default), on 8 devices
    try:
        np.testing.assert_allclose(embed_on_devices(model, x, 8), want, atol=1e-5)
    finally:
        model.vision.depthwise_form = "auto"
    ids, mask = model.tokenize(TEXTS)
    np.testing.assert_allclose(model.encode_texts(TEXTS), torch_texts(hf, ids, mask), atol=1e-5)
    assert model.logit_scale == pytest.approx(20.0) and model.logit_bias == 0.0 and model.embed_dim == 40
    assert model.model_id == f"align:{path.name}" and len(model.weights_hash) == 16


def test_tokenizer_ids_from_the_vocabulary(tiny):
    """[CLS] words [SEP], lower-cased, punctuation split off, unknown words [UNK], padded to 64 with [PAD]."""
    _, _, model = tiny
    ids, mask = model.tokenize(TEXTS)
    v = {w: i for i, w in enumerate(WORDS)}
    first = [v[w] for w in "[CLS] a red square , green disc ! [SEP]".split()]
    assert ids.shape == (4, 64) and ids.dtype == np.int32
    assert ids[1].tolist() == first + [0] * (64 - len(first)) and mask[1].sum() == len(first)
    assert ids[2, -1] == v["[SEP]"] and mask[2].all()  # truncated texts keep [SEP]
    assert ids[3, 1:3].tolist() == [v["[UNK]"]] * 2


@pytest.mark.parametrize("rule", ["align-base", "class defaults"])
def test_preprocessing_matches_efficientnet_image_processor(tiny, rule):
    """Our (p - mean) / std on p = x / 255 against the processor itself, on an image already at size."""
    from transformers import EfficientNetImageProcessor

    path, _, _ = tiny
    raw = PREPROCESSOR if rule == "align-base" else {"size": {"height": 33, "width": 33}}
    folder = path.parent / rule.replace(" ", "-")
    folder.mkdir(exist_ok=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(raw))
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (33, 33, 3), dtype=np.uint8))
    ours = to_pixels(image, Preprocess(**align_load.read_preprocess(folder, 33)))
    want = EfficientNetImageProcessor(**raw)(images=image, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
    np.testing.assert_allclose(ours, want, atol=1e-5)


def test_kinds_and_bad_checkpoints(tmp_path, tiny):
    path, _, model = tiny
    assert models.model_kind(str(path)) == "align"
    assert models.load_image_encoder(str(path)).model_id == model.model_id
    with pytest.raises(ValueError, match="model.kind='siglip'.*model_type 'align'"):
        models.load_model("siglip", str(path))
    bad = shutil.copytree(path, tmp_path / "bad")
    tensors = load_file(bad / "model.safetensors")
    (bad / "model.safetensors").unlink()  # pytorch_model.bin alone loads the same model
    torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, bad / "pytorch_model.bin")
    from_bin = load_align(bad)  # every weight equal to the safetensors model's (whose outputs are tested)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(from_bin), nnx.state(model))
    (bad / "pytorch_model.bin").unlink()
    name = "vision_model.encoder.blocks.3.squeeze_excite.reduce.bias"
    save_file({k: v for k, v in tensors.items() if k != name}, bad / "model.safetensors")
    with pytest.raises(ValueError, match=f"missing tensor {name}"):
        load_align(bad)
    w = "text_model.encoder.layer.1.intermediate.dense.weight"
    save_file({**tensors, w: np.zeros((48, 32), np.float32)}, bad / "model.safetensors")
    with pytest.raises(ValueError, match=r"dense\.weight: expected shape \(64, 32\), found \(48, 32\)"):
        load_align(bad)
    (bad / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer files.*vocab.txt"):
        load_align(bad)
    (bad / "vocab.txt").write_text("\n".join(WORDS[:-1]) + "\n")  # a vocab.txt one word short
    with pytest.raises(ValueError, match=f"vocab_size {len(WORDS)} .* differs from the tokenizer's {len(WORDS) - 1}"):
        load_align(bad)


def test_adapt_run_end_to_end(tmp_path, tiny, capsys):
    path, _, _ = tiny
    write_pool(tmp_path / "pool")
    argv = ["run", "configs/zero_shot.py", "--workdir", str(tmp_path / "run"), "--quiet",
            "--set", f"pool.path={tmp_path / 'pool'}", "--set", f"model.path={path}",
            "--set", f"embed.cache_dir={tmp_path / 'cache'}"]  # kind auto: from config.json
    assert cli.main(argv) == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["n_embedded"] == 6 and metrics["accuracy"] is not None
    meta = json.loads((tmp_path / "run" / "classifier" / "meta.json").read_text())
    assert meta["model"]["id"] == f"align:{path.name}"
