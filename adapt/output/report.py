"""Run outputs: metrics.json, predictions.csv, plots and report.md (what a person reads first)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def accuracy_metrics(pred: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """Plain accuracy and per-class accuracy over items with a known label (label >= 0)."""
    known = labels >= 0
    pred, labels = pred[known], labels[known]
    per_class = {n: float((pred[labels == c] == c).mean()) for c, n in enumerate(names)
                 if (labels == c).any()}
    return dict(accuracy=float((pred == labels).mean()), per_class_accuracy=per_class,
                n_labelled=int(known.sum()))


def printable(name: str) -> str:
    """A file name as UTF-8 text: bytes that are not UTF-8 (read by Python as surrogates) become
    `\\xNN` escapes, so a name like b"caf\\xe9.png" from an old Latin-1 share is written, not fatal."""
    return str(name).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def write_predictions(path: Path, item_ids, pred, probs, names) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "predicted_class", "confidence"])
        for item, p, pr in zip(item_ids, pred, probs):
            w.writerow([printable(item), printable(names[p]), f"{pr[p]:.6f}"])


def plot_confusion(path: Path, pred, labels, names) -> None:
    known = labels >= 0
    c = len(names)
    m = np.zeros((c, c), np.int64)
    np.add.at(m, (labels[known], pred[known]), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * c, 0.8 + 0.5 * c))
    ax.imshow(m / np.maximum(m.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(c), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(c), names, fontsize=8)
    for i in range(c):
        for j in range(c):
            if m[i, j]:
                ax.text(j, i, m[i, j], ha="center", va="center", fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (row-normalised colour, counts)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confidence(path: Path, probs, pred, labels) -> None:
    conf = probs[np.arange(len(pred)), pred]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    if labels is not None and (labels >= 0).any():
        ok = pred == labels
        ax.hist([conf[ok], conf[~ok & (labels >= 0)]], bins=30, stacked=True,
                label=["correct", "wrong"], color=["tab:green", "tab:red"])
        ax.legend()
    else:
        ax.hist(conf, bins=30)
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("images")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.2f}%"


def write_report(path: Path, metrics: dict, info: dict, skipped: list, plots: list[str]) -> None:
    m = metrics
    lines = [f"# Adaptation run: {m['method']}", "",
             f"- model: `{info['model']}`", f"- pool: {info['pool']}",
             f"- classes ({len(info['classes'])}): {', '.join(info['classes'])}",
             f"- images: {m['n_images']} in the pool, {m['n_embedded']} embedded, "
             f"{m['n_skipped']} skipped", f"- setting of the method's predictions: {m['setting']}",
             f"- config: `{info['command']}`", "", "## Numbers", ""]
    if m.get("accuracy") is not None:
        lines += ["| predictions | setting | accuracy |", "|---|---|---|",
                  f"| zero-shot ({m.get('zero_shot_head', 'cosine')}) | inductive | "
                  f"{_pct(m.get('zero_shot_accuracy'))} |"]
        if "cosine_zero_shot_accuracy" in m:
            lines.append(f"| zero-shot (cosine) | inductive | {_pct(m['cosine_zero_shot_accuracy'])} |")
        lines += [f"| zero-shot on centred embeddings | transductive | "
                  f"{_pct(m.get('centered_zero_shot_accuracy'))} |",
                  f"| **{m['method']}** | {m['setting']} | **{_pct(m['accuracy'])}** |",
                  f"| the saved classifier applied to the pool | inductive | {_pct(m.get('head_accuracy'))} |",
                  "",
                  "Per class:", "", "| class | accuracy |", "|---|---|"]
        lines += [f"| {k} | {_pct(v)} |" for k, v in m["per_class_accuracy"].items()]
    else:
        lines.append("The pool has no labels: no accuracy. Predictions are in `predictions.csv`.")
    lines += ["", "Seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in m["seconds"].items()),
              "", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", f"## Skipped files ({len(skipped)})", ""]
    lines += [f"- `{i}`: {r}" for i, r in skipped] or ["None."]
    lines += ["", "Files: `metrics.json`, `predictions.csv`, `classifier/` (load with "
              "`adapt.output.artifact.load`, or `adapt predict classifier IMAGES...`)."]
    path.write_text(printable("\n".join(lines) + "\n"), encoding="utf-8")


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    tmp.replace(path)
