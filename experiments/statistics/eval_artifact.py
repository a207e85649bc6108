"""Accuracy of saved classifiers (runs' WORKDIR/classifier or `adapt soup` outputs) on the
Fashion-MNIST test images, through the artifact API (the same path as `adapt predict`).

  PYTHONPATH=. python experiments/statistics/eval_artifact.py CLASSIFIER_DIR... [--limit N]
"""
import argparse
import json
import time

import numpy as np

from adapt.data import fashion_mnist_pool
from adapt.output import artifact


def main():
    p = argparse.ArgumentParser()
    p.add_argument("classifiers", nargs="+")
    p.add_argument("--limit", type=int, default=0, help="first N test images only (0 = all 10,000)")
    args = p.parse_args()
    pool = fashion_mnist_pool(split="test")
    n = args.limit or len(pool)
    images, labels = [pool.load(i) for i in range(n)], np.asarray(pool.labels())[:n]
    for path in args.classifiers:
        start = time.time()
        pred, _ = artifact.load(path).predict(images)
        print(json.dumps(dict(classifier=path, n=n, accuracy=float((pred == labels).mean()),
                              seconds=round(time.time() - start, 1))), flush=True)


if __name__ == "__main__":
    main()
