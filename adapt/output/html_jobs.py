"""report.html of the realistic-setting job (adapt.realistic.job): clusters with their words and a
sample of their images. Same page parts as adapt/output/html.py; images of shown rows only. (The
anomaly job's page is adapt/anomaly/html.py.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from adapt.output.html_page import Page, command_html, esc, gallery, pct, skipped_html, table, tile
from adapt.output.thumbnails import Thumbnails

PER_CLUSTER = 12  # sample of each realistic-setting cluster


def _reproduce(config) -> str:
    return command_html(config.to_json() if config is not None else None)


def write_realistic(workdir, *, pool, kept, clusters: list[dict], partition, labels, class_names,
                    metrics: dict, skipped: list, config=None, per_cluster: int = PER_CLUSTER) -> Path:
    """Writes `workdir/report.html`: per cluster its word, top candidates, size, (with labels) its
    true classes, and a seeded sample of its images; then skipped files and the command.

    clusters: the rows of candidates.json (cluster, size, word, candidates); partition: (N,) cluster
    of each row; labels: (N,) or None.
    """
    workdir = Path(workdir)
    thumbs = Thumbnails(workdir, pool, kept)
    partition = np.asarray(partition)
    n = len(partition)
    m = metrics
    page = Page(f"Realistic-setting run: {m['method']} (class names unknown)", [
        f"model: <code>{esc(m['model'])}</code>", f"pool: {esc(pool.source)}",
        f"images: {m['n_images']} in the pool, {m['n_embedded']} embedded, {m['n_skipped']} skipped",
        f"vocabulary: {m['vocabulary_size']} names, {esc(m['vocabulary'])}",
        f"K = {m['k']} clusters, {esc(m['k_assumption'])}"])
    results = m.get("results") or {}
    rows = [[esc(key), pct(r.get("accuracy")), pct(r.get("cluster_accuracy"))] for key, r in results.items()]
    page.add("numbers", "Numbers", table(["predictions", "accuracy", "cluster accuracy"], rows, (1, 2))
             if rows else "<p>The pool has no labels: no accuracy.</p>")
    has_labels = labels is not None and bool((np.asarray(labels) >= 0).any())
    rng = np.random.default_rng(0)
    summary, blocks = [], []
    for c in clusters:
        rows_c = np.flatnonzero(partition == c["cluster"])
        true = "n/a"
        if has_labels:
            y = np.asarray(labels)[rows_c]
            y = y[y >= 0]
            if len(y):
                v, cnt = np.unique(y, return_counts=True)
                top = np.argsort(-cnt, kind="stable")[:3]
                true = ", ".join(f"{esc(class_names[v[j]])} {100 * cnt[j] / len(y):.0f}%" for j in top)
        cands = esc(", ".join(x["name"] for x in c["candidates"]))
        anchor = f"cluster-{c['cluster']}"
        summary.append([f'<a href="#{anchor}">{c["cluster"]}</a>', esc(c["word"]), str(len(rows_c)),
                        pct(len(rows_c) / max(n, 1)), cands, true])
        sample = np.sort(rng.choice(rows_c, size=min(per_cluster, len(rows_c)), replace=False))
        tiles = [tile(thumbs, r, esc(f"cluster {c['cluster']}"), pool.item_id(int(kept[r]))) for r in sample]
        blocks.append(f'<h3 id="{anchor}">cluster {c["cluster"]}: {esc(c["word"])}</h3><p class=note>'
                      f"{len(rows_c)} images; top candidates: {cands}; true classes: {true}</p>"
                      + gallery(tiles))
    head = ["cluster", "assigned word", "images", "share", "top candidates", "most frequent true classes"]
    page.add("clusters", "Clusters", f"<p class=note>Up to {per_cluster} random images per cluster "
             "(seed 0).</p>" + table(head, summary, (2, 3)) + "".join(blocks))
    page.add("skipped", f"Skipped files ({len(skipped)})", skipped_html(skipped))
    page.add("command", "Reproduce", _reproduce(config))
    return page.write(workdir / "report.html")
