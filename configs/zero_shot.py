"""adapt run configs/zero_shot.py:fashion_mnist --workdir runs/zero_shot

Zero-shot baseline. The argument after ':' is a pool preset (fashion_mnist, fashion_mnist_inverted,
textile, digits); without one, give a folder with `--set pool.path=DIR`.
"""
from configs.common import base_config


def get_config(arg: str = ""):
    config = base_config("zero_shot", arg)
    config.method_args.head = "auto"  # auto | cosine | class_map
    return config
