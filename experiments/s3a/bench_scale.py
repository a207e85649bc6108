"""Scale benchmark of CVPR's embedding-level parts: k-means and the vocabulary argmax at
200,000 pool rows x 20,000 vocabulary words (synthetic embeddings), time and peak RSS.

  python experiments/s3a/bench_scale.py                       # every stage, one process each
  python experiments/s3a/bench_scale.py --stage kmeans --n 200000 --d 512 --k 100 --n-init 3

Stages (each in its own process, so the peak RSS is the stage's own):
  data         make the synthetic pool and vocabulary only (the baseline footprint)
  argmax       votes: argmax over all |V| words of X T_V^T, streamed over word blocks
  kmeans       k-means++ and Lloyd to convergence, n_init restarts
  vote_realign 3 rounds of vote matrix, Hungarian on K x |V| (full matrix) and realign, from a
               k-means partition of 20 Lloyd steps
  silhouette   one scored K of the K search: silhouette of a k-means partition of a 30,000-row sample
  text         the real text side: the offline default model's encode_texts (MiniLM + class map)
               of the first --v names of the built-in WordNet vocabulary, one template, no cache
Pool rows are unit vectors around `clusters` random centres; words are random unit vectors, a
few near each centre.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("data", "argmax", "kmeans", "vote_realign", "silhouette", "text")


def synthetic(n, d, v, clusters, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, clusters, n)] + (1.2 / np.sqrt(d)) * rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = rng.normal(size=(v, d)).astype(np.float32)
    t[: 3 * clusters] = np.repeat(centres, 3, 0) + (1.0 / np.sqrt(d)) * rng.normal(size=(3 * clusters, d))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return x, t


def text_cost(v: int) -> dict:
    from adapt.features.text import encode_classes
    from adapt.models import load_model
    from adapt.vocab.vocabulary import builtin_vocabulary

    t0 = time.perf_counter()
    model = load_model("offline", "")
    names = builtin_vocabulary().names[:v]
    t1 = time.perf_counter()
    w = encode_classes(model, names, ["a photo of a {}."]).weights
    t2 = time.perf_counter()
    return dict(load_s=t1 - t0, seconds=t2 - t1, names=len(names), texts_per_s=len(names) / (t2 - t1),
                weights_shape=list(w.shape), total_s=t2 - t0,
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run_stage(a) -> dict:
    import jax
    import jax.numpy as jnp

    from adapt.core import mesh as mesh_lib
    from adapt.realistic.cluster_count import sample_rows, silhouette
    from adapt.realistic.kmeans import kmeans, kmeans_plus_plus, lloyd
    from adapt.realistic.vote_realign import vocabulary_argmax, vote_realign

    mesh = mesh_lib.make_mesh()
    out = dict(stage=a.stage, n=a.n, d=a.d, v=a.v, k=a.k, devices=mesh.devices.size)
    if a.stage == "text":
        return dict(out, **text_cost(a.v))
    x, t = synthetic(a.n, a.d, a.v, a.clusters)
    t0 = time.perf_counter()
    if a.stage == "argmax":
        xs, _ = mesh_lib.shard_rows(x, mesh)
        ids, _ = vocabulary_argmax(xs, jnp.asarray(t), mesh=mesh, block=a.block)
        jax.block_until_ready(ids)
        out["first_call_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        jax.block_until_ready(vocabulary_argmax(xs, jnp.asarray(t), mesh=mesh, block=a.block)[0])
        out["second_call_s"] = time.perf_counter() - t1
    elif a.stage == "kmeans":
        xs, mask = mesh_lib.shard_rows(x, mesh)
        res = kmeans(xs, mask, a.k, jax.random.key(0), n_init=a.n_init, max_iter=a.max_iter, mesh=mesh)
        out.update(seconds=time.perf_counter() - t0, inertia=res.inertia, iterations=res.iterations,
                   n_init=a.n_init, restart=res.restart)
    elif a.stage == "vote_realign":
        xs, mask = mesh_lib.shard_rows(x, mesh)
        seeds = kmeans_plus_plus(xs, mask, jax.random.key(0), k=a.k, mesh=mesh)
        _, labels, _, _ = lloyd(xs, mask, seeds, 1e-4, max_iter=20)
        jax.block_until_ready(labels)
        out["kmeans_20_steps_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        al = vote_realign(labels, xs, mask, jnp.asarray(t), k=a.k, rounds=3, mesh=mesh, block=a.block)
        jax.block_until_ready(al.structural)
        out.update(seconds=time.perf_counter() - t1, moved=[h["moved"] for h in al.history])
    elif a.stage == "silhouette":
        rows = sample_rows(a.n, sample_min=30000, sample_frac=0.0, sample_max=30000, seed=0)
        xs, mask = mesh_lib.shard_rows(x[rows], mesh)
        res = kmeans(xs, mask, a.k, jax.random.key(0), n_init=1, max_iter=300, mesh=mesh)
        out["kmeans_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        out["silhouette"] = silhouette(xs, mask, res.labels, a.k, mesh=mesh, block=a.block)
        out.update(seconds=time.perf_counter() - t1, sample=len(rows))
    out["total_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--stage", choices=STAGES)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--v", type=int, default=20_000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument("--n-init", type=int, default=3)
    p.add_argument("--max-iter", type=int, default=1000)
    p.add_argument("--block", type=int, default=1024)
    p.add_argument("--out", default=str(Path(__file__).with_name("results_scale.json")))
    a = p.parse_args()
    if a.stage:
        print(json.dumps(run_stage(a)), flush=True)
        return
    results = []
    for stage in STAGES:
        args = [sys.executable, __file__, "--stage", stage] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items() if k not in ("stage", "out")]
        line = subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results.append(json.loads(line))
        print(line, flush=True)
    Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
