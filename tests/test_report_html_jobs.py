"""report.html of the anomaly job and the realistic-setting job, parsed like the classification one."""
import json
import re

import numpy as np

from adapt import cli
from tests.test_report_html import Parsed, check_offline


def test_anomaly_report_html_shows_images_next_to_their_maps(tmp_path, monkeypatch):
    from tests.test_musc import _folder, run_fake_anomaly_job

    _folder(tmp_path / "pool")
    (tmp_path / "pool" / "good" / "notes.txt").write_text("not an image")
    run_fake_anomaly_job(tmp_path, monkeypatch)
    run = tmp_path / "run"
    page = Parsed((run / "report.html").read_text())
    srcs = check_offline(run, page)
    assert {"numbers", "most", "least", "plots", "skipped", "command"} <= page.ids
    # 12 scored images: 6 most and 6 least anomalous, each image followed by its map
    tiles = [s for s in srcs if s.startswith("thumbs/")]
    assert len(tiles) == 24
    assert all(a.endswith("_image.png") and b == a.replace("_image", "_map") for a, b in zip(tiles[::2], tiles[1::2]))
    ranked = [r.split(",")[1] for r in (run / "scores.csv").read_text().splitlines()[1:]]
    shown = [a for t, a in page.tags if t == "img" and a["src"].endswith("_image.png")]
    assert [a["alt"] for a in shown[:6]] == ranked[:6] and [a["alt"] for a in shown[6:]] == ranked[::-1][:6]
    text = page.all_text
    assert "image auroc" in text and "notes.txt" in text and "anomalous" in text


def test_realistic_report_html_shows_each_cluster_with_its_word_and_a_sample(tmp_path):
    from tests.clip_fixtures import write_tiny_clip
    from tests.test_s3a import _write_pool

    clip = write_tiny_clip(tmp_path / "clip")
    _write_pool(tmp_path / "pool")
    vocab = tmp_path / "vocab.tsv"
    vocab.write_text("name\tsynset\tdefinition\nred\tn1\ta colour like blood\ngreen\t\tthe colour of grass\n"
                     "blue\t\tthe colour of the sky\ncar\nhouse\n")
    argv = ["run", "configs/s3a.py", "--workdir", str(tmp_path / "run"), "--quiet",
            "--set", f"pool.path={tmp_path / 'pool'}", "--set", f"model.path={clip}",
            "--set", f"embed.cache_dir={tmp_path / 'cache'}", "--set", f"vocabulary.file={vocab}",
            "--set", "method_args.k=3", "--set", "method_args.n_init=2", "--set", "self_learning.epochs=0",
            "--set", "method_args.phrases=none", "--set", "prompts.templates=['a photo of a {}.']"]
    assert cli.main(argv) == 0
    run = tmp_path / "run"
    html = (run / "report.html").read_text()
    page = Parsed(html)
    check_offline(run, page)
    assert {"numbers", "clusters", "skipped", "command"} <= page.ids
    clusters = json.loads((run / "candidates.json").read_text())["clusters"]
    partition = np.load(run / "cvpr.npz")["partition"]
    text = page.all_text
    for c in clusters:
        assert f"cluster-{c['cluster']}" in page.ids
        assert f"cluster {c['cluster']}: {c['word']}" in text
        n = int((partition == c["cluster"]).sum())
        block = html[html.index(f'id="cluster-{c["cluster"]}"'):]
        block = block[:block.find("<h3", 1) if "<h3" in block[1:] else len(block)]
        assert block.count("<img ") == min(12, n) and f"{n} images; top candidates: " in block
        assert re.search(r"true classes: \w", block)
