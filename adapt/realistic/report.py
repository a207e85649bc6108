"""predictions.csv and report.md of the realistic-setting job (adapt.realistic.job)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from adapt.output.report import printable

ROWS = (("zero_shot_cosine", "zero-shot over the vocabulary (cosine)"),
        ("zero_shot_class_map", "zero-shot over the vocabulary (model's class map)"),
        ("s3a_cvr", "S3A steps 1-2 (Cluster-Vote-Realign)"), ("s3a_cvpr", "S3A CVPR"),
        ("s3a_self_learning", "S3A + self-learning (student)"),
        ("s3a_self_learning_teacher", "S3A + self-learning (teacher)"))


def write_predictions(path: Path, item_ids, preds: dict, partition, probs, vocab_names,
                      output: str = "s3a_cvpr") -> None:
    """One row per embedded pool item: CVPR's word and index, its cluster and confidence (softmax
    over the K assigned words), and the cosine zero-shot word over the whole vocabulary. When the
    output is the self-learning student: its word and its confidence over the whole vocabulary."""
    tuned = output != "s3a_cvpr"
    ours, zs = preds[output], preds["zero_shot_cosine"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "predicted_word", "vocabulary_index", "cluster", "confidence",
                    "zero_shot_word"])
        for i, item in enumerate(item_ids):
            w.writerow([printable(item), vocab_names[ours[i]], int(ours[i]), int(partition[i]),
                        f"{probs[i, ours[i] if tuned else partition[i]]:.6f}", vocab_names[zs[i]]])


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _cluster_lines(clusters, labels, partition, class_names) -> list[str]:
    lines = ["| cluster | size | word | top voted words | most frequent true class |", "|---|---|---|---|---|"]
    for c in clusters:
        top = "n/a"
        if labels is not None:
            y = labels[(partition == c["cluster"]) & (labels >= 0)]
            if len(y):
                v, n = np.unique(y, return_counts=True)
                top = f"{class_names[v[n.argmax()]]} ({100 * n.max() / len(y):.0f}%)"
        cands = ", ".join(x["name"] for x in c["candidates"])
        lines.append(f"| {c['cluster']} | {c['size']} | {c['word']} | {cands} | {top} |")
    return lines


def _stage_lines(info: dict) -> list[str]:
    """Label-free checks per stage (adapt.realistic.stage_checks) and the K estimate's reliability."""
    lines = ["## Stages, label-free", ""]
    ks = info.get("k_search")
    if ks:
        lines += [f"K search ({ks.get('search', 'binary')}): best silhouette {ks['best_silhouette']:.3f} at "
                  f"K = {info.get('k_estimate')}, {'reliable' if ks['reliable'] else 'UNRELIABLE'}; "
                  f"K used: {info.get('k')} ({info.get('k_source')}).", ""]
    for c in info.get("realign_checks", []):
        lines.append(f"- realign rule: {c['step']} silhouette {c['silhouette_before']:.4f} -> "
                     f"{c['silhouette_after']:.4f}: {'accepted' if c['accepted'] else 'rejected (renamed only)'}")
    lines += ["", "| stage | silhouette | vote agreement | distinct words | vs previous stage |",
              "|---|---|---|---|---|"]
    for r in info.get("stages", []):
        vs = ", ".join(f"{m} {v}" for m, v in r.get("vs_previous", {}).items()) or "-"
        if "confident_share_per_epoch" in r:
            vs += "; confident-teacher share per epoch " + ", ".join(f"{c:.3f}" for c in r["confident_share_per_epoch"])
        lines.append(f"| {r['stage']} | {r['silhouette']:.4f} | {_pct(r['vote_agreement'])} | "
                     f"{r['distinct_words']} | {vs} |")
    return lines + ["", "Silhouette of the stage's partition on the frozen embeddings (higher: tighter "
                    "clusters) and the share of images whose own zero-shot vote is their word: "
                    "a stage marked 'hurt' lowered the measure the method itself optimises.", ""]


def write_report(path: Path, m: dict, pool_source: str, skipped, clusters, labels, partition,
                 class_names) -> None:
    lines = [f"# Realistic-setting run: {m['method']} (class names unknown)", "",
             f"- model: `{m['model']}`", f"- pool: {pool_source}",
             f"- images: {m['n_images']} in the pool, {m['n_embedded']} embedded, {m['n_skipped']} skipped",
             f"- vocabulary: {m['vocabulary_size']} names, {m['vocabulary']}; templates "
             f"{m['vocabulary_templates']}",
             f"- K = {m['k']} clusters, {m['k_assumption']}",
             f"- prompt step: {m['cvpr'].get('prompt_step')}",
             f"- output (classifier/, predictions.csv): {m['cvpr'].get('output', 'CVPR')}", "", "## Numbers", ""]
    results = m.get("results")
    if results:
        lines += ["Class names (evaluation only) and their vocabulary entries:", ""]
        for c, e in m["class_name_entries"].items():
            lines.append(f"- {c}: " + (", ".join(e["entries"]) if e["entries"] else "not in the vocabulary"))
        lines += ["", "| predictions | accuracy (in-vocabulary classes) | accuracy (all images) | "
                  "cluster accuracy | semantic similarity | semantic accuracy | distinct words |",
                  "|---|---|---|---|---|---|---|"]
        for key, title in ROWS:
            r = results.get(key)
            if r:
                sim = "n/a" if r["semantic_similarity"] is None else f"{r['semantic_similarity']:.4f}"
                lines.append(f"| {title} | {_pct(r['accuracy'])} | {_pct(r['accuracy_all_images'])} | "
                             f"{_pct(r['cluster_accuracy'])} | {sim} | {_pct(r['semantic_accuracy'])} | "
                             f"{r['n_distinct_predictions']} |")
        lines += ["", f"The k-means partition alone (step 1) has cluster accuracy "
                  f"{_pct(m.get('kmeans_cluster_accuracy'))}.",
                  "", "Accuracy counts a word as right when it is one of the class's entries; "
                  "cluster accuracy matches predicted words to classes one-to-one (Hungarian) and "
                  "ignores names; semantic similarity is the mean Sentence-BERT cosine of predicted "
                  "word and true name (adapt/realistic/metrics.py)."]
    else:
        lines.append("The pool has no labels: no accuracy. Predictions are in `predictions.csv`.")
    lines += [""] + _stage_lines(m["cvpr"])
    lines += ["", "## Clusters", ""] + _cluster_lines(clusters, labels, partition, class_names)
    lines += ["", "Seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in m["seconds"].items()),
              "", f"## Skipped files ({len(skipped)})", ""]
    lines += [f"- `{i}`: {r}" for i, r in skipped] or ["None."]
    lines += ["", "Files: `metrics.json`, `predictions.csv`, `cvpr.npz`, `candidates.json` (input "
              "of `python -m adapt.realistic.phrases`), `classifier/` (a head over the K assigned words)."]
    path.write_text(printable("\n".join(lines) + "\n"), encoding="utf-8")
