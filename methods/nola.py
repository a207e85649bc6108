"""NoLA (Imam et al., "CLIP meets DINO for Tuning Zero-Shot Classifier using Unlabeled Image
Collections"): class-description classifier, a labeller on a second tower, tuning of the image tower.

Paper: Imam et al., arXiv 2411.19346 (official code: fazliimam/NoLA on GitHub, a fork of LaFTer).
Three stages (our spec: nola.md; stage 3 recipe shared with lafter.md), reported as
the engine's `rounds` 1-3 (it scores them when labels exist; the method never sees labels):
1. cde: class weights W_cde (C, D) = uniform pooling of templates and descriptions (a description
   file, else WordNet sentences, `adapt.vocab.wordnet_descriptions`); P = softmax(s X W_cde^T), with X
   centred on the pool mean when `center` (the centred zero-shot step; the spec uses raw X).
2. labeller: the confident subset D_k of P (k = max(16, floor(0.2 N / C)), rank-2/3 fallback,
   `adapt.tuning.labeller`), an MLP on the second tower's cached features trained on D_k; its labels on
   the whole pool are computed once and cached in the workdir.
3. tuned: the image tower's tunable parameters (`adapt.tuning.prompted`, prompt "visual": VPT tokens on
   CLIP, the head BatchNorm affine on the offline default) plus W (C, D) initialised from W_cde,
   label-smoothed CE against the labeller's labels, AdamW without decay on "bias" parameters,
   constant LR, last epoch reported; at least `min_steps_per_epoch` optimizer steps an epoch
   (`adapt.tuning.loop.plan_epochs`: each epoch makes several passes over a small pool, so a
   1,000-image pool gets the 1,000 steps that 50 epochs of a 10,000-image pool give; 0 = one pass). Logits s W f with f the (centred) unit image feature and s the
   model's logit scale (the spec: unnormalised CLIP feature, no scale; the same argmax family).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from adapt.core.distributed import to_host
from adapt.core.method import TRANSDUCTIVE, EmbedOptions, Method, MethodInputs, MethodOutputs
from adapt.core.settings import check_choice, parse_method_args
from adapt.features.second_tower import load_second_tower, tower_features
from adapt.features.text import encode_classes
from adapt.tuning import labeller
from adapt.tuning import loop as tuning
from adapt.tuning import rounds as tuning_rounds
from adapt.tuning.prompted import make_prompted
from adapt.vocab.wordnet_descriptions import wordnet_descriptions

DESCRIPTION = "NoLA: description classifier, second-tower labeller on its confident subset, visual tuning"
STAGES = {1: "cde: class-description classifier on the frozen embeddings",
          2: "labeller: MLP on the second tower, trained on the CDE confident subset",
          3: "tuned: visual parameters + head trained on the labeller's labels (last epoch)"}
DESCRIPTION_SOURCES = ("wordnet", "none")


@dataclasses.dataclass(frozen=True)
class Settings:
    """method_args of nola; values and their meaning: configs/nola.py."""

    second_tower: str
    descriptions: str
    center: bool
    k: int
    labeller_hidden: int
    labeller_epochs: int
    labeller_lr: float
    labeller_batch_size: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    label_smoothing: float
    augment: str
    min_steps_per_epoch: int

    def __post_init__(self):
        check_choice("descriptions", self.descriptions, DESCRIPTION_SOURCES,
                     " (a classes.descriptions file overrides both)")


def cde_weights(inputs: MethodInputs, has_file: bool, source: str):
    """(C, D) class weights of stage 1 and where the descriptions came from.

    With a description file (or source "none") they are the run's class embeddings. Else each
    class's prompts of the run, which without a description file are exactly its filled templates
    (inputs.class_texts.prompts), are pooled uniformly with its WordNet sentences.
    """
    if has_file or source == "none":
        return np.asarray(to_host(inputs.class_weights)), {"source": "file" if has_file else "templates only"}
    desc, how = wordnet_descriptions(inputs.class_names)
    prompts = {name: list(own) + list(desc[name]) for name, own in zip(inputs.class_names, inputs.class_texts.prompts)}
    texts = encode_classes(inputs.model, inputs.class_names, [], prompts, -1.0)
    return texts.weights, {"source": "wordnet", "lookup": how, "n_sentences": {k: len(v) for k, v in desc.items()}}


def cde_probs(x: np.ndarray, weights: np.ndarray, scale: float, center: bool) -> np.ndarray:
    """x (N, D) frozen embeddings -> (N, C) softmax(s unit(x [- mean]) W^T)."""
    if center:
        x = x - x.mean(0)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    z = scale * x @ np.asarray(weights).T
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def _labeller_labels(path: Path, feats, sel, c, s: Settings, inputs: MethodInputs):
    """(N, C) labeller probabilities over the pool and its history, trained once and cached at `path`."""
    if path.is_file():
        with np.load(path) as z:
            return z["probs"], json.loads(str(z["history"]))
    res = labeller.train_labeller(feats[sel.indices], sel.labels, c, key=jax.random.fold_in(inputs.key, 2),
                                  mesh=inputs.mesh, seed=inputs.seed, epochs=s.labeller_epochs,
                                  lr=s.labeller_lr, batch_size=s.labeller_batch_size,
                                  hidden=s.labeller_hidden, progress=inputs.progress)
    probs = labeller.label_pool(res.params, feats)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, probs=probs, history=json.dumps(res.history))
    os.replace(tmp, path)
    return probs, res.history


def make(config) -> Method:
    s = parse_method_args(Settings, config.method_args, "nola")
    fingerprint = tuning_rounds.run_fingerprint(config)
    has_file = bool(config.classes.descriptions)  # ClassTexts does not say whether a file gave its prompts

    def run(inputs: MethodInputs) -> MethodOutputs:
        n, c = int(to_host(inputs.mask).sum()), len(inputs.class_names)
        scale = float(inputs.logit_scale)
        embed = inputs.embed or EmbedOptions()
        embed_kwargs = dict(batch_size=embed.batch_size, cache_root=embed.cache_root)
        checkpoints = tuning_rounds.checkpoint_root(inputs.workdir or ".", fingerprint)
        # stage 1
        w_cde, desc_info = cde_weights(inputs, has_file, s.descriptions)
        p_cde = cde_probs(to_host(inputs.x)[:n], w_cde, scale, s.center)
        # stage 2: the second tower before the model gets prompts (CLIP prompts change its forward)
        k = s.k or labeller.confident_k(n, c)
        sel = labeller.confident_subset(p_cde, k)
        tower = load_second_tower(s.second_tower, inputs.model)
        feats = tower_features(tower, inputs.pool, inputs.kept, inputs.mesh, chunk_size=embed.chunk_size,
                               workers=embed.workers, progress=inputs.progress, **embed_kwargs)
        p_dl, dl_history = _labeller_labels(checkpoints / "labeller.npz", feats, sel, c, s, inputs)
        y_dl = p_dl.argmax(1).astype(np.int32)
        # stage 3
        prompted = make_prompted(inputs, "visual", center=s.center, embed_kwargs=embed_kwargs, progress=inputs.progress)
        params = {"visual": prompted.init(inputs.seed), "head": jnp.asarray(w_cde, jnp.float32)}
        plan = tuning.plan_epochs(n, s.batch_size, s.epochs, 0, s.min_steps_per_epoch)
        loss_fn = tuning_rounds.smoothed_ce_loss(prompted, scale, c, s.label_smoothing, s.augment)
        res = tuning_rounds.fit_round(loss_fn, params,
                                      {**prompted.data, "y": y_dl}, inputs, name="stage3", checkpoints=checkpoints,
                                      optimizer=tuning_rounds.adamw_no_bias_decay(s.lr, s.weight_decay),
                                      epochs=plan.epochs, passes=plan.passes,
                                      batch_size=s.batch_size, key=jax.random.fold_in(inputs.key, 3),
                                      desc="NoLA stage 3")
        tuned = tuning_rounds.export_tuned(prompted, res.params["visual"], head_weights=res.params["head"])
        probs = tuned.head.probs(tuned.features)
        everyone = np.arange(n)
        rounds = [tuning_rounds.round_record(1, k, sel.indices, sel.labels, p_cde.argmax(1), [], stage="cde"),
                  tuning_rounds.round_record(2, k, everyone, y_dl, y_dl, dl_history, stage="labeller"),
                  tuning_rounds.round_record(3, k, everyone, y_dl, probs.argmax(1), res.history, stage="tuned",
                                             resumed_epochs=res.resumed_from)]
        metrics = dict(stages={str(r): st for r, st in STAGES.items()}, descriptions=desc_info,
                       second_tower=dict(name=s.second_tower, model_id=tower.model_id, dim=int(feats.shape[1])),
                       k=k, subset_size=int(len(sel.indices)), subset_counts=sel.counts.tolist(),
                       subset_fallback={str(a): b for a, b in sel.fallback.items()},
                       labeller_final=dl_history[-1] if dl_history else None,
                       labeller_label_counts=np.bincount(y_dl, minlength=c).tolist(),
                       trainable_parameters=tuning.n_params(res.params), epochs=s.epochs,
                       stage3_schedule=plan.as_dict(),
                       batch_size=s.batch_size, augment=s.augment, center=s.center,
                       stage3_final=res.history[-1], resumed_epochs=res.resumed_from,
                       predictions_setting=TRANSDUCTIVE,
                       head=f"W (C, D) trained from W_cde on the tuned image features; {tuned.parameters_note()}")
        return tuning_rounds.tuned_outputs(probs, tuned, metrics, rounds)

    return Method("nola", DESCRIPTION, run, settings=s)
