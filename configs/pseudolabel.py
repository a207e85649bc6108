"""adapt run configs/pseudolabel.py:fashion_mnist --workdir runs/grip --set method_args.prompt=visual

Pseudolabel prompt tuning (spec pseudolabel_prompt_tuning.md): strategy fpl | ifpl | grip, prompt
textual | visual | multimodal, setting ul | ssl, all chosen with `--set method_args.<key>=...`.
The argument after ':' is a pool preset (fashion_mnist, fashion_mnist_inverted, textile, digits);
without one, give a folder with `--set pool.path=DIR`.

Defaults are the spec's (SGD momentum 0.9, weight decay 0.1, batch 16, 150 epochs, 5 warm-up epochs,
LR 0.1 textual/visual and 0.01 multimodal, 16 context vectors, no augmentation, fresh prompts
each round). Full fidelity is hours of CPU; a shorter run (`--set method_args.epochs=...`) is a
declared deviation, recorded in metrics.json with the config.
"""
from configs.common import base_config


def get_config(arg: str = ""):
    config = base_config("pseudolabel", arg)
    a = config.method_args
    a.strategy = "grip"  # fpl (one round, K 16) | ifpl (10 rounds, K 16) | grip (10 rounds, K grows)
    a.prompt = "textual"  # textual | visual | multimodal
    a.setting = "ul"  # ul (no labels) | ssl (labels_per_class known labels per class, seed 0)
    a.labels_per_class = 2
    a.rounds = 10
    a.fixed_k = 16  # K of FPL and IFPL
    a.epochs = 150
    a.warmup_epochs = 5
    a.batch_size = 16
    a.lr = 0.0  # 0 = the spec's LR for the prompt type
    a.weight_decay = 0.1
    a.n_ctx = 16  # context vectors of textual / multimodal prompts
    a.lora_rank = 0  # offline model, visual side: rank of a LoRA update of the head conv (0 = BN affine only)
    a.center = True  # centre image features on the frozen pool mean (the centred zero-shot step)
    a.augment = "none"  # none (spec) | weak | strong
    a.warm_start = False  # carry prompts over rounds instead of re-initialising
    return config
