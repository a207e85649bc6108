"""A visual-GRIP -> TransCLIP / ZLaP chain on the offline default model, with the tuned embeddings
computed from the cached head-conv inputs instead of a second pass of the CNN.

    python experiments/transductive/chain_cached.py GRIP_RUN_DIR [--set pool.split=train ...]

What `adapt run METHOD --set init.from=GRIP_RUN_DIR` does, with one shortcut: visual GRIP on the
offline model tunes only the head (BatchNorm affine + the merged LoRA head conv), so the tuned
embedding of an image is relu6(BN'(b @ W')) averaged and normalised, b the cached output of the
last MBConv block (the GRIP run cached it). The engine path embeds every image through the whole
CNN again: on the shared box (load average 30+) that ran over an hour for 1,000 images. The
shortcut is checked here against the tuned model's own `encode_images` on 8 images (max abs
difference printed) and by the agreement of the GRIP head on these features with the GRIP run's
predictions.csv. The methods then run through `make(config).run` with `prior_probs` = the GRIP
head's probabilities, exactly as the engine passes them (adapt/output/chain.py, no pool_probs.npz
in that run folder).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's methods/
from adapt import registry
from adapt.core import mesh as mesh_lib
from adapt.core import ops
from adapt.core.config import apply_overrides, load_config
from adapt.core.job import Timer
from adapt.core.method import MethodInputs
from adapt.data import resolve_classes
from adapt.features import setup
from adapt.features.text import encode_classes
from adapt.models.preprocess import to_pixels
from adapt.output import artifact
from adapt.tuning import offline_head


def tuned_features(model, blocks):
    """(N, h, w, 320) cached block outputs -> (N, 1280) unit embeddings of the tuned model."""
    z = jnp.dot(jnp.asarray(blocks), model.image.conv_head[...], precision=jax.lax.Precision.HIGHEST)
    f = offline_head.pooled_features(offline_head.bn_stats(model), offline_head.head_affine(model), z)
    return np.asarray(f)


def run_method(name, overrides, x, prior, weights, scale, texts, seed=0):
    config = apply_overrides(load_config(f"configs/{name}.py:fashion_mnist"), overrides)
    mesh = mesh_lib.make_mesh()
    xs, mask = mesh_lib.shard_rows(x, mesh)
    inputs = MethodInputs(xs, mask, mesh_lib.replicate(weights, mesh), scale, {"embedding": xs}, texts,
                          mesh, jax.random.key(seed), prior_probs=prior)
    return registry.make_method(config).run(inputs).predictions


def centred_zero_shot(x, weights):
    mesh = mesh_lib.make_mesh()
    xs, mask = mesh_lib.shard_rows(x, mesh)
    xc, _ = ops.centered(xs, mask)
    return np.argmax(np.asarray(xc)[:len(x)] @ weights.T, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("grip")
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    config = apply_overrides(load_config("configs/transclip.py:fashion_mnist"), a.set)
    start = setup.start_job(config, Timer(), check=lambda pool: resolve_classes(pool))
    model, pool, mesh = start.model, start.pool, start.mesh
    rows = setup.embed_job_pool(model, pool, mesh, start.embed, progress=False)  # frozen (cached)
    n = len(rows.kept)
    frozen = np.asarray(jax.device_get(rows.x))[:n]
    labels = np.asarray(start.checked.labels)[rows.kept]
    texts = encode_classes(model, start.checked.names, list(config.prompts.templates))
    weights, scale = np.asarray(texts.weights, np.float32), float(model.logit_scale)
    blocks, kept = offline_head.cache_head_inputs(model, pool, mesh, what="block_output",
                                                  cache_root=start.embed.cache_root, progress=False)
    assert np.array_equal(kept, rows.kept)
    clf = artifact.load(Path(a.grip) / "classifier")
    artifact.install_tuned(model, clf.meta.get("model_setup") or {}, clf.params)
    x = tuned_features(model, blocks)
    pix = np.stack([to_pixels(pool.load(int(i)), model.preprocess) for i in rows.kept[:8]])
    print(f"shortcut vs encode_images on 8 images: max abs diff "
          f"{np.abs(np.asarray(model.encode_images(jnp.asarray(pix))) - x[:8]).max():.2e}")
    prior = clf.head.probs(x)
    with open(Path(a.grip) / "predictions.csv", newline="") as f:
        predicted = {r["path"]: r["predicted_class"] for r in csv.DictReader(f)}
    items = [pool.location(int(i)) for i in rows.kept]
    agree = np.mean([clf.class_names[p] == predicted[i] for p, i in zip(prior.argmax(1), items)])
    print(f"GRIP head on these features vs the GRIP run's predictions: {100 * agree:.2f}% agree")
    acc = lambda p: 100 * np.mean(p == labels)  # noqa: E731
    print("| features | centred zero-shot | GRIP (its head) | TransCLIP | ZLaP |")
    print("|---|---|---|---|---|")
    print(f"| frozen (each method alone) | {acc(centred_zero_shot(frozen, weights)):.2f} | - | "
          f"{acc(run_method('transclip', a.set, frozen, None, weights, scale, texts)):.2f} | "
          f"{acc(run_method('zlap', a.set, frozen, None, weights, scale, texts)):.2f} |")
    print(f"| GRIP-tuned, GRIP prior (chain) | {acc(centred_zero_shot(x, weights)):.2f} | "
          f"{acc(prior.argmax(1)):.2f} | "
          f"{acc(run_method('transclip', a.set, x, prior, weights, scale, texts)):.2f} | "
          f"{acc(run_method('zlap', a.set, x, prior, weights, scale, texts)):.2f} |")
    print(f"| GRIP-tuned, zero-shot prior | - | - | "
          f"{acc(run_method('transclip', a.set, x, None, weights, scale, texts)):.2f} | "
          f"{acc(run_method('zlap', a.set, x, None, weights, scale, texts)):.2f} |")


if __name__ == "__main__":
    main()
