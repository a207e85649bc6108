"""ZLaP's gain over the centred zero-shot at 2,000 vs 10,000 pool images (Fashion-MNIST test).

Reads the embeddings that experiments/offline_model/fashion_zero_shot.py caches in /tmp (run it
first), builds the offline model's grounded class embeddings for "a photo of a {}.", and runs
`methods.zlap.transductive` (defaults k 5, gamma 5, alpha 0.3) on the centred features of random
subsets. Labels are read only to print accuracies.

  PYTHONPATH=. python experiments/graph_methods/zlap_pool_size.py
"""
import glob

import jax.numpy as jnp
import numpy as np

from adapt.data.presets import FASHION_MNIST_CLASSES
from adapt.features.text import encode_classes
from adapt.models.offline import load_offline_default
from methods.zlap import transductive


def main():
    model = load_offline_default()
    weights = encode_classes(model, list(FASHION_MNIST_CLASSES), ["a photo of a {}."]).weights
    for pool in ("raw", "inv"):
        data = np.load(sorted(glob.glob(f"/tmp/fashion_offline_{pool}_*.npz"))[-1])
        for n, seed in ((2000, 0), (2000, 1), (10000, 0)):
            idx = np.random.default_rng(seed).permutation(len(data["y"]))[:n]
            x, y = data["x"][idx], data["y"][idx]
            xc = x - x.mean(0)
            xc /= np.linalg.norm(xc, axis=1, keepdims=True)
            base = (np.argmax(xc @ weights.T, 1) == y).mean()
            state = transductive(jnp.asarray(xc), jnp.ones(n, bool), jnp.asarray(weights))[0]
            acc = (np.asarray(state.z_image)[:n].argmax(1) == y).mean()
            print(f"{pool} n={n} subset seed {seed}: centred {100 * base:.2f}  zlap {100 * acc:.2f}  "
                  f"gain {100 * (acc - base):+.2f}")


if __name__ == "__main__":
    main()
