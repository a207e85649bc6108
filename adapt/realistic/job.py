"""The realistic-setting job: class names unknown, a broad vocabulary instead (S3A's setting).

pool -> embeddings (the engine's cache) -> vocabulary classifier T_V (adapt.realistic.vocab_classifier,
cached) -> CVPR (methods.s3a.cvpr) -> predictions as vocabulary words. Class names, when the pool
has them (or the config gives them), are used for evaluation only (adapt.realistic.metrics),
against the zero-shot baselines over the same vocabulary: argmax over all |V| words with the cosine
head (the same head CVPR votes with) and, for models that have one, with the model's class map.

Outputs in the workdir: metrics.json, report.md, predictions.csv (path, word, vocabulary index,
cluster, confidence, zero-shot word), cvpr.npz (the partitions, cluster -> word map, structural
labels and votes, by pool row, for later stages), candidates.json (each cluster's top voted words
with their definitions: the input of `python -m adapt.realistic.phrases`), and classifier/: the deployable
head over the K assigned words (cosine at the model's logit scale; its class names are those words),
not the whole vocabulary.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from adapt.output import artifact

from adapt.core import distributed

from adapt.output import staging as outputs

from adapt.output import report

from adapt.output import html_jobs as report_html_jobs
from adapt.core import mesh as mesh_lib
from adapt.data import open_pool, resolve_classes
from adapt.features.embed import default_cache_root, embed_pool
from adapt.engine import RUNLOCAL_LIMIT, Timer
from adapt.core.method import Head
from adapt.models import load_model, model_source
from adapt.realistic.metrics import cluster_accuracy, realistic_metrics, sentence_embedder
from adapt.realistic.report import write_predictions, write_report
from adapt.realistic.vocab_classifier import encode_vocabulary
from adapt.vocab.vocabulary import load_vocabulary, match_class_names
from adapt.realistic.vote_realign import vocabulary_argmax


def _embed(model, pool, mesh, config, progress):
    kw = dict(cache_root=config.embed.cache_dir or None, batch_size=config.embed.batch_size,
              chunk_size=config.embed.chunk_size, workers=config.embed.workers)
    if distributed.is_multiprocess():
        kept, skipped, x, mask, views = distributed.embed_slices(model, pool, mesh, progress=progress, **kw)
    else:
        emb = embed_pool(model, pool, mesh, progress=progress, **kw)
        kept, skipped = emb.kept, emb.skipped
        x, mask = mesh_lib.shard_rows(emb.embeddings, mesh)
        views = {k: mesh_lib.shard_rows(v, mesh)[0] for k, v in emb.views.items()}
    return np.asarray(kept), skipped, x, mask, {"embedding": x} | views


def _classes(config, pool):
    given = list(config.classes.names) or config.classes.file
    if not given and not pool.class_names:
        return None  # an unlabelled pool without names: nothing to evaluate
    return resolve_classes(pool, names=list(config.classes.names) or None,
                           names_file=config.classes.file or None)


def _self_learning(config, out, model, pool, kept, x, mask, weights, clf, mesh, workdir, progress):
    """S3A's teacher-student stage after CVPR: predictions (n,) of student and teacher (argmax
    over the whole vocabulary), the tuned parameters and the history."""
    from adapt.core.method import MethodInputs
    from adapt.tuning.prompted import make_prompted
    from adapt.realistic.self_learning import self_learn
    from methods.s3a import recompute_structural

    sl, n = config.self_learning, len(kept)
    inputs = MethodInputs(x=x, mask=mask, class_weights=weights, logit_scale=float(model.logit_scale),
                          views={}, class_texts=None, mesh=mesh, key=jax.random.key(config.seed),
                          class_names=None, model=model, pool=pool, kept=kept, workdir=workdir,
                          progress=progress)
    prompted = make_prompted(inputs, "visual", center=False, lora_rank=int(sl.lora_rank), progress=progress,
                             embed_kwargs=dict(cache_root=config.embed.cache_dir or None,
                                               batch_size=config.embed.batch_size))
    host = distributed.to_host

    def restructure(feats):
        f, _ = mesh_lib.shard_rows(np.asarray(feats, np.float32), mesh)
        return host(recompute_structural(out, f, mask, weights, rounds=3, mesh=mesh))[:n]

    student, teacher, history, _ = self_learn(
        prompted, weights, host(out.structural)[:n], restructure, epochs=int(sl.epochs),
        batch_size=int(sl.batch_size), lr=float(sl.lr), weight_decay=float(sl.weight_decay),
        tau=float(sl.tau), w_ins=float(sl.w_ins), w_str=float(sl.w_str),
        warmup_epochs=int(sl.warmup_epochs), augment=sl.augment, key=jax.random.key(config.seed + 1),
        mesh=mesh, checkpoint_dir=None, progress=progress, seed=int(config.seed))
    w = jnp.asarray(weights)
    out_ = dict(history=history)
    for name, p in (("teacher", teacher), ("student", student)):
        e = prompted.embed_all(p)
        out_[name] = np.concatenate([np.asarray(jnp.argmax(jnp.asarray(e[s:s + 4096]) @ w.T, -1))
                                     for s in range(0, n, 4096)])
    out_["features"] = e  # the student's embeddings (the artifact's view)
    out_["head"], out_["model_params"], out_["model_setup"] = prompted.export(student)
    return out_


def run_realistic_job(config, workdir, settings, progress: bool = True) -> dict:
    from methods.s3a import cvpr

    workdir = outputs.check_writable(workdir)  # before any compute
    timer = Timer()
    with timer.stage("setup"):
        pool_cfg = config.pool
        if config.runlocal and not pool_cfg.limit:
            pool_cfg = config.pool.copy_and_resolve_references()
            pool_cfg.limit = RUNLOCAL_LIMIT
        pool = open_pool(pool_cfg)
        classes = _classes(config, pool)
        vocab = load_vocabulary(config.vocabulary.file)
        mesh = mesh_lib.make_mesh(config.embed.num_devices or None)
    with timer.stage("load_model"):
        model = load_model(config.model.kind, config.model.path, config.model.grounding)
    with timer.stage("embed"):
        kept, emb_skipped, x, mask, views = _embed(model, pool, mesh, config, progress)
    skipped = list(getattr(pool, "prescan_skipped", [])) + emb_skipped
    n = len(kept)
    with timer.stage("embed_vocabulary"):
        clf = encode_vocabulary(model, vocab, list(config.prompts.templates),
                                cache_root=config.embed.cache_dir or default_cache_root(),
                                chunk=config.vocabulary.chunk, progress=progress,
                                write=distributed.is_writer())
    log = print if progress else (lambda m: None)
    with timer.stage("method"):
        weights = mesh_lib.replicate(clf.weights, mesh)
        out = cvpr(x, mask, weights, vocab, settings, mesh=mesh, key=jax.random.key(config.seed),
                   embed_texts=model.encode_texts, log=log)
    host = distributed.to_host
    preds = {"s3a_cvpr": host(out.structural)[:n], "zero_shot_cosine": host(out.votes)[:n]}
    if not out.info["prompt_step"].startswith("none"):
        preds["s3a_cvr"] = host(out.cvr_structural)[:n]  # steps 1-2 only, the same run
    if config.get("self_learning") and int(config.self_learning.epochs) > 0:
        with timer.stage("self_learning"):
            tuned = _self_learning(config, out, model, pool, kept, x, mask, weights, clf, mesh, workdir, progress)
        preds["s3a_self_learning"], preds["s3a_self_learning_teacher"] = tuned["student"], tuned["teacher"]
    with timer.stage("baselines"):
        if clf.view_weights is not None and clf.view in views:
            ids, _ = vocabulary_argmax(views[clf.view], mesh_lib.replicate(clf.view_weights, mesh),
                                       mesh=mesh, block=settings.block)
            preds["zero_shot_class_map"] = host(ids)[:n]

    metrics = dict(method=config.method, setting="transductive (realistic: class names unknown)",
                   model=model.model_id, n_images=len(pool) + len(getattr(pool, "prescan_skipped", [])),
                   n_embedded=n, n_skipped=len(skipped), vocabulary=vocab.source,
                   vocabulary_size=len(vocab), vocabulary_templates=list(clf.templates),
                   k=out.k, k_given=settings.k is not None,
                   k_assumption="given by the config (an assumption)" if settings.k is not None
                   else "estimated by silhouette search (no labels)",
                   selection_rule="none: one run, no labels used; self-learning: last epoch", cvpr=out.info)
    if "s3a_self_learning" in preds:
        metrics["self_learning"] = dict(config.self_learning.to_dict(), history=tuned["history"],
                                        student="the model's tunable visual side (not the full tower)")
    labels = None
    if classes is not None and classes.labels is not None:
        labels = np.asarray(classes.labels)[kept]
    if labels is not None and (labels >= 0).any():
        with timer.stage("evaluate"):
            matches = match_class_names(vocab, classes.names)
            embed = sentence_embedder()
            metrics["class_names"] = list(classes.names)
            metrics["class_name_entries"] = {c: {"entries": [vocab.names[i] for i in m["entries"]],
                                                 "how": m["how"]} for c, m in zip(classes.names, matches)}
            metrics["results"] = {name: realistic_metrics(p, labels, vocab_names=vocab.names,
                                                          class_names=classes.names, matches=matches,
                                                          embed=embed) for name, p in preds.items()}
            metrics["kmeans_cluster_accuracy"] = cluster_accuracy(host(out.kmeans_partition)[:n], labels)
    metrics["n_processes"] = jax.process_count()
    if not distributed.is_writer():
        metrics["seconds"] = timer.seconds
        return metrics
    with timer.stage("write"):
        staged = outputs.begin(workdir)  # swapped in whole at the end (adapt/output/staging.py)
        words = np.asarray(out.words)
        if "s3a_self_learning" in preds:  # the tuned student over the whole vocabulary
            head, feats, names = tuned["head"], tuned["features"], list(vocab.names)
        else:  # CVPR: the frozen model over the K assigned words
            head, feats = Head(weights=clf.weights[words], scale=float(model.logit_scale)), host(x)[:n]
            names = [vocab.names[w] for w in words]
        probs = head.probs(feats)
        artifact.save(staged / "classifier", head=head, class_names=names,
                      model=model, model_source=model_source(config.model.kind, config.model.path),
                      method=config.method, config_json=config.to_json(), metrics=metrics,
                      embed_batch=config.embed.batch_size, extra_tensors=tuned.get("model_params") if
                      "s3a_self_learning" in preds else None,
                      model_setup=tuned.get("model_setup") if "s3a_self_learning" in preds else None)
        partition = host(out.partition)[:n]
        write_predictions(staged / "predictions.csv", [pool.location(int(i)) for i in kept],
                          preds, partition, probs, vocab.names)
        np.savez(staged / "cvpr.npz", pool_index=kept, kmeans_partition=host(out.kmeans_partition)[:n],
                 partition=partition, words=words, structural=preds["s3a_cvpr"],
                 votes=preds["zero_shot_cosine"], vocabulary_key=clf.key)
        cands = [{"cluster": k, "size": int((partition == k).sum()), "word": vocab.names[words[k]],
                  "candidates": [{"name": vocab.names[w], "definitions": list(vocab.entries[w].definitions)}
                                 for w in ws]} for k, ws in enumerate(out.candidates)]
        (staged / "candidates.json").write_text(json.dumps({"clusters": cands}, indent=1))
    metrics["seconds"] = timer.seconds
    report.write_json(staged / "metrics.json", metrics)
    write_report(staged / "report.md", metrics, pool.source, skipped, cands, labels, partition,
                 classes.names if classes is not None else None)
    report_html_jobs.write_realistic(staged, pool=pool, kept=kept, clusters=cands, partition=partition,
                                     labels=labels, class_names=classes.names if classes is not None else None,
                                     metrics=metrics, skipped=skipped, config=config)
    outputs.commit(workdir, staged)
    return metrics
