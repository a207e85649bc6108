"""adapt run gda:fashion_mnist --workdir runs/gda

GDA (Wang et al., ICLR 2024; methods/gda.py): a shared-covariance Gaussian discriminant on the image
features, its logits added to the zero-shot logits with weight alpha. `setting=ul` (default) fits it
by EM from the zero-shot probabilities on the unlabeled pool; `setting=ssl` on `labels_per_class`
known labels per class (`--set method_args.setting=ssl --set method_args.labels_per_class=4`).
The argument after ':' is a pool preset (fashion_mnist, fashion_mnist_inverted, textile, digits);
without one, give a folder with `--set pool.path=DIR`.
"""
from configs.common import base_config


def get_config(arg: str = ""):
    config = base_config("gda", arg)
    a = config.method_args
    a.setting = "ul"  # ul (EM from the zero-shot probabilities, no labels) | ssl (few known labels)
    a.labels_per_class = 4  # ssl: known labels per class (seed 0, the pseudolabel SSL draw)
    a.iterations = 10  # ul: EM iterations (M step + E step); the last one is reported
    a.alpha = 0.0  # weight of the GDA logits; 0 = the label-free balance rule (methods/gda.py)
    a.center = True  # CL2N: centre the pool on its mean first (official: False, features as given)
    return config
