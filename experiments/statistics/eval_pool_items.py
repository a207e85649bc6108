"""Accuracy of saved classifiers on exactly the Fashion-MNIST test images one run's pool held (the item
ids of its predictions.csv, e.g. a seeded 1,000-image subsample), through the artifact API (the path
`adapt predict` takes). For a soup of runs on the same pool against each run:

  PYTHONPATH=. python experiments/statistics/eval_pool_items.py RUN_DIR CLASSIFIER_DIR...
"""
import argparse
import csv
import json
import re
import time

import numpy as np

from adapt.data import fashion_mnist_pool
from adapt.output import artifact


def main():
    p = argparse.ArgumentParser()
    p.add_argument("run", help="a run folder whose predictions.csv names the pool's items")
    p.add_argument("classifiers", nargs="+")
    args = p.parse_args()
    with open(f"{args.run}/predictions.csv", newline="") as f:
        items = [r["path"] for r in csv.DictReader(f)]
    index = [int(re.fullmatch(r"fashion_mnist/test\[(\d+)\]", item).group(1)) for item in items]
    pool = fashion_mnist_pool(split="test")
    images, labels = [pool.load(i) for i in index], np.asarray(pool.labels())[index]
    for path in args.classifiers:
        start = time.time()
        pred, _ = artifact.load(path).predict(images)
        print(json.dumps(dict(classifier=path, n=len(index), accuracy=float((pred == labels).mean()),
                              seconds=round(time.time() - start, 1))), flush=True)


if __name__ == "__main__":
    main()
