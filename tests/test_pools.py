"""Image pools: folder/IDX/tfds/array pools, class resolution, presets (decoding: test_decode.py)."""
import gzip
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from adapt import data
from adapt.data import (ArrayPool, BadImage, FolderPool, IdxPool, PoolError, TfdsPool,
                        make_pool_config, open_pool, resolve_classes, subsample,
                        write_idx)


def _png(img):
    b = io.BytesIO()
    img.save(b, "PNG")
    return b.getvalue()


def _noise(h=32, w=32, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8))


# ---------------------------------------------------------------- folders


def _make_tree(root, files):
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)


def test_folder_flat(tmp_path):
    _make_tree(tmp_path, {"b.png": _png(_noise(seed=1)), "a.JPG": b"", "c.webp": b"junk",
                          "notes.txt": b"x", ".hidden.png": b"", ".DS_Store": b"x"})
    pool = FolderPool(tmp_path)
    assert len(pool) == 3 and pool.class_names is None and pool.labels() is None
    assert [pool.item_id(i) for i in range(3)] == ["a.JPG", "b.png", "c.webp"]
    assert pool.prescan_skipped == [("notes.txt", "not an image file (extension '.txt')")]
    assert pool.load(1).size == (32, 32)
    with pytest.raises(BadImage, match="empty"):
        pool.load(0)
    with pytest.raises(BadImage, match="not an image"):
        pool.load(2)
    assert "unlabelled" in pool.source


def test_folder_classes_recursive_and_order(tmp_path):
    img = _png(_noise())
    _make_tree(tmp_path, {"hot_dog/x.png": img, "cat/b.png": img, "cat/sub/a.png": img,
                          "cat/.hid/z.png": img, "cat/readme.md": b"x", "ice-cream/q.png": img,
                          "loose.png": img, "__MACOSX/cat/b.png": img})
    pool = FolderPool(tmp_path)
    assert pool.class_dirs == ["cat", "hot_dog", "ice-cream"]
    assert pool.class_names == ["cat", "hot dog", "ice cream"]
    ids = [pool.item_id(i) for i in range(len(pool))]
    assert ids == ["cat/b.png", "cat/sub/a.png", "hot_dog/x.png", "ice-cream/q.png", "loose.png"]
    assert pool.labels().tolist() == [0, 0, 1, 2, -1]
    assert pool.prescan_skipped == [("cat/readme.md", "not an image file (extension '.md')")]
    ordered = FolderPool(tmp_path, classes=["ice-cream", "cat"])
    assert ordered.class_names == ["ice cream", "cat"]
    assert ordered.labels().tolist() == [1, 1, 0, -1]
    with pytest.raises(PoolError, match="not found"):
        FolderPool(tmp_path, classes=["dog"])


def test_folder_errors_and_fingerprint(tmp_path):
    with pytest.raises(PoolError, match="does not exist"):
        FolderPool(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PoolError, match="no image files"):
        FolderPool(tmp_path / "empty")
    _make_tree(tmp_path, {"txt/a.txt": b"x"})
    with pytest.raises(PoolError, match="a.txt"):
        FolderPool(tmp_path / "txt")
    _make_tree(tmp_path, {"imgs/a.png": _png(_noise(seed=1)), "imgs/b.png": _png(_noise(seed=2))})
    fp = FolderPool(tmp_path / "imgs").fingerprint()
    assert FolderPool(tmp_path / "imgs").fingerprint() == fp
    assert FolderPool(tmp_path / "imgs", invert=True).fingerprint() != fp
    (tmp_path / "imgs/b.png").write_bytes(_png(_noise(16, 16, seed=3)))
    assert FolderPool(tmp_path / "imgs").fingerprint() != fp
    pool = FolderPool(tmp_path / "imgs")
    fp2 = pool.fingerprint()
    st = os.stat(tmp_path / "imgs/a.png")
    os.utime(tmp_path / "imgs/a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert pool.fingerprint() != fp2  # stat'ed at fingerprint time


# ---------------------------------------------------------------- class resolution


@pytest.fixture
def labelled(tmp_path):
    img = _png(_noise())
    _make_tree(tmp_path / "pool", {"cat/a.png": img, "hot_dog/b.png": img, "hot_dog/c.png": img})
    return FolderPool(tmp_path / "pool")


def test_resolve_priority_and_remap(labelled, tmp_path):
    r = resolve_classes(labelled)
    assert r.names == ["cat", "hot dog"] and r.labels.tolist() == [0, 1, 1]
    assert r.descriptions is None and r.descriptions_sha256 is None
    r = resolve_classes(labelled, names=["Hot-Dog", "cat"])
    assert r.names == ["Hot-Dog", "cat"] and r.labels.tolist() == [1, 0, 0]
    (tmp_path / "names.txt").write_text("\nhot dog\n\n  CAT \n")
    r = resolve_classes(labelled, names_file=tmp_path / "names.txt")
    assert r.names == ["hot dog", "CAT"] and r.labels.tolist() == [1, 0, 0]
    assert resolve_classes(labelled, names=["cat", "hot_dog"],
                           names_file=tmp_path / "names.txt").names == ["cat", "hot_dog"]
    desc = {"hot dog": ["a sausage in a bun."], "cat": ["a small feline.", "a pet."]}
    (tmp_path / "d.json").write_text(json.dumps(desc))
    r = resolve_classes(labelled, descriptions_file=tmp_path / "d.json")
    assert r.names == ["hot dog", "cat"] and r.labels.tolist() == [1, 0, 0]
    assert r.descriptions == desc and len(r.descriptions_sha256) == 64
    r = resolve_classes(labelled, names=["cat", "Hot_Dog"], descriptions_file=tmp_path / "d.json")
    assert r.descriptions == {"cat": desc["cat"], "Hot_Dog": desc["hot dog"]}


def test_resolve_errors(labelled, tmp_path):
    with pytest.raises(PoolError, match="duplicates"):
        resolve_classes(labelled, names=["Cat", " cat ", "hot dog"])
    with pytest.raises(PoolError, match="empty"):
        resolve_classes(labelled, names=["cat", "  ", "hot dog"])
    with pytest.raises(PoolError, match=r"missing .*\['hot dog'\].*extra .*\['dog'\]"):
        resolve_classes(labelled, names=["cat", "dog"])
    flat = tmp_path / "flat"
    _make_tree(flat, {"a.png": _png(_noise())})
    with pytest.raises(PoolError, match="no class names"):
        resolve_classes(FolderPool(flat))
    assert resolve_classes(FolderPool(flat), names="a, b").names == ["a", "b"]
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(PoolError, match="holds no names"):
        resolve_classes(labelled, names_file=tmp_path / "blank.txt")
    for content, pattern in [
        ({"cat": ["x"]}, r"without descriptions: \['hot dog'\]"),
        ({"cat": ["x"], "hot dog": ["y"], "bird": ["z"]}, r"unknown classes: \['bird'\]"),
        ({"cat": "a cat", "hot dog": ["y"]}, "non-empty list"),
        ({"cat": ["x", 3], "hot dog": ["y"]}, "non-empty list"),
        (["cat"], "JSON object"),
    ]:
        (tmp_path / "d.json").write_text(json.dumps(content))
        with pytest.raises(PoolError, match=pattern):
            resolve_classes(labelled, names=["cat", "hot dog"],
                            descriptions_file=tmp_path / "d.json")
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(PoolError, match="not valid JSON"):
        resolve_classes(labelled, descriptions_file=tmp_path / "d.json")


# ---------------------------------------------------------------- IDX


def test_idx_round_trip(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (5, 7, 6), np.uint8)
    y = np.array([0, 2, 1, 2, 0], np.uint8)
    write_idx(tmp_path / "im.gz", x)
    write_idx(tmp_path / "lab", y)
    assert (tmp_path / "im.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "lab").read_bytes()[:4] == b"\x00\x00\x08\x01"
    pool = IdxPool(tmp_path / "im.gz", tmp_path / "lab", class_names=["a", "b", "c"], name="toy")
    assert len(pool) == 5 and pool.item_id(3) == "toy[3]" and pool.labels().tolist() == y.tolist()
    img = pool.load(1)
    assert img.mode == "RGB" and img.size == (6, 7)
    np.testing.assert_array_equal(np.asarray(img)[..., 1], x[1])
    np.testing.assert_array_equal(np.asarray(IdxPool(tmp_path / "im.gz", invert=True).load(1))[..., 0],
                                  255 - x[1])
    anon = IdxPool(tmp_path / "im.gz", tmp_path / "lab")
    assert anon.class_names == ["0", "1", "2"] and anon.label_names_synthetic
    with pytest.raises(PoolError, match="no class names"):
        resolve_classes(anon)
    with pytest.raises(PoolError, match="only 2 class names"):
        resolve_classes(anon, names=["p", "q"])
    assert resolve_classes(anon, names=["p", "q", "r"]).labels.tolist() == y.tolist()
    fp = pool.fingerprint()
    write_idx(tmp_path / "im.gz", x[::-1])
    assert IdxPool(tmp_path / "im.gz", tmp_path / "lab", ["a", "b", "c"], name="toy").fingerprint() != fp


def test_idx_validation(tmp_path):
    x = np.zeros((3, 4, 4), np.uint8)
    write_idx(tmp_path / "im", x)
    write_idx(tmp_path / "lab4", np.zeros(4, np.uint8))
    with pytest.raises(PoolError, match="3 images .* 4 labels"):
        IdxPool(tmp_path / "im", tmp_path / "lab4")
    with pytest.raises(PoolError, match="expected images"):
        IdxPool(tmp_path / "lab4")
    with pytest.raises(PoolError, match="expected labels"):
        IdxPool(tmp_path / "im", tmp_path / "im")
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x03" + b"\x00" * 20)
    with pytest.raises(PoolError, match="bad magic number 0x12340803"):
        IdxPool(tmp_path / "bad")
    (tmp_path / "f32").write_bytes(b"\x00\x00\x0d\x01" + (1).to_bytes(4, "big") + b"\x00" * 4)
    with pytest.raises(PoolError, match="data type 0x0d"):
        IdxPool(tmp_path / "f32")
    raw = (tmp_path / "im").read_bytes()
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(PoolError, match="truncated"):
        IdxPool(tmp_path / "cut.gz")
    (tmp_path / "badgz").write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(PoolError, match="gzip"):
        IdxPool(tmp_path / "badgz")
    write_idx(tmp_path / "lab3", np.array([0, 5, 1], np.uint8))
    with pytest.raises(PoolError, match="label 5 but only 2"):
        IdxPool(tmp_path / "im", tmp_path / "lab3", class_names=["a", "b"])
    with pytest.raises(PoolError, match="does not exist"):
        IdxPool(tmp_path / "none")


# ---------------------------------------------------------------- arrays and subsets


def test_array_pool_and_subsample():
    xf = np.linspace(0, 1, 6 * 4 * 4).reshape(6, 4, 4, 1)
    pool = ArrayPool(xf, labels=[0, 1, 0, 1, -1, 1], class_names=["u", "v"], name="toy")
    np.testing.assert_array_equal(np.asarray(pool.load(5))[..., 2], np.round(xf[5, ..., 0] * 255))
    assert pool.item_id(2) == "toy[2]" and pool.labels().tolist() == [0, 1, 0, 1, -1, 1]
    assert ArrayPool(xf).fingerprint() != ArrayPool(xf[::-1]).fingerprint()
    assert ArrayPool(xf).fingerprint() == ArrayPool(xf.copy()).fingerprint()
    assert ArrayPool(xf, invert=True).load(0).getpixel((0, 0)) == (255, 255, 255)
    for bad, pattern in [(xf * 2, r"in \[0, 1\]"), (np.zeros((0, 4, 4), np.uint8), "empty"),
                         (np.zeros((2, 4, 4, 2), np.uint8), "shape"),
                         (np.full((2, 4, 4), 300), "0..255")]:
        with pytest.raises(PoolError, match=pattern):
            ArrayPool(bad)
    with pytest.raises(PoolError, match="expected 6 labels"):
        ArrayPool(xf, labels=[0, 1])
    with pytest.raises(PoolError, match="label 1 but only 1"):
        ArrayPool(xf, labels=[0, 1, 0, 0, 0, 0], class_names=["u"])

    big = ArrayPool(np.arange(100, dtype=np.uint8).reshape(100, 1, 1), labels=np.arange(100) % 3,
                    class_names=["a", "b", "c"])
    s1, s2, s3 = subsample(big, 10, seed=1), subsample(big, 10, seed=1), subsample(big, 10, seed=2)
    ids1 = [s1.item_id(i) for i in range(10)]
    assert ids1 == [s2.item_id(i) for i in range(10)] != [s3.item_id(i) for i in range(10)]
    assert list(s1.indices) == sorted(s1.indices)
    assert s1.labels().tolist() == [int(i) % 3 for i in s1.indices]
    assert s1.load(0).getpixel((0, 0))[0] == s1.indices[0]
    assert s1.fingerprint() == s2.fingerprint() != s3.fingerprint()
    assert subsample(big, 0) is big and subsample(big, 500) is big


# ---------------------------------------------------------------- tfds


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    tfds = pytest.importorskip("tensorflow_datasets")

    class AdaptTinyImages(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "label": tfds.features.ClassLabel(names=["cat", "hot_dog", "bird"])}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(6), "test": self._generate_examples(4)}

        def _generate_examples(self, n):
            for i in range(n):
                img = b"not an image" if i == 1 else _noise(5 + i, 7, seed=i)
                yield i, {"image": img, "label": i % 3}

    root = tmp_path_factory.mktemp("tfds")
    AdaptTinyImages(data_dir=str(root), file_format="array_record").download_and_prepare()
    return str(root)


def test_tfds_prepared_dir(tfds_dir):
    pool = TfdsPool("adapt_tiny_images", data_dir=tfds_dir, split="train")
    assert len(pool) == 6 and pool.class_names == ["cat", "hot_dog", "bird"]
    labels = pool.labels()
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert pool.item_id(4) == "adapt_tiny_images/train[4]"
    loaded, bad = 0, 0
    for i in range(6):
        try:
            img = pool.load(i)
            assert img.mode == "RGB" and img.size[0] == 7
            loaded += 1
        except BadImage as e:
            assert "not an image" in str(e)
            bad += 1
    assert (loaded, bad) == (5, 1)
    assert len(TfdsPool("adapt_tiny_images", data_dir=tfds_dir, split="test[:2]")) == 2
    fp = pool.fingerprint()
    assert fp == TfdsPool("adapt_tiny_images", data_dir=tfds_dir, split="train").fingerprint()
    assert fp != TfdsPool("adapt_tiny_images", data_dir=tfds_dir, split="test").fingerprint()
    with pytest.raises(PoolError, match="split"):
        TfdsPool("adapt_tiny_images", data_dir=tfds_dir, split="validation")
    with pytest.raises(PoolError, match="no feature 'img'"):
        TfdsPool("adapt_tiny_images", data_dir=tfds_dir, image_key="img")
    with pytest.raises(PoolError, match="cannot open tfds dataset 'no_such_ds'"):
        TfdsPool("no_such_ds", data_dir=tfds_dir)
    cfg = make_pool_config(kind="tfds", name="adapt_tiny_images", path=tfds_dir, split="train",
                           limit=3, seed=4)
    assert len(open_pool(cfg)) == 3


def test_tfds_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
        pool = TfdsPool("mnist", split="train")
        assert len(pool) == 5 and len(pool.class_names) == 10
        img = pool.load(0)
        assert img.mode == "RGB" and img.size == (28, 28)
        assert pool.labels().shape == (5,)


# ---------------------------------------------------------------- configs and presets


def test_pool_config_and_open_pool(tmp_path):
    cfg = make_pool_config()
    assert dict(cfg) == data.POOL_DEFAULTS
    with pytest.raises(KeyError):
        make_pool_config(pth="x")
    with pytest.raises(AttributeError):
        cfg.pth = "x"
    with pytest.raises(PoolError, match="unknown pool kind"):
        open_pool(make_pool_config(kind="nope"))
    with pytest.raises(PoolError, match="Python-API only"):
        open_pool(make_pool_config(kind="arrays"))
    with pytest.raises(PoolError, match="needs `path`"):
        open_pool(make_pool_config())
    x = np.random.default_rng(0).integers(0, 256, (9, 3, 3), np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(9, dtype=np.uint8) % 2)
    pool = open_pool(make_pool_config(kind="idx", path=str(tmp_path / "train-images-idx3-ubyte.gz")))
    assert len(pool) == 9 and pool.labels() is not None
    pool = open_pool({"kind": "idx", "path": str(tmp_path / "train-images-idx3-ubyte.gz"),
                      "limit": 4, "seed": 1})
    assert len(pool) == 4 and "subset of 4/9" in pool.source


def test_digits_preset():
    pytest.importorskip("sklearn")
    pool = open_pool(make_pool_config(kind="digits"))
    assert len(pool) == 1797 and pool.class_names[:2] == ["zero", "one"]
    assert np.bincount(pool.labels()).min() > 150
    assert max(np.asarray(pool.load(i)).max() for i in range(10)) == 255
    assert pool.load(0).size == (8, 8)


@pytest.mark.skipif(not os.path.isfile("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"),
                    reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_preset(tmp_path):
    pool = open_pool(make_pool_config(kind="fashion_mnist", limit=50, seed=0))
    assert len(pool) == 50 and pool.class_names[0] == "T-shirt/top"
    full = pool.pool
    assert len(full) == 10000 and np.bincount(full.labels()).tolist() == [1000] * 10
    assert full.load(0).size == (28, 28) and full.item_id(0) == "fashion_mnist/test[0]"
    assert resolve_classes(pool).labels.shape == (50,)
    with pytest.raises(PoolError, match="'train' or 'test'"):
        data.fashion_mnist_pool("val")
    with pytest.raises(PoolError, match="apt-get install dataset-fashion-mnist"):
        data.fashion_mnist_pool("test", root=str(tmp_path))


def test_textile_preset():
    pytest.importorskip("conformal_clip_data", reason="conformal-clip-data not installed")
    pool = open_pool(make_pool_config(kind="textile"))
    assert pool.class_names == ["nominal", "local", "global"]
    assert np.bincount(pool.labels()).tolist() == [1000, 500, 500]
    assert pool.load(0).size == (250, 250)
