"""adapt run configs/zlap.py:fashion_mnist --workdir runs/zlap

ZLaP (Stojnic et al., CVPR 2024): label propagation over a kNN graph of the pool images and the
class nodes (spec label_propagation.md A). The argument after ':' is a pool preset
(fashion_mnist, fashion_mnist_inverted, textile, digits); without one, give a folder with
`--set pool.path=DIR`.

Class nodes: image-space proxies ("rectified": one soft assignment of the pool on the class
embeddings, m_c = normalize(sum_i softmax_c(s x_i . t_c) x_i)) with the spec's proxy-classifier row
(k 10, gamma 3, alpha 0.3, min-max scaling). This replaced the text-classifier row (k 5, gamma 5,
`classifier=text --set method_args.k=5 --set method_args.gamma=5 --set method_args.scale_sim=False`)
after a comparison on a held-out pool (10,000 Fashion-MNIST train images: +14.9 / +11.0 points over
centred zero-shot against +4.2 / +3.8; experiments/graph_methods/README.md section 1c); no value
was tuned. The pool is centred on its mean before the graph is built (the transductive step of the
centred zero-shot baseline); `center=False` gives the official raw cosine graph.
"""
from configs.common import base_config


def get_config(arg: str = ""):
    config = base_config("zlap", arg)
    a = config.method_args
    a.classifier = "rectified"  # rectified (image-space proxies) | text (the class embeddings)
    a.k = 10  # neighbours, the node itself included (k - 1 image edges, min(k, C) class edges)
    a.gamma = 3.0  # power on the image -> class edge weights
    a.alpha = 0.3  # propagation strength
    a.scale_sim = True  # min-max scaling of kept similarities (the official proxy classifiers)
    a.tol = 1e-6  # series truncation bound (or CG relative tolerance)
    a.solver = "series"  # series | cg
    a.center = True  # CL2N: centre the pool on its mean before the graph (not with classifier=text)
    a.block = 1024  # rows per kNN tile
    return config
