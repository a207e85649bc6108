"""S3A: CVPR (cluster, vote, prompt, realign) over a broad vocabulary, then self-learning (spec s3a.md).

Paper: Zhang et al., "Towards Realistic Zero-Shot Classification via Self Structural Semantic
Alignment", AAAI 2024, arXiv 2308.12960 (official code: sheng-eatamath/S3A on GitHub).

The realistic setting: the class names are unknown; there is a vocabulary V (adapt.vocab.vocabulary)
and the pool. The realistic job (adapt.realistic.job) embeds the pool, builds the vocabulary
classifier T_V and calls `make(config).run(RealisticInputs)`: CVPR (adapt.realistic.cvpr) names
each cluster with one word; predictions are vocabulary indices, s(x), the word of the row's final
cluster. With `self_learning.epochs > 0` a teacher-student stage (adapt.realistic.self_learning)
tunes the model's visual side on the structural labels over the whole vocabulary. Its student is
the output only if it did not lower the silhouette of the partition on the frozen embeddings
(`self_learning.keep = "auto"`, the label-free rule of CVPR's realign; issue 28); else CVPR's
result is, and report.md says so. `keep = "student"` always outputs the student (the paper).

`closed_setting(inputs, settings)` is CVPR in the closed setting, where the vocabulary is the given
class names: K = C (or settings.k when a number <= C), no prompt step.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from adapt.core import mesh as mesh_lib
from adapt.core.distributed import to_host
from adapt.core.method import (REALISTIC, TRANSDUCTIVE, Head, Method, MethodInputs, MethodOutputs,
                               RealisticInputs, RealisticOutputs)
from adapt.core.settings import parse_method_args
from adapt.realistic import phrases as phrases_lib
from adapt.realistic.cvpr import Cvpr, Settings, cvpr, recompute_structural, top_voted  # noqa: F401
from adapt.realistic.self_learning import self_learn
from adapt.realistic.stage_checks import stage_checks
from adapt.tuning.prompted import make_prompted

DESCRIPTION = "S3A CVPR: k-means clusters aligned one-to-one with words of a broad vocabulary"


@dataclasses.dataclass(frozen=True)
class SelfLearning:
    """The config's `self_learning` block (configs/s3a.py documents each field); epochs 0 = CVPR only."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    tau: float = 0.5
    w_ins: float = 0.0
    w_str: float = 0.25
    warmup_epochs: int = 2
    lora_rank: int = 16
    augment: str = "weak"
    scale: float = 100.0  # logit scale over the vocabulary (official constant 100); 0 = the model's own
    min_steps_per_epoch: int = 50  # floor on optimizer steps an epoch (extra passes over small pools); 0 = one pass
    keep: str = "auto"  # auto: the student is the output unless it lowered the partition's silhouette | student

    def __post_init__(self):
        if self.keep not in ("auto", "student"):
            raise ValueError(f"self_learning.keep must be auto or student, not {self.keep!r}")


def settings_from_config(config) -> Settings:
    """method_args -> CVPR's Settings (`k`: "estimate" or a positive integer)."""
    args = dict(config.method_args.items())
    k = str(args.get("k", "estimate")).strip().lower()
    if k not in ("estimate", "") and not k.isdigit():
        raise ValueError(f"method_args.k must be 'estimate' or a positive integer, not {args['k']!r}")
    args["k"] = int(k) if k.isdigit() else None
    return parse_method_args(Settings, args, "s3a")


def self_learning_from_config(config) -> SelfLearning | None:
    """The self-learning settings, or None when the config has no block or 0 epochs."""
    block = config.get("self_learning")
    if not block:
        return None
    sl = parse_method_args(SelfLearning, block, "s3a self_learning")
    return sl if sl.epochs > 0 else None


def closed_setting(inputs: MethodInputs, s: Settings) -> MethodOutputs:
    """CVPR with the class names as the vocabulary: probs (N, C) over the K assigned classes."""
    c = inputs.class_weights.shape[0]
    k = s.k if s.k is not None and s.k <= c else c
    out = cvpr(inputs.x, inputs.mask, inputs.class_weights, None,
               dataclasses.replace(s, k=k, phrases=phrases_lib.NONE), mesh=inputs.mesh,
               key=inputs.key, log=lambda m: None)
    n = int(to_host(inputs.mask).sum())
    head = Head(weights=np.asarray(to_host(inputs.class_weights)), scale=inputs.logit_scale)
    logits = np.asarray(to_host(inputs.x), np.float32)[:n] @ head.weights[out.words].T
    z = np.exp(inputs.logit_scale * (logits - logits.max(1, keepdims=True)))
    probs = np.zeros((n, c), np.float32)
    probs[:, out.words] = z / z.sum(1, keepdims=True)
    metrics = {k_: v for k_, v in out.info.items() if k_ != "k_search"}
    return MethodOutputs(probs, to_host(out.structural)[:n], head, TRANSDUCTIVE, metrics)


def _self_learning(inputs: RealisticInputs, out: Cvpr, sl: SelfLearning) -> dict:
    """S3A's teacher-student stage after CVPR: predictions (n,) of student and teacher (argmax
    over the whole vocabulary), the student's embeddings (n, d), the tuned parameters, the history."""
    n, mesh, mask, weights = len(inputs.kept), inputs.mesh, inputs.mask, inputs.weights
    as_classify = MethodInputs(x=inputs.x, mask=mask, class_weights=weights,
                               logit_scale=float(inputs.model.logit_scale), views={}, class_texts=None,
                               mesh=mesh, key=inputs.key, class_names=None, model=inputs.model,
                               pool=inputs.pool, kept=inputs.kept, workdir=inputs.workdir,
                               progress=inputs.progress)
    prompted = make_prompted(as_classify, "visual", center=False, lora_rank=int(sl.lora_rank),
                             progress=inputs.progress,
                             embed_kwargs=dict(cache_root=inputs.embed.cache_root,
                                               batch_size=inputs.embed.batch_size))

    def restructure(feats):
        f, _ = mesh_lib.shard_rows(np.asarray(feats, np.float32), mesh)
        return to_host(recompute_structural(out, f, mask, weights, rounds=3, mesh=mesh))[:n]

    student, teacher, history, _ = self_learn(
        prompted, weights, to_host(out.structural)[:n], restructure, epochs=int(sl.epochs),
        batch_size=int(sl.batch_size), lr=float(sl.lr), weight_decay=float(sl.weight_decay),
        tau=float(sl.tau), w_ins=float(sl.w_ins), w_str=float(sl.w_str),
        warmup_epochs=int(sl.warmup_epochs), augment=sl.augment, key=jax.random.key(inputs.seed + 1),
        min_steps_per_epoch=int(sl.min_steps_per_epoch), scale=float(sl.scale) or None,
        mesh=mesh, checkpoint_dir=None, progress=inputs.progress, seed=int(inputs.seed))
    w = jnp.asarray(weights)
    tuned = dict(history=history)
    for name, p in (("teacher", teacher), ("student", student)):
        e = prompted.embed_all(p)
        tuned[name] = np.concatenate([np.asarray(jnp.argmax(jnp.asarray(e[s:s + 4096]) @ w.T, -1))
                                      for s in range(0, n, 4096)])
    tuned["features"] = e  # the student's embeddings (the artifact's view)
    tuned["head"], tuned["model_params"], tuned["model_setup"] = prompted.export(student)
    return tuned


def _stages(inputs: RealisticInputs, out: Cvpr, preds: dict, tuned: dict | None) -> list[dict]:
    """The label-free stage checks (adapt.realistic.stage_checks): k-means (clusters named by the
    vote), CVR, CVPR, self-learning, each against the stage before it."""
    n = len(inputs.kept)
    km = np.asarray(out.kmeans_words)[to_host(out.kmeans_partition)[:n]]
    stages = [("k-means partition (named by the vote)", km)]
    if "s3a_cvr" in preds:
        stages.append(("CVR (steps 1-2)", preds["s3a_cvr"]))
    stages.append(("CVPR", preds["s3a_cvpr"]))
    if tuned is not None:
        stages.append(("self-learning (student)", preds["s3a_self_learning"]))
    rows = stage_checks(stages, to_host(inputs.x)[:n], preds["zero_shot_cosine"], mesh=inputs.mesh)
    if tuned is not None:
        rows[-1]["confident_share_per_epoch"] = [round(float(h["confident_fraction"]), 4)
                                                 for h in tuned["history"]]
    return rows


def _cvpr_head(inputs: RealisticInputs, out: Cvpr, n: int) -> Head:
    """CVPR's deployable classifier, one class per cluster named by its word, reproducing the pool's
    predictions: when the realign moved the images (each is at its nearest assigned word), the frozen
    model over the K assigned words; when the partition stayed k-means' (realign rule), the nearest
    centroid of the frozen embeddings, logits = s (x.c_k - |c_k|^2 / 2) (empty clusters never win)."""
    scale = float(inputs.model.logit_scale)
    if out.move:
        return Head(weights=np.asarray(to_host(inputs.weights))[np.asarray(out.words)], scale=scale)
    x, part = np.asarray(to_host(inputs.x), np.float32)[:n], to_host(out.partition)[:n]
    sizes = np.bincount(part, minlength=out.k)
    centroids = np.zeros((out.k, x.shape[1]), np.float32)
    np.add.at(centroids, part, x)
    centroids /= np.maximum(sizes, 1)[:, None]
    bias = np.where(sizes > 0, -0.5 * scale * (centroids ** 2).sum(1), -1e4).astype(np.float32)
    return Head(weights=centroids, scale=scale, bias=bias)


def run_realistic(inputs: RealisticInputs, s: Settings, sl: SelfLearning | None) -> RealisticOutputs:
    """CVPR over the vocabulary, then (sl given) self-learning; predictions by pool row."""
    log = print if inputs.progress else (lambda m: None)
    out = cvpr(inputs.x, inputs.mask, inputs.weights, inputs.vocab, s, mesh=inputs.mesh, key=inputs.key,
               embed_texts=inputs.model.encode_texts, log=log)
    n, names = len(inputs.kept), list(inputs.vocab.names)
    preds = {"s3a_cvpr": to_host(out.structural)[:n], "zero_shot_cosine": to_host(out.votes)[:n]}
    if not out.info["prompt_step"].startswith("none"):
        preds["s3a_cvr"] = to_host(out.cvr_structural)[:n]  # steps 1-2 only, the same run
    words = np.asarray(out.words)
    common = dict(partition=to_host(out.partition)[:n], kmeans_partition=to_host(out.kmeans_partition)[:n],
                  words=words, candidates=out.candidates, k=out.k, k_given=s.k is not None, info=out.info,
                  block=s.block)
    cvpr_out = RealisticOutputs(preds, head=_cvpr_head(inputs, out, n), features=to_host(inputs.x)[:n],
                                class_names=[names[w] for w in words], **common)
    if sl is None:
        out.info["stages"] = _stages(inputs, out, preds, None)
        return cvpr_out
    tuned = _self_learning(inputs, out, sl)
    preds["s3a_self_learning"], preds["s3a_self_learning_teacher"] = tuned["student"], tuned["teacher"]
    out.info["stages"] = _stages(inputs, out, preds, tuned)
    # metrics.json's record: the settings sorted by name (as the config block's to_dict gave them)
    record = dict(sorted(dataclasses.asdict(sl).items()), history=tuned["history"],
                  student="the model's tunable visual side (not the full tower)")
    if sl.keep == "auto" and out.info["stages"][-1]["vs_previous"]["silhouette"] == "hurt":
        out.info["output"] = ("CVPR: self-learning lowered the partition's silhouette on the frozen "
                              "embeddings, so self_learning.keep=auto kept CVPR's result")
        return cvpr_out._replace(tuning=record)
    out.info["output"] = "self-learning student"
    return RealisticOutputs(preds, head=tuned["head"], features=tuned["features"], class_names=names,
                            model_params=tuned["model_params"], model_setup=tuned["model_setup"],
                            tuning=record, output="s3a_self_learning", **common)


def make(config) -> Method:
    """The realistic-setting method; `settings` holds the CVPR settings."""
    s, sl = settings_from_config(config), self_learning_from_config(config)
    return Method("s3a", DESCRIPTION, lambda inputs: run_realistic(inputs, s, sl), job=REALISTIC, settings=s)
