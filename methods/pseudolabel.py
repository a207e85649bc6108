"""Pseudolabel prompt tuning (Menghini et al., "Enhancing CLIP with CLIP"): FPL, IFPL, GRIP.

Paper: Menghini, Delworth, Bach, NeurIPS 2023 (official code:
BatsResearch/menghini-enhanceCLIPwithCLIP-code on GitHub).
Rounds alternate labelling and training:
round 0 labels with the zero-shot classifier (centred when `center`), each round trains freshly
initialised prompts (seeded; `warm_start` carries them over) on the clean per-class top-K, then
relabels the pool with them. Loss: plain CE on logit_scale * cos; SSL adds the few labelled images
with weight |U_pl| / |L| (square root for multimodal). Last epoch of the last round is reported.

Prompt types map onto the model (adapt/tuning/prompted.py): CLIP gets CoOp context / VPT tokens; the
offline default gets MiniLM context vectors / the head BatchNorm's affine.

Defaults per model family (`resolve`; "auto" = prompt "auto", epochs / batch_size 0, warmup_epochs /
lora_rank / min_steps_per_epoch -1, lr 0): the offline default gets visual prompts (head BN affine +
rank-16 LoRA: its grounded class names leave textual context almost nothing to move) on the declared
short schedule (10 epochs, 1 warm-up, batch 64) with a floor of 30 optimizer steps per epoch, so at
least 300 per round (`adapt.tuning.loop.plan_epochs`: small pools get as many updates per round as
large ones);
CLIP-like models get the spec's textual CoOp context, 150 epochs, 5 warm-up, batch 16, no floor.
An auto LR is the spec's LR for the prompt type scaled linearly with the batch (x batch / 16).
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from adapt.core.distributed import to_host
from adapt.core.method import TRANSDUCTIVE, EmbedOptions, Method, MethodInputs, MethodOutputs
from adapt.core.settings import check_choice, parse_method_args
from adapt.tuning import loop as tuning
from adapt.tuning import pseudolabels
from adapt.tuning import rounds as tuning_rounds
from adapt.tuning.prompted import PROMPTS, make_prompted, model_family

DESCRIPTION = "Pseudolabel prompt tuning: FPL / IFPL / GRIP with textual, visual or multimodal prompts"
STRATEGIES = ("fpl", "ifpl", "grip")
LABEL_SETTINGS = ("ul", "ssl")
OFFLINE_MIN_STEPS_PER_EPOCH = 30  # 300 a round; chosen on a held-out train-split pool: experiments/pseudolabel/README.md
FAMILY_DEFAULTS = {  # what "auto" becomes per model family (see the module docstring)
    "offline": dict(prompt="visual", epochs=10, warmup_epochs=1, min_steps_per_epoch=OFFLINE_MIN_STEPS_PER_EPOCH),
    "clip": dict(prompt="textual", epochs=150, warmup_epochs=5, min_steps_per_epoch=0),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """method_args of pseudolabel; values and their meaning: configs/pseudolabel.py."""

    strategy: str
    prompt: str
    setting: str
    labels_per_class: int
    rounds: int
    fixed_k: int
    epochs: int
    warmup_epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    n_ctx: int
    lora_rank: int
    center: bool
    augment: str
    warm_start: bool
    min_steps_per_epoch: int

    def __post_init__(self):
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("prompt", self.prompt, PROMPTS + ("auto",))
        check_choice("setting", self.setting, LABEL_SETTINGS)


def resolve(s: Settings, family: str) -> Settings:
    """`s` with every "auto" value replaced by the model family's default (module docstring)."""
    d = FAMILY_DEFAULTS[family]
    prompt = d["prompt"] if s.prompt == "auto" else s.prompt
    batch = s.batch_size or (16 if family == "clip" else 64 if prompt == "visual" else 128)
    return dataclasses.replace(
        s, prompt=prompt, batch_size=batch, epochs=s.epochs or d["epochs"],
        warmup_epochs=d["warmup_epochs"] if s.warmup_epochs < 0 else s.warmup_epochs,
        lr=s.lr or _default_lr(prompt) * batch / 16,
        lora_rank=(16 if family == "offline" and prompt == "visual" else 0) if s.lora_rank < 0 else s.lora_rank,
        min_steps_per_epoch=d["min_steps_per_epoch"] if s.min_steps_per_epoch < 0 else s.min_steps_per_epoch)


def few_labels(config, labels: np.ndarray) -> np.ndarray | None:
    """SSL: `labels_per_class` known labels per class (seed 0), -1 elsewhere; UL: None."""
    args = config.method_args
    if args.setting != "ssl":
        return None
    rng = np.random.default_rng(0)
    out = np.full(len(labels), -1, np.int64)
    for c in np.unique(labels[labels >= 0]):
        pick = rng.choice(np.flatnonzero(labels == c), int(args.labels_per_class), replace=False)
        out[pick] = c
    return out


def labelled_weight(n_pseudo: int, n_labelled: int, prompt: str) -> float:
    """SSL weight of the labelled CE term: |U_pl| / |L|, its square root for multimodal prompts."""
    ratio = n_pseudo / max(n_labelled, 1)
    return float(np.sqrt(ratio)) if prompt == "multimodal" else float(ratio)


def zero_shot_probs(prompted, x: np.ndarray, weights: np.ndarray, scale: float) -> np.ndarray:
    """Round-0 probabilities: softmax(s cos(x [- mean], T)) over the frozen embeddings (n, C)."""
    if prompted.center is not None:
        x = x - np.asarray(prompted.center)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    z = scale * x @ weights.T
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def pseudolabel_loss(prompted, augment: str):
    """loss(params, batch, key): CE of s cos(f(x), T) against batch["y"], rows weighted by batch["w"]."""
    def loss_fn(p, b, key):
        logits = prompted.logits(p, b, key, augment)
        loss, accuracy = tuning_rounds.masked_cross_entropy(logits, b["y"], b["mask"], weights=b["w"])
        return loss, {"train_accuracy": accuracy}
    return loss_fn


def round_data(prompted, train_indices, train_labels, known, labels, known_weight: float) -> dict:
    """Training rows of one round: the pseudo-labelled rows (weight 1), then the rows `known` (SSL)
    with their `labels` and weight `known_weight`."""
    idx = np.concatenate([train_indices, known])
    data = {k: v[idx] for k, v in prompted.data.items()}
    data["y"] = np.concatenate([train_labels, labels[known] if len(known) else []]).astype(np.int32)
    data["w"] = np.concatenate([np.ones(len(train_indices)), np.full(len(known), known_weight)]).astype(np.float32)
    return data


def train_round(prompted, s: Settings, inputs: MethodInputs, params, probs, r: int, k: int, known,
                checkpoints, n_rounds: int):
    """Round r (0-based): select the clean per-class top-k of `probs`, fit, relabel the pool.
    Returns (params, probs (n, C), the round's record)."""
    sel = pseudolabels.per_class_topk(probs, k)
    (tr_idx, tr_lab), (va_idx, _) = pseudolabels.split_train_val(sel.indices, sel.labels, k)
    data = round_data(prompted, tr_idx, tr_lab, known, inputs.labels,
                      labelled_weight(len(tr_idx), len(known), s.prompt))
    if params is None or not s.warm_start:
        params = prompted.init(inputs.seed)
    plan = tuning.plan_epochs(len(data["y"]), s.batch_size, s.epochs, s.warmup_epochs,
                              s.min_steps_per_epoch)
    opt = tuning.sgd(s.lr, plan.epochs, plan.steps_per_epoch, warmup_epochs=plan.warmup_epochs,
                     weight_decay=s.weight_decay)
    res = tuning_rounds.fit_round(pseudolabel_loss(prompted, s.augment), params, data, inputs,
                                  name=f"round_{r:02d}", checkpoints=checkpoints, optimizer=opt,
                                  epochs=plan.epochs, batch_size=s.batch_size, passes=plan.passes,
                                  key=jax.random.fold_in(inputs.key, r),
                                  desc=f"{s.strategy} {s.prompt} round {r + 1}/{n_rounds} (K={k})")
    probs = prompted.probs(res.params)
    record = tuning_rounds.round_record(r + 1, k, sel.indices, sel.labels, probs.argmax(1), res.history,
                                        resumed_epochs=res.resumed_from, counts=sel.counts.tolist(),
                                        fallback=sel.fallback, n_train=len(tr_idx), n_val=len(va_idx),
                                        schedule=plan.as_dict())
    return res.params, probs, record


def make(config) -> Method:
    asked = parse_method_args(Settings, config.method_args, "pseudolabel")
    fingerprint = tuning_rounds.run_fingerprint(config)

    def run(inputs: MethodInputs) -> MethodOutputs:
        family = model_family(inputs.model)
        s = resolve(asked, family)
        n = int(to_host(inputs.mask).sum())
        c = len(inputs.class_names)
        embed = inputs.embed or EmbedOptions()
        prompted = make_prompted(inputs, s.prompt, n_ctx=s.n_ctx, center=s.center, lora_rank=s.lora_rank,
                                 embed_kwargs=dict(batch_size=embed.batch_size, cache_root=embed.cache_root),
                                 progress=inputs.progress)
        ks = pseudolabels.schedule(s.strategy, n, c, s.rounds, s.fixed_k)
        probs = zero_shot_probs(prompted, to_host(inputs.x)[:n], to_host(inputs.class_weights), prompted.scale)
        known = np.flatnonzero(inputs.labels >= 0) if inputs.labels is not None else np.zeros(0, np.int64)
        checkpoints = tuning_rounds.checkpoint_root(inputs.workdir, fingerprint)
        params, rounds = None, []
        for r, k in enumerate(ks):
            params, probs, record = train_round(prompted, s, inputs, params, probs, r, k, known, checkpoints,
                                                len(ks))
            rounds.append(record)
        tuned = tuning_rounds.export_tuned(prompted, params)
        metrics = dict(strategy=s.strategy, prompt=s.prompt, paradigm=s.setting,
                       trainable_parameters=tuning.n_params(params), epochs=s.epochs,
                       batch_size=s.batch_size, n_labelled=int(len(known)), model_family=family,
                       settings=dataclasses.asdict(s),
                       schedule=dict(rule="min_steps_per_epoch" if s.min_steps_per_epoch else "epochs",
                                     epochs=s.epochs, min_steps_per_epoch=s.min_steps_per_epoch,
                                     steps=[rd["schedule"]["steps"] for rd in rounds],
                                     raised=[rd["schedule"]["rule"] == "min_steps_per_epoch" for rd in rounds]),
                       per_round=[{k_: v for k_, v in rd.items() if k_ in ("round", "k", "counts", "fallback",
                                                                          "n_train", "n_val", "resumed_epochs",
                                                                          "schedule")}
                                  | {"final_loss": rd["history"][-1]["loss"]} for rd in rounds],
                       predictions_setting=TRANSDUCTIVE,
                       head=f"{s.prompt} prompts: class weights (C, D), {tuned.parameters_note()}")
        return tuning_rounds.tuned_outputs(probs, tuned, metrics, rounds)

    return Method("pseudolabel", DESCRIPTION, run, settings=asked, few_labels=lambda labels: few_labels(config, labels))


def _default_lr(prompt: str) -> float:
    return 0.01 if prompt == "multimodal" else 0.1
