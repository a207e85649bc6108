"""Markdown table of realistic-setting runs: python experiments/s3a/collect.py RUN_DIR..."""
import json
import sys
from pathlib import Path

ROWS = (("zero_shot_cosine", "zero-shot, cosine"), ("zero_shot_class_map", "zero-shot, class map"),
        ("s3a_cvr", "S3A steps 1-2 (CVR)"), ("s3a_cvpr", "S3A CVPR"))


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


if __name__ == "__main__":
    main(sys.argv[1:])
