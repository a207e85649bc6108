"""Dump a pool's frozen embeddings and labels (through the engine's embedding cache) to an .npz.

    PYTHONPATH=. python experiments/s3a/pool_features.py fashion_mnist OUT.npz --split train --limit 3000
    PYTHONPATH=. python experiments/s3a/pool_features.py digits OUT.npz

Used by k_curves.py (the K-estimate study); the engine itself does not read these files.
"""
from __future__ import annotations

import argparse

import numpy as np

from adapt.core.job import Timer
from adapt.features import setup
from configs.s3a import get_config


def main():
    p = argparse.ArgumentParser()
    p.add_argument("preset")
    p.add_argument("out")
    p.add_argument("--split", default="")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    config = get_config(a.preset)
    if a.split:
        config.pool.split = a.split
    config.pool.limit = a.limit
    config.pool.seed = a.seed
    emb, pool, mesh, model, _ = setup.start_job(config, Timer())
    rows = setup.embed_job_pool(model, pool, mesh, emb, progress=True)
    n = len(rows.kept)
    x = np.asarray(rows.x)[:n]
    lab = pool.labels()
    labels = np.asarray(lab)[rows.kept] if lab is not None else np.full(n, -1)
    np.savez(a.out, x=x.astype(np.float32), labels=labels, kept=rows.kept,
             class_names=np.asarray(pool.class_names or []))
    print(a.out, x.shape, np.bincount(labels[labels >= 0]))


if __name__ == "__main__":
    main()
