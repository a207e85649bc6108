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
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adapt.tuning import pseudolabels

from adapt.tuning import loop as tuning
from adapt.core.distributed import to_host
from adapt.core.method import TRANSDUCTIVE, Method, MethodInputs, MethodOutputs
from adapt.tuning.prompted import PROMPTS, make_prompted

DESCRIPTION = "Pseudolabel prompt tuning: FPL / IFPL / GRIP with textual, visual or multimodal prompts"
SETTINGS = ("ul", "ssl")


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


def _check(args):
    if args.strategy not in ("fpl", "ifpl", "grip"):
        raise ValueError(f"method_args.strategy must be fpl, ifpl or grip, not {args.strategy!r}")
    if args.prompt not in PROMPTS:
        raise ValueError(f"method_args.prompt must be one of {PROMPTS}, not {args.prompt!r}")
    if args.setting not in SETTINGS:
        raise ValueError(f"method_args.setting must be one of {SETTINGS}, not {args.setting!r}")


def zero_shot_probs(prompted, x: np.ndarray, weights: np.ndarray, scale: float) -> np.ndarray:
    """Round-0 probabilities: softmax(s cos(x [- mean], T)) over the frozen embeddings (n, C)."""
    if prompted.center is not None:
        x = x - np.asarray(prompted.center)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    z = scale * x @ weights.T
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def make(config) -> Method:
    args = config.method_args
    _check(args)
    fingerprint = hashlib.sha256(config.to_json().encode()).hexdigest()[:12]

    def run(inputs: MethodInputs) -> MethodOutputs:
        n = int(to_host(inputs.mask).sum())
        c = len(inputs.class_names)
        prompted = make_prompted(inputs, args.prompt, n_ctx=int(args.n_ctx), center=bool(args.center),
                                 lora_rank=int(args.lora_rank),
                                 embed_kwargs=dict(batch_size=config.embed.batch_size,
                                                   cache_root=config.embed.cache_dir or None),
                                 progress=inputs.progress)
        ks = pseudolabels.schedule(args.strategy, n, c, int(args.rounds), int(args.fixed_k))
        probs = zero_shot_probs(prompted, to_host(inputs.x)[:n], to_host(inputs.class_weights), prompted.scale)
        known = np.flatnonzero(inputs.labels >= 0) if inputs.labels is not None else np.zeros(0, np.int64)
        ckpt_root = Path(inputs.workdir) / "checkpoints" / fingerprint if inputs.workdir else None
        params, rounds = None, []
        for r, k in enumerate(ks):
            sel = pseudolabels.per_class_topk(probs, k)
            (tr_idx, tr_lab), (va_idx, va_lab) = pseudolabels.split_train_val(sel.indices, sel.labels, k)
            w_l = labelled_weight(len(tr_idx), len(known), args.prompt)
            idx = np.concatenate([tr_idx, known])
            data = {k_: v[idx] for k_, v in prompted.data.items()}
            data["y"] = np.concatenate([tr_lab, inputs.labels[known] if len(known) else []]).astype(np.int32)
            data["w"] = np.concatenate([np.ones(len(tr_idx)), np.full(len(known), w_l)]).astype(np.float32)
            if params is None or not args.warm_start:
                params = prompted.init(int(config.seed))
            steps = -(-len(idx) // int(args.batch_size))
            opt = tuning.sgd(float(args.lr or _default_lr(args.prompt)), int(args.epochs), steps,
                             warmup_epochs=int(args.warmup_epochs), weight_decay=float(args.weight_decay))

            def loss_fn(p, b, key):
                logits = prompted.logits(p, b, key, args.augment)
                ce = optax.softmax_cross_entropy_with_integer_labels(logits, b["y"])
                m = b["mask"].astype(ce.dtype)
                loss = jnp.sum(ce * b["w"] * m) / jnp.maximum(m.sum(), 1.0)
                acc = jnp.sum((logits.argmax(-1) == b["y"]) * m) / jnp.maximum(m.sum(), 1.0)
                return loss, {"train_accuracy": acc}

            res = tuning.fit(loss_fn, params, data, optimizer=opt, epochs=int(args.epochs),
                             batch_size=int(args.batch_size), key=jax.random.fold_in(inputs.key, r),
                             mesh=inputs.mesh, progress=inputs.progress,
                             desc=f"{args.strategy} {args.prompt} round {r + 1}/{len(ks)} (K={k})",
                             checkpoint_dir=ckpt_root / f"round_{r:02d}" if ckpt_root else None)
            params = res.params
            probs = prompted.probs(params)
            rounds.append(dict(round=r + 1, k=k, pseudo_indices=sel.indices, pseudo_labels=sel.labels,
                               counts=sel.counts.tolist(), fallback=sel.fallback, n_train=len(tr_idx),
                               n_val=len(va_idx), predictions=probs.argmax(1), history=res.history,
                               resumed_epochs=res.resumed_from))
        head, model_params, setup = prompted.export(params)
        feats = prompted.embed_all(params) if model_params else None
        metrics = dict(strategy=args.strategy, prompt=args.prompt, paradigm=args.setting,
                       trainable_parameters=tuning.n_params(params), epochs=int(args.epochs),
                       batch_size=int(args.batch_size), n_labelled=int(len(known)),
                       per_round=[{k_: v for k_, v in rd.items() if k_ in ("round", "k", "counts", "fallback",
                                                                          "n_train", "n_val", "resumed_epochs")}
                                  | {"final_loss": rd["history"][-1]["loss"]} for rd in rounds],
                       predictions_setting=TRANSDUCTIVE,
                       head=f"{args.prompt} prompts: class weights (C, D), tuned model parameters: "
                            f"{sorted(model_params) if model_params else 'none'}")
        return MethodOutputs(probs, probs.argmax(1), head, TRANSDUCTIVE, metrics, model_params=model_params,
                             model_setup=setup, head_features=feats, rounds=rounds)

    return Method("pseudolabel", DESCRIPTION, run, few_labels=lambda labels: few_labels(config, labels))


def _default_lr(prompt: str) -> float:
    return 0.01 if prompt == "multimodal" else 0.1
