"""Property checks of spec musc.md (issue 10) on MuSc: LNAMD, MSM, RsCIN, the whole method and the job."""
import hashlib
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from adapt.anomaly import msm
from adapt.anomaly.metrics import aupro, image_auroc, knn_baseline
from adapt.core import mesh as mesh_lib
from adapt.core.method import PoolTooSmall
from adapt.models.base import Preprocess
from methods import musc
from tests import reference_musc as ref


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _scores(z, mesh, schedule="symmetric", block=2, frac=0.3, rounding="floor_min1", precision="float32"):
    """Runs adapt.anomaly.msm on unpadded (N, P, C) features; returns (N, P)."""
    n = z.shape[0]
    lo, hi = msm.rank_window(n, frac, rounding=rounding)
    b, n_pad = msm.layout(n, mesh.devices.size, block)
    x = np.zeros((n_pad, *z.shape[1:]), np.float32)
    x[:n] = z
    xs, _ = mesh_lib.shard_rows(x, mesh)
    out = msm.mutual_scores(xs, n, mesh, lo=lo, hi=hi, block=b, schedule=schedule, precision=precision)
    return np.asarray(out)[:n]


def _pool(n, seed=0, grids=((6, 8), (3, 5)), d=6):
    rng = np.random.default_rng(seed)
    maps = [rng.normal(size=(n, g, g, c)).astype(np.float32) for g, c in grids]
    return maps, _unit(rng.normal(size=(n, d))).astype(np.float32)


def _musc(maps, emb, devices=8, size=(16, 16), **kw):
    s = musc.Settings(**{"degrees": (1, 3), "block": 2, **kw})
    return musc.score(maps, emb, size, mesh_lib.make_mesh(devices), s)


# ---- LNAMD ------------------------------------------------------------------------------------
def test_lnamd_box_filter_equals_unfold_and_adaptive_pool():
    maps = np.random.default_rng(0).normal(size=(2, 7, 7, 16)).astype(np.float32)
    for r in (1, 3, 5):
        np.testing.assert_allclose(np.asarray(musc.lnamd(jnp.asarray(maps), r)),
                                   ref.lnamd(maps.astype(np.float64), r), atol=1e-6)


# ---- MSM --------------------------------------------------------------------------------------
@pytest.mark.parametrize("devices,schedule", [(1, "symmetric"), (8, "symmetric"), (8, "stream"), (3, "symmetric")])
def test_msm_equals_float64_brute_force(devices, schedule):
    z = _unit(np.random.default_rng(1).normal(size=(6, 16, 8)))
    want = ref.msm(z)
    got = _scores(z.astype(np.float32), mesh_lib.make_mesh(devices), schedule)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_one_tile_gives_both_directions():
    rng = np.random.default_rng(2)
    za, zc = (jnp.asarray(_unit(rng.normal(size=(3, 5, 4))), jnp.float32) for _ in range(2))
    row, col = msm._tile(za, zc, jnp.float32)
    row_ref, _ = msm._tile(za, zc, jnp.float32)
    col_ref, _ = msm._tile(zc, za, jnp.float32)  # zc scored by za, computed on its own
    np.testing.assert_allclose(np.asarray(col), np.asarray(col_ref), atol=1e-7)
    sims = np.einsum("ipc,jqc->ipjq", np.asarray(za), np.asarray(zc))
    np.testing.assert_allclose(np.asarray(row), sims.max(-1), atol=1e-6)
    np.testing.assert_allclose(np.asarray(row_ref), np.asarray(row))


def test_small_pools_and_the_guard():
    mesh = mesh_lib.make_mesh(8)
    z = _unit(np.random.default_rng(3).normal(size=(5, 9, 4)))
    assert msm.rank_window(5, 0.3) == (0, 1)  # N = 5: K = 1, no guard needed
    np.testing.assert_allclose(_scores(z.astype(np.float32), mesh), ref.msm(z), atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        msm.rank_window(4, 0.3, rounding="floor")  # the official floor: K = 0 (NaN there)
    assert msm.rank_window(4, 0.3) == (0, 1) and msm.rank_window(4, 0.3, rounding="ceil") == (0, 1)
    with pytest.raises(ValueError, match="at least 2"):
        msm.rank_window(1, 0.3)
    maps, emb = _pool(4)
    with pytest.raises(PoolTooSmall, match="at least 5 images; this pool has 4"):
        _musc(maps, emb)


def test_same_position_finds_the_altered_patch():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(1, 4, 4, 8)).repeat(7, axis=0)
    base += 0.01 * rng.normal(size=base.shape)
    base[3, 2, 1] = rng.normal(size=8) * 3
    out = _musc([base.astype(np.float32)], _unit(rng.normal(size=(7, 3))), degrees=(1,),
                schedule="same_position", k_list=())
    assert np.unravel_index(np.argmax(out.layer_maps[0]), out.layer_maps[0].shape) == (3, 2, 1)


# ---- RsCIN ------------------------------------------------------------------------------------
def test_rscin_equals_reference_and_k1_is_min_max():
    rng = np.random.default_rng(5)
    s, f = rng.random(9), _unit(rng.normal(size=(9, 5)))
    got = np.asarray(musc.rscin(jnp.asarray(s, jnp.float32), jnp.asarray(f, jnp.float32), (1, 2, 3)))
    np.testing.assert_allclose(got, ref.rscin(s, f, (1, 2, 3)), atol=1e-6)
    one = np.asarray(musc.rscin(jnp.asarray(s, jnp.float32), jnp.asarray(f, jnp.float32), (1,)))
    np.testing.assert_allclose(one, (s - s.min()) / (s.max() - s.min()), atol=1e-7)


# ---- the whole method -------------------------------------------------------------------------
def test_musc_equals_numpy_restatement_on_1_and_8_devices():
    maps, emb = _pool(7)
    want_final, want_raw, want_maps = ref.musc(maps, emb, degrees=(1, 3), size=(16, 16))
    outs = [_musc(maps, emb, devices=d) for d in (1, 8)]
    for out in outs:
        np.testing.assert_allclose(out.raw_scores, want_raw, atol=1e-5)
        np.testing.assert_allclose(out.scores, want_final, atol=1e-5)
        np.testing.assert_allclose(out.maps, want_maps, atol=1e-5)
    np.testing.assert_allclose(outs[0].scores, outs[1].scores, rtol=1e-5)
    assert (np.argsort(outs[0].scores) == np.argsort(outs[1].scores)).all()


def test_pool_order_does_not_matter():
    maps, emb = _pool(9, seed=6)
    perm = np.random.default_rng(0).permutation(9)
    a = _musc(maps, emb)
    b = _musc([m[perm] for m in maps], emb[perm])
    np.testing.assert_allclose(b.scores, a.scores[perm], atol=1e-5)
    np.testing.assert_allclose(b.maps, a.maps[perm], atol=1e-5)


def test_an_exact_duplicate_never_raises_patch_scores():
    maps, emb = _pool(8, seed=7, grids=((5, 6),))
    a = _musc(maps, emb, k_list=())
    dup = [np.concatenate([m, m[2:3]]) for m in maps]
    b = _musc(dup, np.concatenate([emb, emb[2:3]]), k_list=())
    assert (b.layer_maps[0][2] <= a.layer_maps[0][2] + 1e-6).all()


def _planted(n=24, anomalous=(3, 11, 17), seed=8):
    """Patch maps where normal patches come from 6 prototypes; anomalous images get one odd patch."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(6, 32))
    maps = protos[rng.integers(0, 6, size=(n, 5, 5))] + 0.3 * rng.normal(size=(n, 5, 5, 32))
    for i in anomalous:
        maps[i, rng.integers(5), rng.integers(5)] = 2.0 * rng.normal(size=32)
    y = np.isin(np.arange(n), anomalous).astype(int)
    return [maps.astype(np.float32)], _unit(rng.normal(size=(n, 8))).astype(np.float32), y


def test_bfloat16_path_agrees_at_metric_level():
    maps, emb, y = _planted()
    f32 = _musc(maps, emb, degrees=(1,), k_list=())
    bf16 = _musc(maps, emb, degrees=(1,), k_list=(), precision="bfloat16")
    assert image_auroc(y, f32.scores) == 1.0
    assert abs(image_auroc(y, bf16.scores) - image_auroc(y, f32.scores)) <= 0.1


def test_upsampling_matches_align_corners_reference():
    a = np.random.default_rng(9).random((5, 4))
    m = musc.upsample_matrix(5, 11) @ a @ musc.upsample_matrix(4, 9).T
    np.testing.assert_allclose(m, ref.upsample_align_corners(a, (11, 9)), atol=1e-6)


# ---- metrics ----------------------------------------------------------------------------------
def test_metrics_on_known_cases():
    y = np.array([0, 0, 1, 1, -1])
    assert image_auroc(y, np.array([0.1, 0.2, 0.8, 0.9, 5.0])) == 1.0
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 12, 12), bool)
    masks[1, 2:5, 2:6] = masks[1, 8:11, 7:9] = masks[2, 6:9, 1:4] = True
    maps = rng.random((3, 12, 12)) + 0.8 * masks
    assert aupro(masks, maps) == pytest.approx(ref.aupro(masks, maps), abs=1e-9)
    e = _unit(np.array([[1.0, 0], [1, 0.01], [1, -0.01], [0, 1]]))
    assert np.argmax(knn_baseline(e, 2)) == 3


# ---- pools: defects generator and mixed sizes ---------------------------------------------------
needs_fmnist = pytest.mark.skipif(not os.path.isfile("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"),
                                  reason="Fashion-MNIST (apt dataset-fashion-mnist) not installed")


@needs_fmnist
def test_defect_pool_is_seeded_and_as_specified():
    from adapt.data.defects import defect_pool, make_defect_set

    images, masks, labels, idx, pastes = make_defect_set("Bag", seed=3)
    again = make_defect_set("Bag", seed=3)
    other = make_defect_set("Bag", seed=4)
    np.testing.assert_array_equal(images, again[0])
    assert not np.array_equal(images, other[0])
    assert images.shape == (285, 28, 28) and labels.sum() == 15 and len(set(idx)) == 285
    areas = masks.reshape(285, -1).sum(1)
    assert set(areas[labels == 1]) <= {49, 64, 81, 100} and (areas[labels == 0] == 0).all()
    assert all(p.donor_class != "Bag" for p, l in zip(pastes, labels) if l)
    pool = defect_pool("Bag", seed=3)
    img = np.asarray(pool.load(0))
    assert img.shape == (224, 224, 3) and img[0, 0].min() > 200  # dark on white, upscaled x8
    assert pool.mask(int(np.flatnonzero(labels)[0])).sum() in {49 * 64, 64 * 64, 81 * 64, 100 * 64}


def test_defect_ratio_keeps_285_images_and_the_default_pool_is_unchanged():
    from adapt.data.defects import defect_pool, make_defect_set, split_by_ratio

    # sha256 of Trouser seed 0 (images, masks, labels, indices) from the code before defect_ratio
    im, m, lab, idx, _ = make_defect_set("Trouser", seed=0)
    digest = hashlib.sha256(im.tobytes() + m.tobytes() + lab.tobytes() + idx.astype(np.int64).tobytes())
    assert digest.hexdigest().startswith("73b7c0576de44ae2")
    assert [split_by_ratio(285, r) for r in (0.2, 0.35, 0.5)] == [(228, 57), (185, 100), (142, 143)]
    for ratio, n_def in ((0.0, 15), (0.35, 100)):
        pool = defect_pool("Sneaker", seed=1, defect_ratio=ratio)
        y = pool.labels()
        assert len(pool) == 285 and int(y.sum()) == n_def
        assert all(pool.mask(i).any() == bool(y[i]) for i in range(0, 285, 7))
    with pytest.raises(Exception, match="defect_ratio"):
        defect_pool("Sneaker", defect_ratio=1.0)


def test_mixed_image_sizes_are_resized_consistently():
    from adapt.anomaly.patches import SquarePool
    from adapt.data import ArrayPool

    rng = np.random.default_rng(10)
    big = rng.integers(0, 256, size=(3, 40, 30, 3), dtype=np.uint8)
    pool = SquarePool(ArrayPool(big), 16)
    for i in range(3):
        got = np.asarray(pool.load(i))
        want = np.asarray(Image.fromarray(big[i]).resize((16, 16), Image.Resampling.BICUBIC))
        assert got.shape == (16, 16, 3)
        np.testing.assert_array_equal(got, want)


# ---- the job end to end -------------------------------------------------------------------------
class FakePatchModel(nnx.Module):
    """A tiny CNN-like frozen model: stage maps = average-pooled pixels through a fixed 1x1 map."""

    model_id = "fake-patches"
    embed_dim = 8
    logit_scale = 10.0

    def __init__(self, size=32):
        rng = np.random.default_rng(0)
        self.preprocess = Preprocess(image_size=size, resize_size=size)
        self.w = nnx.Param(jnp.asarray(rng.normal(size=(3, 12)), jnp.float32))
        self.v = nnx.Param(jnp.asarray(rng.normal(size=(3, 8)), jnp.float32))
        self.weights_hash = hashlib.sha256(np.asarray(self.w[...]).tobytes()).hexdigest()[:16]

    def encode_images(self, pixels):
        z = pixels.mean(axis=(1, 2)) @ self.v[...] + 1e-3
        return z / jnp.linalg.norm(z, axis=-1, keepdims=True)

    def stage_maps(self, pixels, strides=(4, 8)):
        b, h, w, _ = pixels.shape
        out = []
        for s in strides:
            x = pixels.reshape(b, h // s, s, w // s, s, 3).mean(axis=(2, 4))
            out.append(jnp.tanh(x @ self.w[...]))
        return out


def _folder(root, n_good=10, n_bad=2, seed=11):
    rng = np.random.default_rng(seed)
    for name, n in (("good", n_good), ("broken", n_bad)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            img = np.full((24 + 8 * (i % 2), 24, 3), 200, np.uint8)  # two image sizes
            img[8:16, 8:16] = 40 + rng.integers(0, 10)
            if name == "broken":
                img[2:7, 14:20] = rng.integers(0, 256, size=(5, 6, 3))
            Image.fromarray(img).save(root / name / f"{i:02d}.png")


def run_fake_anomaly_job(tmp_path, monkeypatch, run: str = "run") -> dict:
    """The anomaly job on the folder pool at tmp_path/pool with FakePatchModel, 8 devices, into
    tmp_path/run, through `adapt.engine.run` (the registry makes MuSc, the job runs it); returns
    its metrics."""
    import adapt.models
    from adapt import engine
    from adapt.core.config import load_config

    monkeypatch.setattr(adapt.models, "load_model", lambda kind, path, grounding="wordnet", arch="": FakePatchModel())
    config = load_config("configs/musc.py")
    config.unlock()
    config.pool.path = str(tmp_path / "pool")
    config.method_args.layers = [4, 8]
    config.method_args.degrees = [1, 3]
    config.embed.cache_dir = str(tmp_path / "cache")
    config.embed.num_devices = 8
    config.embed.batch_size = 8
    return engine.run(config, tmp_path / run, progress=False)


def test_anomaly_job_writes_scores_metrics_report_and_plots(tmp_path, monkeypatch):
    _folder(tmp_path / "pool")
    m = run_fake_anomaly_job(tmp_path, monkeypatch)
    assert m["n_scored"] == 12 and m["normal_class"] == "good" and m["n_anomalous"] == 2
    assert m["image_auroc"] == 1.0 and m["image_ap"] == 1.0 and m["setting"] == "transductive"
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"image_auroc", "image_ap", "baseline_knn5_image_auroc"} <= set(saved)
    rows = (tmp_path / "run" / "scores.csv").read_text().splitlines()
    assert rows[0].startswith("rank,item,score") and len(rows) == 13 and "anomalous" in rows[1]
    for name in ("report.md", "anomaly_grid.png", "score_histogram.png"):
        assert (tmp_path / "run" / name).is_file()
    for bad in (tmp_path / "pool" / "good").glob("0[2-9].png"):  # 2 good + 2 broken left
        bad.unlink()
    with pytest.raises(PoolTooSmall, match="at least 5"):
        run_fake_anomaly_job(tmp_path, monkeypatch, "run2")


def test_patch_maps_from_each_kind_of_model():
    from types import SimpleNamespace

    from adapt.anomaly.patches import default_layers, patch_maps

    x = jnp.ones((2, 8, 8, 3))

    class Tokens:  # a ViT that gives (B, P, C) tokens
        cfg = SimpleNamespace(vision=SimpleNamespace(depth=12))

        def patch_tokens(self, pixels, layers):
            return [jnp.arange(2 * 16 * 5.0).reshape(2, 16, 5) + l for l in layers]

    maps = patch_maps(Tokens(), x, (2, 5))
    assert [m.shape for m in maps] == [(2, 4, 4, 5)] * 2
    np.testing.assert_array_equal(np.asarray(maps[1][1, 2, 3]), np.arange(5.0) + 16 * 5 + 11 * 5 + 5)
    assert default_layers(Tokens()) == (2, 5, 8, 11)  # blocks 3, 6, 9, 12 (1-based)
    assert [m.shape for m in patch_maps(FakePatchModel(), x, (4,))] == [(2, 2, 2, 12)]
    with pytest.raises(ValueError, match="no patch features"):
        patch_maps(object(), x, (1,))


def test_window_and_rscin_come_from_the_model():
    from types import SimpleNamespace

    from adapt.anomaly import patches
    from methods.musc import model_scoring_defaults

    vit = SimpleNamespace(patch_tokens=None)
    cnn = FakePatchModel()
    s = musc.Settings()
    assert model_scoring_defaults({}, s, vit) == {"frac": 0.3}  # the spec's window, RsCIN on
    want_cnn = {"frac": patches.CNN_WINDOW, **({} if patches.CNN_RSCIN else {"k_list": ()})}
    assert model_scoring_defaults({}, s, cnn) == want_cnn
    assert model_scoring_defaults({"frac": 0.2, "rscin": "on"}, s, cnn) == {}
    assert model_scoring_defaults({"frac": 0.2, "rscin": "off"}, s, vit) == {"k_list": ()}
    with pytest.raises(ValueError, match="rscin"):
        model_scoring_defaults({"rscin": "maybe"}, s, vit)


def test_config_and_settings():
    from adapt.core.config import load_config

    c = load_config("configs/musc.py:defects,Bag")
    assert (c.pool.kind, c.pool.name, c.pool.invert, c.method) == ("defects", "Bag", True, "musc")
    assert c.pool.defect_ratio == 0.0
    assert load_config("configs/musc.py:defects,Bag,0.35").pool.defect_ratio == 0.35
    s = musc.settings_from_config(c)
    assert s.frac == 0.3 and s.k_list == (1, 2, 3) and s.precision == "float32"  # spec placeholders
    # one default for every pool kind: the window and RsCIN come from the model (issue 21)
    folder = load_config("configs/musc.py")
    assert dict(folder.method_args) == dict(c.method_args)
    folder.method_args.rscin = "off"
    assert musc.settings_from_config(folder).k_list == ()
    with pytest.raises(ValueError, match="odd"):
        musc.Settings(degrees=(2,))
    with pytest.raises(ValueError, match="schedule"):
        musc.Settings(schedule="fast")
