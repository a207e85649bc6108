"""K estimate vs truth on pools with known classes (issue 28): the engine's estimate_k (grid search,
reliability mark) on pool embeddings dumped by pool_features.py, plus class subsets.

    PYTHONPATH=. python experiments/s3a/k_curves.py OUT.json NAME=FILE.npz[:c1,c2,...] ...
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from adapt.realistic.cluster_count import estimate_k


def main():
    out, results = sys.argv[1], {}
    for spec in sys.argv[2:]:
        name, _, rest = spec.partition("=")
        path, _, classes = rest.partition(":")
        d = np.load(path)
        x, y = d["x"], d["labels"]
        if classes:
            keep = np.isin(y, [int(c) for c in classes.split(",")])
            x, y = x[keep], y[keep]
        t = time.time()
        k, info = estimate_k(x, k_min=2, k_max=60, log=None)
        results[name] = dict(n=int(len(x)), true_k=int(len(np.unique(y))), estimate=int(k),
                             best_silhouette=info["best_silhouette"], reliable=info["reliable"],
                             scores={int(a): round(float(b), 4) for a, b in info["scores"].items()},
                             seconds=round(time.time() - t, 1))
        r = results[name]
        print(f"{name}: n {r['n']} true K {r['true_k']} estimate {k} silhouette "
              f"{r['best_silhouette']:.3f} reliable {r['reliable']} ({r['seconds']} s)", flush=True)
        json.dump(results, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
