"""Two checks of the grounded class map on Fashion-MNIST test (labels read only to score).

1. Colliding names: T-shirt/top and Shirt both ground to {jersey}. Centred cosine zero-shot with the
   grounded map vs the same map where the two colliding classes fall back to the plain map.
2. The pseudolabel calibration: the top 10% / 20% per class of the centred zero-shot probabilities
   (logit scale 35) as labels, a logistic regression on the centred features, scored on the pool.

Reads the embeddings experiments/offline_model/fashion_zero_shot.py caches in /tmp (run it first).

  PYTHONPATH=. python experiments/offline_model/grounding_fashion_checks.py
"""
import glob

import numpy as np
from sklearn.linear_model import LogisticRegression

from adapt.data.presets import FASHION_MNIST_CLASSES
from adapt.models.offline import LOGIT_SCALE, load_offline_default


def centred(x):
    xc = x - x.mean(0)
    return xc / np.linalg.norm(xc, axis=1, keepdims=True)


def main():
    names = list(FASHION_MNIST_CLASSES)
    model = load_offline_default()
    prompts = [f"a photo of a {n}." for n in names]
    rows = np.asarray(model.imagenet_class_embeddings())
    grounded, plain = model.class_map(prompts, names), model.class_map(prompts)
    fallback = grounded.copy()
    fallback[[0, 6]] = plain[[0, 6]]  # T-shirt/top, Shirt
    for pool in ("raw", "inv"):
        data = np.load(sorted(glob.glob(f"/tmp/fashion_offline_{pool}_*.npz"))[-1])
        xc, y = centred(data["x"]), data["y"]
        for tag, w in (("grounded", grounded), ("collisions -> plain map", fallback)):
            t = w @ rows
            t /= np.linalg.norm(t, axis=1, keepdims=True)
            print(f"{pool} {tag}: centred zero-shot {100 * (np.argmax(xc @ t.T, 1) == y).mean():.2f}%")
        t = grounded @ rows
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        s = LOGIT_SCALE * xc @ t.T
        p = np.exp(s - s.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        for frac in (0.1, 0.2):
            k = int(frac * len(y) / len(names))
            idx = np.concatenate([np.argsort(-p[:, c])[:k] for c in range(len(names))])
            lab = np.repeat(np.arange(len(names)), k)
            clf = LogisticRegression(C=1.0, max_iter=300).fit(xc[idx], lab)
            print(f"{pool} top {frac:.0%} per class: pseudo-labels {100 * (y[idx] == lab).mean():.1f}% right, "
                  f"logistic regression on the pool {100 * (clf.predict(xc) == y).mean():.2f}%")


if __name__ == "__main__":
    main()
