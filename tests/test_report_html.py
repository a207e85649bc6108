"""report.html: parsed with the standard-library HTML parser; every section, every image link, no
network reference, user strings escaped; thumbnails made for the shown images only."""
import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from adapt import cli
from adapt.data import ArrayPool
from adapt.output import html as report_html
from tests.clip_fixtures import write_tiny_clip

# Folder names with HTML in them: the report must show them as text, never as markup.
CLASSES = ["red_<b>square", "green-disc", "blue & bar"]


class Parsed(HTMLParser):
    """Tags with their attributes, the ids, the image sources and the visible text of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def attrs(self, tag: str, name: str) -> list[str]:
        return [a[name] for t, a in self.tags if t == tag and name in a]

    @property
    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if "id" in a}

    @property
    def all_text(self) -> str:
        return " ".join(self.text)

    def tiles_in(self, html: str, anchor: str) -> int:
        """Images between the element with id `anchor` and the next h3/section (a gallery block)."""
        start = html.index(f'id="{anchor}"')
        end = min([i for i in (html.find("<h3", start + 1), html.find("<section", start + 1)) if i > 0]
                  or [len(html)])
        return html[start:end].count("<img ")


def check_offline(workdir: Path, page: Parsed) -> list[str]:
    """Asserts the page needs no network and every image exists under workdir; returns the srcs."""
    assert not [a for t, a in page.tags if t == "script"], "no scripts at all"
    assert not [t for t, _ in page.tags if t in ("link", "iframe", "object", "embed")]
    refs = [v for _, a in page.tags for k, v in a.items() if k in ("src", "href") and v is not None]
    assert refs
    for ref in refs:
        assert not re.match(r"^(https?:)?//", ref, re.I) and ":" not in ref.split("/")[0], ref
    srcs = page.attrs("img", "src")
    for src in srcs:
        if src.startswith("data:"):
            continue
        path = (workdir / src).resolve()
        assert path.is_file() and workdir.resolve() in path.parents, src
    for href in page.attrs("a", "href"):
        assert href.startswith("#") and href[1:] in page.ids, href
    return srcs


def _write_pool(root: Path, labelled: bool, n_per_class=7, seed=0):
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        folder = root / name if labelled else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            a = rng.integers(0, 60, size=(40, 48, 3), dtype=np.uint8)
            a[..., c] += 180
            Image.fromarray(a).save(folder / f"{c}_{i}<x>.png")
    (root / ("" if not labelled else CLASSES[0]) / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


def _run(tmp_path, model_dir, config, *extra):
    argv = ["run", config, "--workdir", str(tmp_path / "run"), "--quiet",
            "--set", f"pool.path={tmp_path / 'pool'}", "--set", f"model.path={model_dir}",
            "--set", f"embed.cache_dir={tmp_path / 'cache'}", "--set", "embed.batch_size=8", *extra]
    assert cli.main(argv) == 0
    return tmp_path / "run"


@pytest.mark.parametrize("labelled", [True, False])
def test_report_html_of_a_transductive_run_with_and_without_labels(tmp_path, tiny_clip, labelled):
    _write_pool(tmp_path / "pool", labelled)
    names = [] if labelled else ["--set", "classes.names=red square,green disc,blue bar"]
    run = _run(tmp_path, tiny_clip, "configs/laplacian.py", *names)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["seconds"]["report"] > 0
    html = (run / "report.html").read_text()
    page = Parsed(html)
    srcs = check_offline(run, page)
    assert {"numbers", "classes", "moved", "plots", "skipped", "command"} <= page.ids
    text = page.all_text
    # user strings are text, never markup: no <b> or <x> element came from a class or file name
    assert "x" not in {t for t, _ in page.tags} and "<x>.png" in text
    assert sum(t == "b" for t, _ in page.tags) == 2  # the method's row in the numbers table only
    if labelled:
        assert "red <b>square" in text and "blue & bar" in text
    assert "broken.jpg" in text and "configs/laplacian.py" in text and "--workdir" in text
    # every predicted class has a block whose galleries hold min(12, n) + min(12, n - 12) images
    pred = [r.split(",")[1] for r in (run / "predictions.csv").read_text().splitlines()[1:]]
    class_names = json.loads((run / "classifier" / "meta.json").read_text())["class_names"]
    for c, name in enumerate(class_names):
        n = pred.count(name)
        assert page.tiles_in(html, f"class-{c}") == min(12, n) + min(12, max(n - 12, 0)), name
    # thumbnails exist for the shown images only, one file each
    thumbs = {s for s in srcs if s.startswith("thumbs/")}
    assert thumbs == {f"thumbs/{p.name}" for p in (run / "thumbs").iterdir()}
    assert "confidence.png" in srcs and ("confusion.png" in srcs) == labelled
    moved, total = map(int, re.search(r"(\d+) of (\d+) images \(", text).groups())
    assert total == metrics["n_embedded"] == len(pred)
    pairs = [int(k) for k in re.findall(r"\u2192 [^:]+: (\d+) images", text)]
    assert sum(pairs) == moved and len(pairs) <= 6  # 3 classes: every pair is shown
    assert ("moved to their true class" in text) == labelled == (metrics["accuracy"] is not None)


def _fake_outputs(n, c, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)).astype(np.float32) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return SimpleNamespace(probs=probs, predictions=probs.argmax(1))


def _metrics(n, setting="transductive"):
    return dict(method="fake", setting=setting, model="none", n_images=n, n_embedded=n, n_skipped=0,
                accuracy=None, zero_shot_accuracy=None, centered_zero_shot_accuracy=None)


def test_what_moved_counts_each_class_pair(tmp_path):
    n, c = 400, 4
    pool = ArrayPool(np.random.default_rng(1).integers(0, 255, (n, 28, 28), dtype=np.uint8), name="a<b")
    out = _fake_outputs(n, c)
    before = out.predictions.copy()
    before[:30] = (out.predictions[:30] + 1) % c  # 30 moved images, pairs (p+1 -> p)
    report_html.write(tmp_path, pool=pool, kept=np.arange(n), out=out, baselines={"centered": before},
                      labels=None, class_names=list("ABCD"), metrics=_metrics(n), skipped=[], plots=[])
    html = (tmp_path / "report.html").read_text()
    text = Parsed(html).all_text
    assert "30 of 400 images" in text
    for a in range(c):
        b = (a - 1) % c
        k = int(((before == a) & (out.predictions == b)).sum())
        if k:
            assert f"{'ABCD'[a]} \u2192 {'ABCD'[b]}: {k} images" in text
    assert "a&lt;b[" in html and "a<b[" not in html


def test_a_large_pool_gets_thumbnails_for_the_shown_images_only(tmp_path):
    n, c = 30_000, 10
    images = np.random.default_rng(0).integers(0, 255, (n, 28, 28), dtype=np.uint8)
    pool = ArrayPool(images, name="big")
    out = _fake_outputs(n, c)
    t = time.perf_counter()
    report_html.write(tmp_path, pool=pool, kept=np.arange(n), out=out,
                      baselines={"centered": np.roll(out.predictions, 1)}, labels=None,
                      class_names=[f"c{k}" for k in range(c)], metrics=_metrics(n), skipped=[], plots=[])
    seconds = time.perf_counter() - t
    made = len(list((tmp_path / "thumbs").iterdir()))
    srcs = check_offline(tmp_path, Parsed((tmp_path / "report.html").read_text()))
    assert made == len(set(srcs)) <= c * 24 + report_html.MOVED_PAIRS * report_html.PER_PAIR
    assert seconds < 30 and (tmp_path / "report.html").stat().st_size < 1_000_000
    # the most confident image of class 0 comes first in its gallery
    rows = np.flatnonzero(out.predictions == 0)
    best = rows[np.argmax(out.probs[rows, 0])]
    worst = rows[np.argmin(out.probs[rows, 0])]
    assert srcs[0] == f"thumbs/r{best}.png" and srcs[12] == f"thumbs/r{worst}.png"


def test_rerun_replaces_the_thumbnails_of_an_earlier_run(tmp_path):
    n = 50
    pool = ArrayPool(np.zeros((n, 8, 8), np.uint8))
    (tmp_path / "thumbs").mkdir()
    (tmp_path / "thumbs" / "r999.png").write_bytes(b"stale")
    report_html.write(tmp_path, pool=pool, kept=np.arange(n), out=_fake_outputs(n, 2), baselines={},
                      labels=None, class_names=["x", "y"], metrics=_metrics(n, "inductive"),
                      skipped=[("gone.png", "not an image file")], plots=["missing.png"])
    page = Parsed((tmp_path / "report.html").read_text())
    assert not (tmp_path / "thumbs" / "r999.png").exists() and "moved" not in page.ids
    assert "gone.png" in page.all_text and "missing.png" not in page.attrs("img", "src")
    check_offline(tmp_path, page)
