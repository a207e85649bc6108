"""adapt run configs/zlap.py:fashion_mnist --workdir runs/zlap

ZLaP (Stojnic et al., CVPR 2024): label propagation over a kNN graph of the pool images and the
class nodes (spec label_propagation.md A). The argument after ':' is a pool preset
(fashion_mnist, fashion_mnist_inverted, textile, digits); without one, give a folder with
`--set pool.path=DIR`.

Hyperparameters are the official defaults for text classifiers (k 5, gamma 5, alpha 0.3), the
setting OFFLINE_ASSETS.md gives calibration numbers for; none was chosen on test labels. The pool is
centred on its mean before the graph is built (the transductive step of the centred zero-shot
baseline); `center=False` gives the official raw cosine graph.
"""
from configs.common import base_config


def get_config(arg: str = ""):
    config = base_config("zlap", arg)
    a = config.method_args
    a.k = 5  # neighbours, the node itself included (k - 1 image edges, min(k, C) class edges)
    a.gamma = 5.0  # power on the image -> class edge weights
    a.alpha = 0.3  # propagation strength
    a.tol = 1e-6  # series truncation bound (or CG relative tolerance)
    a.solver = "series"  # series | cg
    a.scale_sim = False  # min-max scaling of kept similarities (the official proxy classifiers)
    a.center = True  # CL2N: centre the pool on its mean before the graph
    a.block = 1024  # rows per kNN tile
    return config
