"""Outputs of an anomaly job: scores.csv, the heat-map grid, the score histogram, report.md."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from adapt.anomaly.patches import square_image
from adapt.output.report import printable

LABEL_NAMES = {-1: "unknown", 0: "normal", 1: "anomalous"}


def write_scores(path: Path, ids, scores, raw, baseline, y) -> None:
    """One row per scored image, most anomalous first (rank 1)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["rank", "item", "score", "score_before_rscin", "knn5_baseline", "label"])
        for rank, i in enumerate(order, 1):
            label = "" if y is None else LABEL_NAMES[int(y[i])]
            w.writerow([rank, printable(ids[i]), f"{scores[i]:.6f}", f"{raw[i]:.6f}",
                        f"{baseline[i]:.6f}", label])
    tmp.replace(path)


def plot_grid(path: Path, pool, kept, out, y, size: int, per_side: int = 8) -> list[str]:
    """The `per_side` most and least anomalous images with their maps overlaid (one colour scale)."""
    # local: plotting only (matplotlib is slow to load), and Agg must be chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"), see above

    order = np.argsort(-out.scores, kind="stable")
    k = min(per_side, len(order) // 2 or 1)
    rows = [("most anomalous", order[:k]), ("least anomalous", order[::-1][:k])]
    lo, hi = float(out.maps.min()), float(out.maps.max())
    fig, axes = plt.subplots(2, k, figsize=(2.0 * k, 4.6), squeeze=False)
    for r, (title, idx) in enumerate(rows):
        for c, i in enumerate(idx):
            ax = axes[r][c]
            image = np.asarray(square_image(pool.load(int(kept[i])), size))
            ax.imshow(image)
            ax.imshow(out.maps[i], cmap="jet", alpha=0.45, vmin=lo, vmax=hi)
            tag = "" if y is None else f" {LABEL_NAMES[int(y[i])][:4]}"
            ax.set_title(f"{out.scores[i]:.3f}{tag}", fontsize=8,
                         color="red" if y is not None and y[i] == 1 else "black")
            ax.axis("off")
        axes[r][0].text(-0.1, 0.5, title, transform=axes[r][0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=9)
    fig.suptitle("image score (after RsCIN); heat map: pixel anomaly map, common scale", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path.name]


def plot_histogram(path: Path, scores, y) -> str:
    # local: plotting only (matplotlib is slow to load), and Agg must be chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"), see above

    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.linspace(float(np.min(scores)), float(np.max(scores)), 31)
    for v, colour in ((0, "tab:blue"), (1, "tab:red")):
        if (y == v).any():
            ax.hist(scores[y == v], bins=bins, alpha=0.6, color=colour, label=LABEL_NAMES[v])
    ax.set_xlabel("image anomaly score")
    ax.set_ylabel("images")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _f(x, digits=4):
    return "n/a" if x is None else f"{x:.{digits}f}"


def write_report(path: Path, m: dict, info: dict, skipped: list, plots: list[str]) -> None:
    lines = [f"# Anomaly scoring run: {m['method']}", "",
             f"- model: `{info['model']}`", f"- pool: {info['pool']}",
             f"- images: {m['n_images']} in the pool, {m['n_scored']} scored, {m['n_skipped']} skipped;"
             f" every image resized to {m['image_size']}x{m['image_size']} (aspect ratio not kept)",
             f"- setting: {m['setting']} (each image is scored against the rest of the pool)",
             f"- layers {m['musc_layers']}, LNAMD degrees {m['musc_degrees']}, MSM rank window "
             f"{m['musc_rank_window']} of {m['n_scored'] - 1} other images, RsCIN windows "
             f"{m['musc_k_list'] or 'off'}, precision {m['musc_precision']}, "
             f"schedule {m['musc_schedule']}",
             f"- selection rule: {m['selection_rule']}", "", "## Numbers", ""]
    if m.get("image_auroc") is not None:
        lines += [f"Normal class: `{info['normal']}` ({m['n_normal']} images); anomalous: "
                  f"{m['n_anomalous']} images.", "",
                  "| scores | image AUROC | image AP | image max-F1 |", "|---|---|---|---|",
                  f"| kNN baseline (mean distance of the pooled feature to its 5 nearest pool "
                  f"neighbours) | {_f(m['baseline_knn5_image_auroc'])} | "
                  f"{_f(m['baseline_knn5_image_ap'])} | |",
                  f"| MuSc before RsCIN | {_f(m['image_auroc_before_rscin'])} | | |",
                  f"| **MuSc** | **{_f(m['image_auroc'])}** | {_f(m['image_ap'])} | "
                  f"{_f(m['image_max_f1'])} |"]
        if m.get("image_auroc_by_class"):
            lines += ["", "Image AUROC, normal vs each anomalous class: " + ", ".join(
                f"{k} {_f(v)}" for k, v in m["image_auroc_by_class"].items())]
        if m.get("pixel_auroc") is not None:
            lines += ["", "| pixel AUROC | pixel AP | pixel max-F1 | AUPRO (FPR < 0.3) |",
                      "|---|---|---|---|", f"| {_f(m['pixel_auroc'])} | {_f(m['pixel_ap'])} | "
                      f"{_f(m['pixel_max_f1'])} | {_f(m.get('pixel_aupro'))} |"]
    else:
        lines.append("No labels with a normal class (good / normal / nominal): no metrics. "
                     "Scores are in `scores.csv`.")
    lines += ["", "Seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in m["seconds"].items()),
              "", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", f"## Skipped files ({len(skipped)})", ""]
    lines += [f"- `{i}`: {r}" for i, r in skipped] or ["None."]
    lines += ["", "Files: `metrics.json`, `scores.csv` (most anomalous first)."]
    path.write_text(printable("\n".join(lines) + "\n"), encoding="utf-8")
