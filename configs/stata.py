"""adapt run configs/stata.py:fashion_mnist --workdir runs/stata

StatA (Zanella et al., CVPR 2025; methods/stata.py): TransCLIP-style transduction whose class means
and per-class diagonal variances are anchored on the class embeddings (beta_k = n_k / (alpha + n_k)),
so classes absent from the pool stay near their text statistics instead of capturing images. The
argument after ':' is a pool preset (fashion_mnist, fashion_mnist_inverted, textile, digits);
without one, give a folder with `--set pool.path=DIR`. Every value below is the official one except
`center` (CL2N; official: features as given), set as for TransCLIP (experiments/transclip/README.md).
"""
from configs.common import base_config


def get_config(arg: str = ""):
    config = base_config("stata", arg)
    a = config.method_args
    a.center = True  # CL2N: centre the pool on its mean first (official: False, features as given)
    a.prior_scale = 100.0  # yhat = softmax(prior_scale * x t^T) (official 100)
    a.k = 3  # neighbours per image in the raw-cosine kNN graph (self excluded)
    a.iterations = 10  # mean / variance updates; iterations + 1 rounds of 5 parallel z updates
    a.lam_prior = 1.0  # lambda_y_hat on log yhat (official 1)
    a.lam_laplacian = 1.0  # lambda_laplacian on the graph term (official 1)
    a.alpha = 1.0  # anchor strength: beta_k = n_k / (alpha + n_k), n_k hard counts (official 1)
    a.block = 1024  # rows per kNN tile
    return config
