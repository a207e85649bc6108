"""Pieces every method config shares: model, pool, classes, prompts, embedding, run.

A method config is `base_config(method, arg)` plus its own `method_args`. `arg` is a pool preset
("fashion_mnist", "textile", "digits") or empty for a folder given with `--set pool.path=DIR`.
"""
from __future__ import annotations

import ml_collections

from adapt.data import make_pool_config

PRESETS = {
    "": dict(kind="folder"),
    "folder": dict(kind="folder"),
    "fashion_mnist": dict(kind="fashion_mnist", split="test"),
    "fashion_mnist_inverted": dict(kind="fashion_mnist", split="test", invert=True),
    "textile": dict(kind="textile"),
    "digits": dict(kind="digits"),
}


def base_config(method: str, arg: str = "") -> ml_collections.ConfigDict:
    preset, _, rest = (arg or "").partition(",")
    if preset not in PRESETS:
        raise ValueError(f"unknown pool preset {preset!r}; choose from {sorted(p for p in PRESETS if p)}")
    c = ml_collections.ConfigDict()
    c.method = method
    c.seed = 0
    c.runlocal = False  # shrinks any job to laptop size (pool.limit 256 unless set)

    c.init = ml_collections.ConfigDict()
    # a finished classification run folder (or its classifier/ folder) to start from: its tuned model
    # embeds the pool, its pool probabilities are the prior of methods that have one; "" = none
    c.init["from"] = ""

    c.model = ml_collections.ConfigDict()
    c.model.path = ""  # a CLIP checkpoint folder; empty = the embedded offline default model
    c.model.kind = "auto"  # auto | offline | clip | openclip | metaclip2 | siglip | siglip2 | align
    c.model.arch = ""  # an OpenCLIP state dict's architecture (kind openclip), e.g. ViT-B-32, ViT-B-32-quickgelu
    c.model.grounding = "wordnet"  # offline model: tie class names to ImageNet via WordNet | none

    c.pool = make_pool_config(**PRESETS[preset])

    c.classes = ml_collections.ConfigDict()
    c.classes.names = []  # explicit class names, in class-id order
    c.classes.file = ""  # one class name per line
    c.classes.descriptions = ""  # CuPL JSON: class name -> list of sentences
    c.classes.synonyms = "none"  # none | frequent | ensemble: REAL-Prompt names (adapt/features/synonyms.py)

    c.prompts = ml_collections.ConfigDict()
    c.prompts.templates = ["a photo of a {}."]
    c.prompts.beta = -1.0  # weight of descriptions vs templates; -1 = uniform over all prompts
    c.prompts.template_set = ""  # "" = prompts.templates | clip80: the 80 CLIP ImageNet templates
    c.prompts.weighting = "uniform"  # uniform | zpe: templates weighted on the pool (adapt/features/zpe.py)
    c.prompts.zpe_top = 0  # zpe: 0 = softmax weights over every template; n = uniform over the n best
    # PerceptionCLIP (adapt/features/perception.py): none | infer (classify under the inferred context)
    # | marginal (sum over contexts); its p(y|x) is the method's prior (zero_shot returns it)
    c.prompts.context = "none"
    c.prompts.context_attributes = ["orientation", "background", "illumination", "quality", "style"]
    c.prompts.context_infer = "class"  # p(z|x) from logsumexp over classes (class) | "a photo of an object, z" (pure)
    c.prompts.context_temperature = 1.0  # tau of p(z|x)

    # the rule that turns the method's probabilities into predictions (adapt/output/decision.py)
    c.decision = ml_collections.ConfigDict()
    c.decision.rule = "argmax"  # argmax | fudd (FuDD's differential descriptions) | loki (Frechet mean)
    c.decision.loki_metric = "auto"  # auto | wordnet (hypernym path) | text (class embeddings)
    c.decision.loki_classes = ""  # extra candidate classes without a prompt: a file or "a,b,c"
    c.decision.fudd_k = 3  # FuDD: ambiguous classes per image (top-k of the method's probabilities)
    c.decision.fudd_descriptions = "wordnet"  # wordnet | a pair file (python -m adapt.realistic.fudd_pairs)
    c.decision.fudd_grounded = True  # offline model: descriptions keep their class's WordNet grounding

    c.embed = ml_collections.ConfigDict()
    c.embed.batch_size = 64
    c.embed.chunk_size = 1024  # images per cache chunk (the unit of resume)
    c.embed.cache_dir = ""  # default: $ADAPT_CACHE or ~/.cache/adapt
    c.embed.num_devices = 0  # 0 = every device
    c.embed.workers = 4  # decoding threads

    # the method's config sets every field of its methods/<method>.py `Settings`, each value with its
    # meaning: the one place they are set (checked by adapt.core.settings.parse_method_args)
    c.method_args = ml_collections.ConfigDict()
    return c
