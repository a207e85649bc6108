"""adapt run configs/pseudolabel.py:fashion_mnist --workdir runs/grip --set method_args.prompt=visual

Pseudolabel prompt tuning (spec pseudolabel_prompt_tuning.md): strategy fpl | ifpl | grip, prompt
textual | visual | multimodal, setting ul | ssl, all chosen with `--set method_args.<key>=...`.
The argument after ':' is a pool preset (fashion_mnist, fashion_mnist_inverted, textile, digits);
without one, give a folder with `--set pool.path=DIR`.

Defaults depend on the model (resolved at run time, `methods/pseudolabel.py::resolve`, recorded in
metrics.json as `settings` and `model_family`): "auto" values become
- offline default model: visual prompts (head BN affine + rank-16 LoRA of the head conv), 10 epochs,
  1 warm-up epoch, batch 64, LR 0.4, and at least 30 optimizer steps an epoch, 300 a round
  (`min_steps_per_epoch`; chosen on a held-out train-split pool, experiments/pseudolabel/README.md), so
  that a 1,000-image pool is tuned about as much per round as a 10,000-image one;
- CLIP checkpoints: the spec's textual CoOp context, batch 16, 150 epochs, 5 warm-up epochs, no floor.
Spec values otherwise: SGD momentum 0.9, weight decay 0.1, LR 0.1 textual/visual and 0.01
multimodal (scaled x batch / 16 when the LR is auto), 16 context vectors, no augmentation, fresh
prompts each round. Any value set explicitly wins; `min_steps_per_epoch=0` = one pass an epoch.
"""
from configs.common import base_config


def get_config(arg: str = ""):
    config = base_config("pseudolabel", arg)
    a = config.method_args
    a.strategy = "grip"  # fpl (one round, K 16) | ifpl (10 rounds, K 16) | grip (10 rounds, K grows)
    a.prompt = "auto"  # auto (per model, see above) | textual | visual | multimodal
    a.setting = "ul"  # ul (no labels) | ssl (labels_per_class known labels per class, seed 0)
    a.labels_per_class = 2
    a.rounds = 10
    a.fixed_k = 16  # K of FPL and IFPL
    a.epochs = 0  # 0 = auto: 10 offline, 150 CLIP (the spec's)
    a.warmup_epochs = -1  # -1 = auto: 1 offline, 5 CLIP
    a.min_steps_per_epoch = -1  # floor on optimizer steps an epoch (extra passes over small pools); -1 = auto, 0 = none
    a.batch_size = 0  # 0 = auto: 64 offline visual, 128 offline textual/multimodal, 16 CLIP
    a.lr = 0.0  # 0 = the spec's LR for the prompt type x batch / 16
    a.weight_decay = 0.1
    a.n_ctx = 16  # context vectors of textual / multimodal prompts
    a.lora_rank = -1  # offline visual side: rank of a LoRA of the head conv (0 = BN affine only; -1 = auto: 16)
    a.center = True  # centre image features on the frozen pool mean (the centred zero-shot step)
    a.augment = "none"  # none (spec) | weak | strong
    a.warm_start = False  # carry prompts over rounds instead of re-initialising
    return config
