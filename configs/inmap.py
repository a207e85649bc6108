"""adapt run configs/inmap.py:fashion_mnist --workdir runs/inmap

InMaP (Qian et al., NeurIPS 2023; official code idstcv/InMaP main.py): image-space class proxies
learned by full-batch gradient steps on the pool against Sinkhorn-balanced text pseudo-labels. The
argument after ':' is a pool preset (fashion_mnist, fashion_mnist_inverted, textile, digits);
without one, give a folder with `--set pool.path=DIR`. Every value below is the official default
(main.py's argparse); `sinkhorn_iters=0` gives the official first variant, "without Sinkhorn"
(plain softmax pseudo-labels).
"""
from configs.common import base_config


def get_config(arg: str = ""):
    config = base_config("inmap", arg)
    a = config.method_args
    a.tau_t = 0.01  # temperature of the text pseudo-labels softmax(x . t / tau_t)
    a.tau_i = 0.04  # temperature of the proxy classifier softmax(x . w / tau_i) (and of the head)
    a.lr = 10.0  # initial step; halved whenever the gradient norm rises; step = lr / (n tau_i)
    a.iters = 2000  # full-batch gradient steps on the proxies (the last iterate is kept)
    a.sinkhorn_iters = 20  # Sinkhorn balancing iterations (0: no balancing)
    a.alpha = 0.6  # pseudo-label rows with max > alpha are hardened to one-hot
    a.gamma = 0.0  # class marginal of the balancing: 0 uniform, > 0 (column mass)^gamma
    a.center = False  # centre the pool on its mean first (CL2N); the official code uses raw features
    a.block = 256  # pool rows per partial sum (fixed blocks: the same sums on any device count)
    return config
