"""adapt run teen:fashion_mnist --workdir runs/teen

TEEN (Wang et al., NeurIPS 2023; methods/teen.py): the image prototypes of `labels_per_class` known
labels per class (the few-label setting; the pool must have labels) calibrated toward the zero-shot
class embeddings (`base=text`) or toward the pool means the zero-shot classifier implies
(`base=pool`). `--set method_args.lam=1.0` gives plain few-shot prototypes.
The argument after ':' is a pool preset (fashion_mnist, fashion_mnist_inverted, textile, digits);
without one, give a folder with `--set pool.path=DIR`.
"""
from configs.common import base_config


def get_config(arg: str = ""):
    config = base_config("teen", arg)
    a = config.method_args
    a.labels_per_class = 4  # known labels per class (seed 0, the pseudolabel SSL draw)
    a.base = "text"  # text (zero-shot class embeddings) | pool (zero-shot-weighted pool means)
    a.lam = 0.5  # weight of the few-shot prototype (TEEN's default); 1 = plain few-shot prototypes
    a.tau = 16.0  # temperature of the softmax over cosine similarities to the bases (TEEN's default)
    a.center = True  # CL2N: centre the pool on its mean first
    return config
