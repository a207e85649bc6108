"""LaFTer (Mirza et al., NeurIPS 2023, "Label-Free Tuning of Zero-shot Classifier using Language and
Unlabeled Image Collections"): a classifier trained on text alone labels the pool; the image tower is
tuned on those labels. The baseline NoLA is measured against.

Official code: jmiemirza/LaFTer on GitHub. Our spec: lafter.md. Two stages, reported as the engine's
`rounds` 1-2 (scored when labels exist; the method never sees labels):
1. text: W (C, D) = `adapt.tuning.text_classifier` on every class text embedded on its own (the run's
   filled templates plus WordNet sentences, `adapt.vocab.wordnet_descriptions`; or a CuPL description
   file), Gaussian noise std 0.1, CE with label smoothing 0.1, AdamW 5e-4, wd 0.01, full batch,
   `text_epochs` steps. Teacher labels y = argmax W unit(x [- mean]) over the frozen pool embeddings
   x (the weak view: the model's resize + centre crop), computed once (the official code recomputes
   them every batch; the same labels).
2. tuned: student = the image tower's tunable parameters plus W (initialised from stage 1) trained on
   CE_0.1(W g(strong view), y), AdamW 5e-4, wd 0.01 except "bias" names, batch 50, constant LR, 50
   epochs, the last epoch reported (the official script prints the best test epoch). On CLIP the
   tunable set is 50 shallow VPT tokens + every LayerNorm affine of the image tower
   (`adapt.tuning.prompted_layernorm`) and g is the unnormalised projected feature (the official
   quirk: the student's logits W g have no normalisation and no scale, the teacher's use a unit
   feature); on the offline default it is the head BatchNorm affine (`adapt.tuning.prompted`, prompt
   "visual", as NoLA) and g its embedding, unit by construction (no unnormalised feature exists).
Deviations (declared, also in configs/lafter.py): `center` centres the teacher's features (and the
offline student's) on the frozen pool mean; `min_steps_per_epoch` adds passes on small pools; the
artifact's head normalises g, so its argmax is the student's and its probabilities are softmax(W unit(g)).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from adapt.core.distributed import to_host
from adapt.core.method import TRANSDUCTIVE, EmbedOptions, Method, MethodInputs, MethodOutputs
from adapt.core.settings import check_choice, parse_method_args
from adapt.tuning import loop as tuning
from adapt.tuning import rounds as tuning_rounds
from adapt.tuning import text_classifier
from adapt.tuning.prompted import make_prompted, model_family, pool_pixels
from adapt.tuning.prompted_layernorm import ClipPromptedLayerNorm
from adapt.vocab.wordnet_descriptions import wordnet_descriptions

DESCRIPTION = "LaFTer: text-only classifier on class descriptions, visual tuning on its pseudo-labels"
STAGES = {1: "text: linear classifier trained on noisy text embeddings, its labels on the frozen pool",
          2: "tuned: visual parameters + classifier trained on the stage-1 labels (last epoch)"}
DESCRIPTION_SOURCES = ("wordnet", "none")


@dataclasses.dataclass(frozen=True)
class Settings:
    """method_args of lafter; values and their meaning: configs/lafter.py."""

    descriptions: str
    center: bool
    text_epochs: int
    text_lr: float
    text_weight_decay: float
    text_noise_std: float
    n_prompts: int
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


def class_texts(inputs: MethodInputs, has_file: bool, source: str) -> tuple[list[list[str]], dict]:
    """Each class's texts for stage 1 and where they came from: the run's prompts (filled templates,
    or the description file's sentences), plus the class's WordNet sentences without a file."""
    own = [list(p) for p in inputs.class_texts.prompts]
    if has_file or source == "none":
        return own, {"source": "file" if has_file else "templates only"}
    desc, how = wordnet_descriptions(inputs.class_names)
    texts = [ps + list(desc[name]) for ps, name in zip(own, inputs.class_names)]
    return texts, {"source": "wordnet", "lookup": how}


def teacher_labels(x: np.ndarray, weights: np.ndarray, center: bool) -> np.ndarray:
    """x (N, D) frozen pool embeddings, weights (C, D) -> (N,) argmax W unit(x [- mean])."""
    if center:
        x = x - x.mean(0)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return (x @ np.asarray(weights).T).argmax(1).astype(np.int32)


def make_student(inputs: MethodInputs, s: Settings, embed_kwargs: dict):
    """The tunable image tower: VPT + LayerNorms on CLIP, the head BN affine on the offline default."""
    if model_family(inputs.model) == "clip":
        pixels = pool_pixels(inputs.pool, inputs.kept, inputs.model.preprocess)
        return ClipPromptedLayerNorm(inputs, n_visual=s.n_prompts, pixels=pixels)
    return make_prompted(inputs, "visual", center=s.center, embed_kwargs=embed_kwargs, progress=inputs.progress)


def make(config) -> Method:
    s = parse_method_args(Settings, config.method_args, "lafter")
    fingerprint = tuning_rounds.run_fingerprint(config)
    has_file = bool(config.classes.descriptions)

    def run(inputs: MethodInputs) -> MethodOutputs:
        n, c = int(to_host(inputs.mask).sum()), len(inputs.class_names)
        embed = inputs.embed or EmbedOptions()
        embed_kwargs = dict(batch_size=embed.batch_size, cache_root=embed.cache_root)
        checkpoints = tuning_rounds.checkpoint_root(inputs.workdir or ".", fingerprint)
        # stage 1 (deterministic from the run key: recomputed on a resumed run)
        texts, desc_info = class_texts(inputs, has_file, s.descriptions)
        text_set = text_classifier.embed_text_set(inputs.model, inputs.class_names, texts)
        stage1 = text_classifier.train_text_classifier(
            text_set, c, steps=s.text_epochs, lr=s.text_lr, weight_decay=s.text_weight_decay,
            noise_std=s.text_noise_std, smoothing=s.label_smoothing, key=jax.random.fold_in(inputs.key, 1))
        y_pl = teacher_labels(to_host(inputs.x)[:n], stage1.weights, s.center)
        # stage 2
        prompted = make_student(inputs, s, embed_kwargs)
        params = {"visual": prompted.init(inputs.seed), "head": jnp.asarray(stage1.weights)}
        plan = tuning.plan_epochs(n, s.batch_size, s.epochs, 0, s.min_steps_per_epoch)
        loss_fn = tuning_rounds.smoothed_ce_loss(prompted, 1.0, c, s.label_smoothing, s.augment)
        res = tuning_rounds.fit_round(loss_fn, params,
                                      {**prompted.data, "y": y_pl}, inputs, name="stage2", checkpoints=checkpoints,
                                      optimizer=tuning_rounds.adamw_no_bias_decay(s.lr, s.weight_decay),
                                      epochs=plan.epochs, passes=plan.passes,
                                      batch_size=s.batch_size, key=jax.random.fold_in(inputs.key, 2),
                                      desc="LaFTer stage 2")
        tuned = tuning_rounds.export_tuned(prompted, res.params["visual"], head_weights=res.params["head"])
        tuned = tuned._replace(head=dataclasses.replace(tuned.head, scale=1.0))
        probs = tuned.head.probs(tuned.features)
        everyone = np.arange(n)
        rounds = [tuning_rounds.round_record(1, 0, everyone, y_pl, y_pl, stage1.history, stage="text"),
                  tuning_rounds.round_record(2, 0, everyone, y_pl, probs.argmax(1), res.history, stage="tuned",
                                             resumed_epochs=res.resumed_from)]
        metrics = dict(stages={str(r): st for r, st in STAGES.items()}, descriptions=desc_info,
                       text_set=dict(size=len(text_set.texts), per_class=text_set.counts(c)),
                       text_final=stage1.history[-1] if stage1.history else None,
                       teacher_label_counts=np.bincount(y_pl, minlength=c).tolist(),
                       trainable_parameters=tuning.n_params(res.params), epochs=s.epochs,
                       stage2_schedule=plan.as_dict(), batch_size=s.batch_size, augment=s.augment,
                       center=s.center, stage2_final=res.history[-1], resumed_epochs=res.resumed_from,
                       predictions_setting=TRANSDUCTIVE,
                       head=f"W (C, D) from stage 1, trained with the image tower; {tuned.parameters_note()}")
        return tuning_rounds.tuned_outputs(probs, tuned, metrics, rounds)

    return Method("lafter", DESCRIPTION, run, settings=s)
