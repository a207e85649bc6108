"""Markdown table of realistic-setting runs: python experiments/s3a/collect.py RUN_DIR..."""
import json
import sys
from pathlib import Path

ROWS = (("zero_shot_cosine", "zero-shot, cosine"), ("zero_shot_class_map", "zero-shot, class map"),
        ("s3a_cvr", "S3A steps 1-2 (CVR)"), ("s3a_cvpr", "S3A CVPR"),
        ("s3a_self_learning", "S3A + self-learning (student)"),
        ("s3a_self_learning_teacher", "S3A + self-learning (teacher)"))


def pct(v):
    return "n/a" if v is None else f"{100 * v:.2f}"


def main(dirs):
    print("| run | K | prompt step | predictions | accuracy (9 in-vocab classes) | accuracy (all) | "
          "cluster accuracy | semantic similarity | semantic accuracy | distinct words | method s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for d in dirs:
        m = json.loads((Path(d) / "metrics.json").read_text())
        k = f"{m['k']} ({'given' if m['k_given'] else 'estimated'})"
        step = m["cvpr"]["prompt_step"].split(" ")[0]
        for key, title in ROWS:
            r = m["results"].get(key)
            if r is None:
                continue
            print(f"| {Path(d).name} | {k} | {step} | {title} | {pct(r['accuracy'])} | "
                  f"{pct(r['accuracy_all_images'])} | {pct(r['cluster_accuracy'])} | "
                  f"{r['semantic_similarity']:.4f} | {pct(r['semantic_accuracy'])} | "
                  f"{r['n_distinct_predictions']} | {m['seconds'].get('method', 0):.0f} |")
        print(f"| {Path(d).name} | {k} | | k-means partition (step 1) | | | "
              f"{pct(m.get('kmeans_cluster_accuracy'))} | | | {m['k']} | |")
    print("\n| run | stage | silhouette | vote agreement | vs previous | confident share per epoch |")
    print("|---|---|---|---|---|---|")
    for d in dirs:
        m = json.loads((Path(d) / "metrics.json").read_text())
        for r in m["cvpr"].get("stages", []):
            vs = ", ".join(f"{a} {b}" for a, b in r.get("vs_previous", {}).items())
            conf = ", ".join(f"{c:.3f}" for c in r.get("confident_share_per_epoch", []))
            print(f"| {Path(d).name} | {r['stage']} | {r['silhouette']:.4f} | {pct(r['vote_agreement'])} | "
                  f"{vs} | {conf} |")
        for c in m["cvpr"].get("realign_checks", []):
            print(f"| {Path(d).name} | realign rule: {c['step']} | {c['silhouette_before']:.4f} -> "
                  f"{c['silhouette_after']:.4f} | | {'accepted' if c['accepted'] else 'rejected'} | |")


if __name__ == "__main__":
    main(sys.argv[1:])
