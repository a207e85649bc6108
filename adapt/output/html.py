"""report.html of a classification run: per predicted class, its most and least confident images.

One static page next to report.md (adapt/output/html_page.py): the numbers, a gallery per predicted class
(share of the pool; with labels its accuracy and the true classes among its images), for
transductive methods the images that moved from centred zero-shot, the plots, the skipped files
and the command. Thumbnails are made for the shown images only (adapt/output/thumbnails.py), so the
writing time depends on the number of classes, not on the pool size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from adapt.core.method import TRANSDUCTIVE
from adapt.output.html_page import (Page, command_html, esc, gallery, pct, plots_html, skipped_html, table,
                                    tile)
from adapt.output.thumbnails import Thumbnails

PER_CLASS = 12  # most and least confident images per class (fewer with many classes, see budget)
THUMB_BUDGET = 1200  # gallery images over all classes: at most max(budget, 4 C) (2 + 2 per class)
MOVED_PAIRS = 12  # class pairs shown in "what moved", most frequent first
PER_PAIR = 8


def per_class_count(n_classes: int) -> int:
    """Images per gallery (most / least confident): 12, fewer when 2 x C x 12 exceeds the budget."""
    return int(max(2, min(PER_CLASS, THUMB_BUDGET // max(2 * n_classes, 1))))


def write(workdir, *, pool, kept, out, baselines: dict, labels, class_names: list[str], metrics: dict,
          skipped: list, plots: list[str], config=None) -> Path:
    """Writes `workdir/report.html` (+ `thumbs/`) for one classification run; returns its path.

    kept: (N,) pool item of each row; out: the `MethodOutputs` (probs (N, C), predictions (N,));
    baselines: `engine.zero_shot_baselines` (N,) predictions; labels: (N,) or None (-1 unknown).
    """
    workdir = Path(workdir)
    probs, pred = np.asarray(out.probs), np.asarray(out.predictions)
    conf = probs[np.arange(len(pred)), pred]
    has_labels = labels is not None and bool((np.asarray(labels) >= 0).any())
    y = np.asarray(labels) if has_labels else None
    thumbs = Thumbnails(workdir, pool, kept)
    ids = lambda r: pool.item_id(int(kept[r]))  # noqa: E731
    names = list(class_names)
    m = metrics
    facts = [f"model: <code>{esc(m['model'])}</code>", f"pool: {esc(pool.source)}",
             f"images: {m['n_images']} in the pool, {m['n_embedded']} embedded, {m['n_skipped']} skipped",
             f"classes ({len(names)}): {esc(', '.join(names))}",
             f"setting of the method's predictions: {esc(m['setting'])}"
             + ("" if has_labels else " &middot; the pool has no labels: no accuracy")]
    page = Page(f"Adaptation run: {m['method']}", facts)
    page.add("numbers", "Numbers", numbers_html(m, pred, baselines))
    page.add("classes", "Predicted classes", classes_html(thumbs, ids, pred, conf, y, names))
    if m.get("setting") == TRANSDUCTIVE and "centered" in baselines:
        page.add("moved", "What moved: centred zero-shot to the method",
                 moved_html(thumbs, ids, np.asarray(baselines["centered"]), pred, conf, y, names))
    page.add("plots", "Plots", plots_html(workdir, plots))
    page.add("skipped", f"Skipped files ({len(skipped)})", skipped_html(skipped))
    page.add("command", "Reproduce", command_html(config.to_json() if config is not None else None)
             + "<p class=note>Files: <code>metrics.json</code>, <code>predictions.csv</code>, "
               "<code>classifier/</code>, <code>report.md</code>.</p>")
    return page.write(workdir / "report.html")


def numbers_html(m: dict, pred, baselines: dict) -> str:
    """Accuracy (with labels) and label-free agreement of each reference with the method."""
    agree = lambda k: pct(float((baselines[k] == pred).mean())) if k in baselines else "n/a"  # noqa: E731
    head = m.get("zero_shot_head", "cosine")
    rows = [[f"zero-shot ({esc(head)})", "inductive", pct(m.get("zero_shot_accuracy")), agree(head)]]
    if "cosine_zero_shot_accuracy" in m or (head != "cosine" and "cosine" in baselines):
        rows.append(["zero-shot (cosine)", "inductive", pct(m.get("cosine_zero_shot_accuracy")),
                     agree("cosine")])
    rows += [["zero-shot on centred embeddings", "transductive", pct(m.get("centered_zero_shot_accuracy")),
              agree("centered")],
             [f"<b>{esc(m['method'])}</b>", esc(m["setting"]), f"<b>{pct(m.get('accuracy'))}</b>", "100.00%"],
             ["the saved classifier applied to the pool", "inductive", pct(m.get("head_accuracy")), "n/a"]]
    note = ("<p class=note>Accuracy needs labels (never seen by the method); agreement is the share "
            "of images where the row's prediction equals the method's, and needs none.</p>")
    return table(["predictions", "setting", "accuracy", "agrees with the method"], rows, (2, 3)) + note


def _true_classes(y_rows, names, top: int = 3) -> str:
    """'coat 80%, shirt 15%' over the labelled rows."""
    y_rows = y_rows[y_rows >= 0]
    if not len(y_rows):
        return "n/a"
    v, c = np.unique(y_rows, return_counts=True)
    order = np.argsort(-c, kind="stable")[:top]
    return ", ".join(f"{esc(names[v[j]])} {100 * c[j] / len(y_rows):.0f}%" for j in order)


def _tiles(thumbs, ids, rows, conf, y, names, pred) -> list[str]:
    out = []
    for r in rows:
        cap = f"{conf[r]:.3f}"
        wrong = False
        if y is not None and y[r] >= 0:
            wrong = bool(y[r] != pred[r])
            cap += f" &middot; {esc(names[y[r]])}" if wrong else " &middot; &#10003;"
        out.append(tile(thumbs, r, cap, ids(r), wrong))
    return out


def classes_html(thumbs, ids, pred, conf, y, names) -> str:
    """Summary table, then per class its most and least confident images (score = confidence)."""
    n, k = len(pred), per_class_count(len(names))
    order = np.lexsort((-conf, pred))  # by class, most confident first: O(N log N), no thumbnails
    starts = np.searchsorted(pred[order], np.arange(len(names) + 1))
    summary, blocks = [], []
    for c, name in enumerate(names):
        rows = order[starts[c]:starts[c + 1]]
        count = len(rows)
        acc, true = "n/a", "n/a"
        if y is not None:
            known = y[rows] >= 0
            acc = pct(float((y[rows][known] == c).mean())) if known.any() else "n/a"
            true = _true_classes(y[rows], names)
        summary.append([f'<a href="#class-{c}">{esc(name)}</a>', str(count), pct(count / max(n, 1)),
                        acc, true])
        most = rows[:k]
        least = rows[k:][::-1][:k]  # never repeats an image of `most`
        stats = (f"{count} images, {pct(count / max(n, 1))} of the pool" +
                 (f"; accuracy {acc}; true classes: {true}" if y is not None else ""))
        blocks.append(
            f'<h3 id="class-{c}">{esc(name)}</h3><p class=note>{stats}</p>'
            f"<div>most confident</div>{gallery(_tiles(thumbs, ids, most, conf, y, names, pred))}"
            f"<div>least confident</div>{gallery(_tiles(thumbs, ids, least, conf, y, names, pred))}")
    note = (f"<p class=note>Per class up to {k} most and {k} least confident images; the number "
            "is the confidence of the predicted class; with labels a red frame marks a wrong "
            "prediction and names the true class. Accuracy of a class = share of its images "
            "whose label is that class.</p>")
    head = ["predicted class", "images", "share of the pool", "accuracy", "most frequent true classes"]
    return note + table(head, summary, (1, 2, 3)) + "".join(blocks)


def moved_html(thumbs, ids, before, pred, conf, y, names, max_pairs: int = MOVED_PAIRS,
               per_pair: int = PER_PAIR) -> str:
    """Images whose class changed from centred zero-shot (`before`, (N,)) to the method (`pred`),
    a seeded sample per (before, after) pair, the most frequent pairs first."""
    moved = np.flatnonzero(before != pred)
    c = len(names)
    text = f"<p>{len(moved)} of {len(pred)} images ({pct(len(moved) / max(len(pred), 1))}) changed class."
    if y is not None:
        known = moved[y[moved] >= 0]
        fixed = int(((pred[known] == y[known]) & (before[known] != y[known])).sum())
        broke = int(((pred[known] != y[known]) & (before[known] == y[known])).sum())
        text += f" With labels: {fixed} moved to their true class, {broke} moved away from it."
    text += "</p>"
    if not len(moved):
        return text
    pair = before[moved] * c + pred[moved]
    keys, counts = np.unique(pair, return_counts=True)
    top = np.argsort(-counts, kind="stable")[:max_pairs]
    rng = np.random.default_rng(0)
    blocks = []
    for j in top:
        rows = moved[pair == keys[j]]
        sample = np.sort(rng.choice(rows, size=min(per_pair, len(rows)), replace=False))
        a, b = divmod(int(keys[j]), c)
        blocks.append(f"<div class=pair><h3>{esc(names[a])} &rarr; {esc(names[b])}: {counts[j]} "
                      f"images</h3>{gallery(_tiles(thumbs, ids, sample, conf, y, names, pred))}</div>")
    more = len(keys) - len(top)
    tail = f"<p class=note>{more} rarer pairs not shown.</p>" if more > 0 else ""
    return (text + f"<p class=note>Up to {per_pair} random images per pair (seed 0); the number is "
            "the method's confidence.</p>" + "".join(blocks) + tail)
