"""report.html of the anomaly job (adapt.anomaly.job): numbers, the most and the least anomalous
images each next to its pixel anomaly map, plots, skipped files, command. Same page parts as
adapt/output/html.py; images of shown rows only."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

from adapt.anomaly.patches import square_image
from adapt.output.html_page import Page, command_html, esc, gallery, plots_html, skipped_html, table, tile
from adapt.output.thumbnails import THUMB_SIZE, Thumbnails

LABEL_NAMES = {-1: "unknown", 0: "normal", 1: "anomalous"}
PER_SIDE = 12  # most and least anomalous images


def heat_map(values: np.ndarray, lo: float, hi: float, size: int) -> Image.Image:
    """(H, W) scores -> a `size` x `size` RGB picture in the jet colour map on the scale [lo, hi]."""
    scaled = np.clip((np.asarray(values, np.float32) - lo) / max(hi - lo, 1e-12), 0, 1)
    rgb = (matplotlib.colormaps["jet"](scaled)[..., :3] * 255).astype(np.uint8)
    return Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)


def write_anomaly(workdir, *, pool, kept, out, y, metrics: dict, skipped: list, plots: list[str],
                  config=None, per_side: int = PER_SIDE) -> Path:
    """Writes `workdir/report.html`: numbers, then the most and the least anomalous images, each
    next to its pixel anomaly map (one colour scale for all maps), plots, skipped files, command.

    out: `AnomalyOutputs` (scores (N,), maps (N, H, W)); y: (N,) 0 normal / 1 anomalous, or None.
    """
    workdir = Path(workdir)
    thumbs = Thumbnails(workdir, pool, kept)
    m = metrics
    page = Page(f"Anomaly scoring run: {m['method']}", [
        f"model: <code>{esc(m['model'])}</code>", f"pool: {esc(pool.source)}",
        f"images: {m['n_images']} in the pool, {m['n_scored']} scored, {m['n_skipped']} skipped; "
        f"resized to {m['image_size']}x{m['image_size']}", f"setting: {esc(m['setting'])}"])
    rows = [[esc(k.replace("_", " ")), "n/a" if m.get(k) is None else f"{m[k]:.4f}"]
            for k in ("image_auroc", "image_ap", "image_max_f1", "image_auroc_before_rscin",
                      "baseline_knn5_image_auroc", "pixel_auroc", "pixel_aupro") if k in m]
    numbers = table(["metric", "value"], rows, (1,)) if y is not None else (
        "<p>No labels with a normal class: no metrics. Scores are in <code>scores.csv</code>.</p>")
    page.add("numbers", "Numbers", numbers)
    scores, maps = np.asarray(out.scores), np.asarray(out.maps)
    order = np.argsort(-scores, kind="stable")
    k = min(per_side, max(len(order) // 2, 1))
    lo, hi = float(maps.min()), float(maps.max())
    for anchor, title, rows_ in (("most", "Most anomalous", order[:k]),
                                 ("least", "Least anomalous", order[::-1][:k])):
        tiles = []
        for r in rows_:
            item = pool.item_id(int(kept[r]))
            try:
                image = square_image(thumbs.load(r), THUMB_SIZE)
                src = thumbs.image(r, image, "image")
            except (OSError, ValueError) as e:  # BadImage is a ValueError
                tiles.append(tile(thumbs, r, esc(e), item))
                continue
            label = "" if y is None else f" &middot; {LABEL_NAMES[int(y[r])]}"
            bad = y is not None and y[r] == 1
            tiles.append(tile(thumbs, r, f"score {scores[r]:.3f}{label}", item, bad, src=src))
            tiles.append(tile(thumbs, r, "anomaly map", item, bad,
                              src=thumbs.image(r, heat_map(maps[r], lo, hi, THUMB_SIZE), "map")))
        page.add(anchor, title, "<p class=note>Each image, then its pixel anomaly map (jet, one "
                 f"scale for all maps: {lo:.3g} to {hi:.3g}); red frame: labelled anomalous.</p>"
                 + gallery(tiles))
    page.add("plots", "Plots", plots_html(workdir, plots))
    page.add("skipped", f"Skipped files ({len(skipped)})", skipped_html(skipped))
    page.add("command", "Reproduce", command_html(config.to_json() if config is not None else None))
    return page.write(workdir / "report.html")
