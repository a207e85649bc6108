"""Zero-shot Fashion-MNIST (test, 10,000 images) with the offline default model.

Images: 28x28 grey -> RGB -> the model's Preprocess (shorter side 256 bicubic, centre crop 224,
(x - 127) / 128), as given and inverted (255 - x). Embeddings and ImageNet probabilities are cached
in /tmp, so the 2 x 10k forward passes run once (about 6 min on 2 cores).
Class prompts: the single template "a photo of a {}." (the primary row, fixed in advance) and plain
names (second row). Heads:
  probability space  argmax_c  imagenet_probs . class_map(prompt_c)
  cosine, raw        argmax_c  x . t_c                   (x: L2-normalised pooled feature)
  cosine, centred    argmax_c  (x - mean_pool(x)) . t_c  (transductive: uses the pool's mean, no labels)

  PYTHONPATH=. nohup python experiments/offline_model/fashion_zero_shot.py > /tmp/fashion_zs.log 2>&1 &
"""
from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from adapt.data.presets import FASHION_MNIST_CLASSES, fashion_mnist_pool
from adapt.models.offline import load_offline_default
from adapt.models.preprocess import to_pixels

BATCH = 64


def embed_pool(model, invert: bool) -> dict[str, np.ndarray]:
    """{'x': (N, 1280) normalised features, 'probs': (N, 1000), 'y': (N,)}, cached as .npz in /tmp."""
    path = Path(f"/tmp/fashion_offline_{'inv' if invert else 'raw'}_{model.weights_hash[:12]}.npz")
    if path.is_file():
        return dict(np.load(path))
    pool = fashion_mnist_pool("test", invert=invert)
    graph, state = nnx.split(model)

    @jax.jit
    def forward(state, pixels):
        m = nnx.merge(graph, state)
        return m.encode_images(pixels), m.image_views(pixels)["imagenet_probs"]

    xs, ps, t0 = [], [], time.time()
    for start in range(0, len(pool), BATCH):
        idx = range(start, min(start + BATCH, len(pool)))
        pixels = np.zeros((BATCH, 224, 224, 3), np.float32)
        pixels[:len(idx)] = [to_pixels(pool.load(i), model.preprocess) for i in idx]
        x, p = forward(state, pixels)
        xs.append(np.asarray(x)[:len(idx)])
        ps.append(np.asarray(p)[:len(idx)])
        if start % (BATCH * 20) == 0:
            print(f"  {'inverted' if invert else 'as given'}: {start + len(idx)}/{len(pool)} "
                  f"({(start + len(idx)) / (time.time() - t0):.1f} img/s)", flush=True)
    out = {"x": np.concatenate(xs), "probs": np.concatenate(ps), "y": pool.labels()}
    np.savez(path, **out)
    return out


def accuracies(model, data, prompts) -> dict[str, float]:
    cmap = model.class_map(prompts)                  # (10, 1000)
    t = model.encode_texts(prompts)                  # (10, 1280)
    x, y = data["x"], data["y"]
    acc = lambda scores: float((scores.argmax(1) == y).mean())  # noqa: E731
    return {"prob": acc(data["probs"] @ cmap.T), "cos_raw": acc(x @ t.T),
            "cos_centred": acc((x - x.mean(0)) @ t.T)}


def main():
    model = load_offline_default()
    prompt_sets = {"template 'a photo of a {}.'": [f"a photo of a {n}." for n in FASHION_MNIST_CLASSES],
                   "plain names": list(FASHION_MNIST_CLASSES)}
    rows = {}
    for invert in (False, True):
        data = embed_pool(model, invert)
        for pname, prompts in prompt_sets.items():
            rows[(pname, invert)] = accuracies(model, data, prompts)
    print("\n| prompts | head | as given | inverted |\n|---|---|---|---|")
    for pname in prompt_sets:
        for head, label in (("prob", "probability-space class map"), ("cos_raw", "cosine, raw features"),
                            ("cos_centred", "cosine, pool-mean subtracted")):
            a, b = rows[(pname, False)][head], rows[(pname, True)][head]
            print(f"| {pname} | {label} | {100 * a:.1f}% | {100 * b:.1f}% |")
    print("\nclass maps (template): top-3 ImageNet classes per Fashion class")
    from adapt.models.imagenet_texts import load_imagenet_classes
    names = [c["name"] for c in load_imagenet_classes()]
    cmap = model.class_map(prompt_sets["template 'a photo of a {}.'"])
    for n, w in zip(FASHION_MNIST_CLASSES, cmap):
        top = np.argsort(-w)[:3]
        print(f"  {n}: " + ", ".join(f"{names[k]} {w[k]:.2f}" for k in top))


if __name__ == "__main__":
    main()
