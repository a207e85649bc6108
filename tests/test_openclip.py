"""OpenCLIP state dicts: parity with open_clip's own PyTorch CLIP, the name table against open_clip's
model configs, file formats and wrappers, clear errors, 1 vs 8 devices, `adapt run` end to end."""
import json
import pickle

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from adapt import cli
from adapt.models import load_model
from adapt.models.clip import jit_call
from adapt.models.openclip import from_state_dict, load_openclip, read_state_dict
from adapt.models.openclip_arch import ARCHS, arch_config
from adapt.output.artifact import load as load_artifact
from tests.model_kind_fixtures import embed_on_1_and_8_devices, open_clip_model_module, randomize_, write_pool

torch.set_num_threads(2)
TEXTS = ["a photo of a cat.", "an old, blurry photo of a Golden Retriever!", "", "two photos"]
TINY = "ViT-tiny-test"  # registered in ARCHS for this module only
TINY_ENTRY = (16, (32, 8, 32, 2, 8, 4.0), (32, 4, 2))


def open_clip_kwargs(name: str) -> dict:
    """CLIP(**kwargs) for a name: open_clip's own JSON, or the tiny entry in open_clip's terms."""
    oc, root = open_clip_model_module()
    base = name.removesuffix("-quickgelu")
    if base == TINY:
        embed, (image, patch, width, layers, head_width, mlp_ratio), (t_width, heads, t_layers) = TINY_ENTRY
        kw = dict(embed_dim=embed, vision_cfg=dict(image_size=image, patch_size=patch, width=width, layers=layers,
                                                   head_width=head_width, mlp_ratio=mlp_ratio),
                  text_cfg=dict(context_length=77, vocab_size=49408, width=t_width, heads=heads, layers=t_layers))
    else:
        kw = json.loads((root / "model_configs" / f"{base}.json").read_text())
    return {**kw, "quick_gelu": kw.get("quick_gelu", False) or name.endswith("-quickgelu")}


def torch_openclip(name: str, seed: int):
    """open_clip's CLIP for `name`, built on the meta device (its own init is slow at ViT-B size) and
    filled by `randomize_`; the causal text mask (a non-persistent buffer) is open_clip's, from the
    tiny model (it depends on the context length only, 77 for every name here)."""
    oc, _ = open_clip_model_module()
    kwargs = open_clip_kwargs(name)
    if name.removesuffix("-quickgelu") == TINY:
        return randomize_(oc.CLIP(**kwargs), seed)
    with torch.device("meta"):
        model = oc.CLIP(**kwargs)
    model = model.to_empty(device="cpu")
    model.attn_mask = oc.CLIP(**open_clip_kwargs(TINY)).attn_mask
    return randomize_(model, seed)


def oracle(model, pixels: np.ndarray, ids: np.ndarray):
    with torch.no_grad():
        img = model.encode_image(torch.from_numpy(pixels).permute(0, 3, 1, 2), normalize=True).numpy()
        txt = model.encode_text(torch.from_numpy(ids).long(), normalize=True).numpy() if len(ids) else None
    return img, txt


def pixels(size: int, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny architecture registered; a random open_clip model saved as a wrapped DDP checkpoint."""
    ARCHS[TINY] = TINY_ENTRY
    folder = tmp_path_factory.mktemp("openclip")
    ref = torch_openclip(TINY + "-quickgelu", seed=1)
    sd = ref.state_dict()
    torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in sd.items()}}, folder / "ckpt.pt")
    yield folder / "ckpt.pt", ref, {k: v.numpy() for k, v in sd.items()}
    del ARCHS[TINY]


def test_arch_table_matches_open_clip_configs():
    """Every name of our table against open_clip's JSON, with open_clip's rules for derived sizes."""
    _, root = open_clip_model_module()
    for name in ARCHS:
        if name == TINY:
            continue
        raw = json.loads((root / "model_configs" / f"{name}.json").read_text())
        v, t = raw["vision_cfg"], raw["text_cfg"]
        cfg = arch_config(name)
        assert (cfg.embed_dim, cfg.vision.image_size, cfg.vision.patch_size, cfg.vision.width, cfg.vision.depth) == (
            raw["embed_dim"], v["image_size"], v["patch_size"], v["width"], v["layers"]), name
        assert cfg.vision.heads == v["width"] // v.get("head_width", 64), name
        assert cfg.vision.mlp_dim == int(v["width"] * v.get("mlp_ratio", 4.0)), name
        assert (cfg.text.width, cfg.text.heads, cfg.text.depth, cfg.text.mlp_dim) == (
            t["width"], t["heads"], t["layers"], 4 * t["width"]), name
        assert (cfg.text.vocab_size, cfg.text.context_length, cfg.vision.act) == (49408, 77, "gelu"), name
    assert arch_config("ViT-L-14-quickgelu").text.act == "quick_gelu"


def test_tiny_parity_wrapped_checkpoint(tiny):
    """QuickGELU tiny tower from a {"state_dict": {"module.*": ...}} torch.save file."""
    path, ref, _ = tiny
    model = load_model("openclip", str(path), arch=TINY + "-quickgelu")
    x = pixels(32, 3)
    ids = model.tokenize(TEXTS)
    want_img, want_txt = oracle(ref, x, ids)
    np.testing.assert_allclose(jit_call(model, "encode_images", jnp.asarray(x)), want_img, atol=1e-5)
    np.testing.assert_allclose(model.encode_texts(TEXTS), want_txt, atol=1e-5)
    assert model.logit_scale == pytest.approx(1 / 0.07, rel=1e-5)
    assert model.model_id == f"openclip:{TINY}-quickgelu:ckpt.pt" and len(model.weights_hash) == 16
    # GELU (names without -quickgelu) is checked against open_clip at the real ViT-B-32 config below


def test_file_formats_read_the_same_tensors(tiny, tmp_path):
    """The wrapped DDP .pt, a plain .bin and a .safetensors file give the same state dict."""
    path, _, sd = tiny
    save_file(sd, tmp_path / "w.safetensors")
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, tmp_path / "w.bin")
    for f in (path, tmp_path / "w.safetensors", tmp_path / "w.bin"):
        got = read_state_dict(f)
        assert got.keys() == sd.keys(), f
        assert all(np.array_equal(got[k], v) and got[k].dtype == np.float32 for k, v in sd.items()), f


def test_real_config_vit_b32_parity():
    """Random weights at open_clip's ViT-B-32 (its own JSON config), mapped from the in-memory state
    dict (the file readers are covered by the tiny checkpoints; 600 MB of file IO would cost seconds)."""
    ref = torch_openclip("ViT-B-32", seed=3)
    model = from_state_dict({k: v.numpy() for k, v in ref.state_dict().items()}, "ViT-B-32")
    x = pixels(224, 1)
    want_img, want_txt = oracle(ref, x, model.tokenize(TEXTS[:2]))
    np.testing.assert_allclose(jit_call(model, "encode_images", jnp.asarray(x)), want_img, atol=1e-4)
    np.testing.assert_allclose(model.encode_texts(TEXTS[:2]), want_txt, atol=1e-4)


def test_same_embedding_on_1_and_8_devices(tiny):
    model = load_openclip(tiny[0], TINY)
    one, eight = embed_on_1_and_8_devices(model, pixels(32, 8, seed=5))
    np.testing.assert_allclose(eight, one, atol=1e-5)


def test_clear_errors(tiny, tmp_path):
    path, _, sd = tiny
    with pytest.raises(ValueError, match=r"unknown OpenCLIP architecture 'ViT-B-23'.*nearest: ViT-B-32"):
        load_openclip(path, "ViT-B-23")
    with pytest.raises(ValueError, match="model.arch"):
        load_openclip(path, "")
    save_file({k: v for k, v in sd.items() if k != "ln_final.bias"}, tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match=r"missing tensor ln_final\.bias"):
        load_openclip(tmp_path / "missing.safetensors", TINY)
    with pytest.raises(ValueError, match=r"(?s)fits ViT-tiny-test\).*visual\.conv1\.weight: expected shape \(768, 3, 32, 32\)"):
        load_openclip(path, "ViT-B-32")  # the hint names the table entries the file fits
    with pytest.raises(ValueError, match="model.kind=openclip and model.arch"):
        load_model("auto", str(path))  # a file: auto cannot tell without the architecture
    with pytest.raises(ValueError, match="only with model.kind=openclip"):
        load_model("clip", str(path), arch=TINY)
    with pytest.raises(ValueError, match="is a folder"):
        load_model("openclip", str(tmp_path), arch=TINY)
    (tmp_path / "w.ckpt").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown file type"):
        load_openclip(tmp_path / "w.ckpt", TINY)
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"a": print}))
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        load_openclip(tmp_path / "evil.pt", TINY)


def test_adapt_run_end_to_end(tiny, tmp_path):
    """`adapt run zero_shot` on an OpenCLIP file; the artifact records the arch and reloads the model."""
    pool = write_pool(tmp_path / "pool")
    argv = ["run", "configs/zero_shot.py", "--workdir", str(tmp_path / "run"), "--quiet",
            "--set", f"pool.path={pool}", "--set", f"model.path={tiny[0]}", "--set", f"model.arch={TINY}",
            "--set", f"embed.cache_dir={tmp_path / 'cache'}", "--set", "embed.batch_size=4"]
    assert cli.main(argv) == 0  # auto + arch + a .pt file: the openclip kind
    clf = load_artifact(tmp_path / "run" / "classifier")
    assert clf.meta["model"]["arch"] == TINY and clf.meta["model"]["id"] == f"openclip:{TINY}:ckpt.pt"
    assert clf.model().model_id == f"openclip:{TINY}:ckpt.pt"  # reloaded from the recorded kind, path, arch
