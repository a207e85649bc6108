"""The realistic-setting job: class names unknown, a broad vocabulary instead (S3A's setting).

pool -> embeddings (the engine's cache) -> vocabulary classifier T_V (adapt.realistic.vocab_classifier,
cached) -> the method (`Method.run(RealisticInputs)`, S3A: methods/s3a.py) -> predictions as
vocabulary words. Class names, when the pool has them (or the config gives them), are used for
evaluation only (adapt.realistic.metrics), against the zero-shot baselines over the same vocabulary:
argmax over all |V| words with the cosine head (the same head CVPR votes with; the method returns
it) and, for models that have one, with the model's class map.

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
import numpy as np

from adapt.core import distributed
from adapt.core import mesh as mesh_lib
from adapt.core.job import Timer
from adapt.core.method import Method, RealisticInputs, RealisticOutputs
from adapt.data import resolve_classes
from adapt.features import setup
from adapt.features.embed import default_cache_root
from adapt.models import model_source
from adapt.output import artifact, report
from adapt.output import html_jobs as report_html_jobs
from adapt.output import staging as outputs
from adapt.realistic.metrics import cluster_accuracy, realistic_metrics, sentence_embedder
from adapt.realistic.report import write_predictions, write_report
from adapt.realistic.vocab_classifier import encode_vocabulary
from adapt.realistic.vote_realign import vocabulary_argmax
from adapt.vocab.vocabulary import load_vocabulary, match_class_names


def _classes(config, pool):
    given = list(config.classes.names) or config.classes.file
    if not given and not pool.class_names:
        return None  # an unlabelled pool without names: nothing to evaluate
    return resolve_classes(pool, names=list(config.classes.names) or None,
                           names_file=config.classes.file or None)


def run(config, method: Method, workdir, progress: bool = True) -> dict:
    """Runs the realistic-setting job of `method` and writes its outputs into `workdir`."""
    workdir = outputs.check_writable(workdir)  # before any compute
    timer = Timer()
    embed, pool, mesh, model, (classes, vocab) = setup.start_job(
        config, timer, check=lambda pool: (_classes(config, pool), load_vocabulary(config.vocabulary.file)))
    with timer.stage("embed"):
        rows = setup.embed_job_pool(model, pool, mesh, embed, progress)
    with timer.stage("embed_vocabulary"):
        clf = encode_vocabulary(model, vocab, list(config.prompts.templates),
                                cache_root=embed.cache_root or default_cache_root(),
                                chunk=config.vocabulary.chunk, progress=progress,
                                write=distributed.is_writer())
    with timer.stage("method"):
        inputs = RealisticInputs(rows.x, rows.mask, mesh_lib.replicate(clf.weights, mesh), vocab, mesh,
                                 jax.random.key(config.seed), model, pool, rows.kept, seed=int(config.seed),
                                 embed=embed, workdir=workdir, progress=progress)
        out = method.run(inputs)
    with timer.stage("baselines"):
        preds = dict(out.predictions)
        if clf.view_weights is not None and clf.view in rows.views:
            ids, _ = vocabulary_argmax(rows.views[clf.view], mesh_lib.replicate(clf.view_weights, mesh),
                                       mesh=mesh, block=out.block)
            preds["zero_shot_class_map"] = distributed.to_host(ids)[:len(rows.kept)]
    metrics = _metrics(config, model, pool, rows, vocab, clf, out)
    labels = None
    if classes is not None and classes.labels is not None:
        labels = np.asarray(classes.labels)[rows.kept]
    if labels is not None and (labels >= 0).any():
        with timer.stage("evaluate"):
            metrics.update(_evaluate(vocab, classes.names, preds, labels, out))
    metrics["n_processes"] = jax.process_count()
    if not distributed.is_writer():
        metrics["seconds"] = timer.seconds
        return metrics
    with timer.stage("write"):
        staged = outputs.begin(workdir)  # swapped in whole at the end (adapt/output/staging.py)
        cands = _write_outputs(staged, config, model, pool, rows.kept, vocab, clf, out, preds, metrics)
    metrics["seconds"] = timer.seconds
    report.write_json(staged / "metrics.json", metrics)
    class_names = classes.names if classes is not None else None
    write_report(staged / "report.md", metrics, pool.source, rows.skipped, cands, labels, out.partition,
                 class_names)
    report_html_jobs.write_realistic(staged, pool=pool, kept=rows.kept, clusters=cands,
                                     partition=out.partition, labels=labels, class_names=class_names, metrics=metrics,
                                     skipped=rows.skipped, config=config)
    outputs.commit(workdir, staged)
    return metrics


def _metrics(config, model, pool, rows, vocab, clf, out: RealisticOutputs) -> dict:
    metrics = dict(method=config.method, setting="transductive (realistic: class names unknown)",
                   model=model.model_id, n_images=setup.n_pool_items(pool),
                   n_embedded=len(rows.kept), n_skipped=len(rows.skipped), vocabulary=vocab.source,
                   vocabulary_size=len(vocab), vocabulary_templates=list(clf.templates),
                   k=out.k, k_given=out.k_given,
                   k_assumption="given by the config (an assumption)" if out.k_given
                   else "estimated by silhouette search (no labels)",
                   selection_rule="none: one run, no labels used; self-learning: last epoch", cvpr=out.info)
    if out.tuning is not None:
        metrics["self_learning"] = out.tuning
    return metrics


def _evaluate(vocab, class_names, preds: dict, labels, out: RealisticOutputs) -> dict:
    """Every prediction scored against the class names (labels (N,) class ids, -1 unknown)."""
    matches = match_class_names(vocab, class_names)
    embed = sentence_embedder()
    m = dict(class_names=list(class_names))
    m["class_name_entries"] = {c: {"entries": [vocab.names[i] for i in e["entries"]], "how": e["how"]}
                               for c, e in zip(class_names, matches)}
    m["results"] = {name: realistic_metrics(p, labels, vocab_names=vocab.names, class_names=class_names,
                                            matches=matches, embed=embed) for name, p in preds.items()}
    m["kmeans_cluster_accuracy"] = cluster_accuracy(out.kmeans_partition, labels)
    return m


def _write_outputs(staged, config, model, pool, kept, vocab, clf, out: RealisticOutputs, preds,
                   metrics) -> list[dict]:
    """classifier/, predictions.csv, cvpr.npz and candidates.json; returns the candidates rows."""
    artifact.save(staged / "classifier", head=out.head, class_names=out.class_names,
                  model=model, model_source=model_source(config.model.kind, config.model.path,
                                                        config.model.get("arch", "")),
                  method=config.method, config_json=config.to_json(), metrics=metrics,
                  embed_batch=config.embed.batch_size, extra_tensors=out.model_params,
                  model_setup=out.model_setup)
    write_predictions(staged / "predictions.csv", [pool.location(int(i)) for i in kept],
                      preds, out.partition, out.head.probs(out.features), vocab.names, out.output)
    np.savez(staged / "cvpr.npz", pool_index=kept, kmeans_partition=out.kmeans_partition,
             partition=out.partition, words=out.words, structural=preds["s3a_cvpr"],
             votes=preds["zero_shot_cosine"], vocabulary_key=clf.key)
    cands = [{"cluster": k, "size": int((out.partition == k).sum()), "word": vocab.names[out.words[k]],
              "candidates": [{"name": vocab.names[w], "definitions": list(vocab.entries[w].definitions)}
                             for w in ws]} for k, ws in enumerate(out.candidates)]
    (staged / "candidates.json").write_text(json.dumps({"clusters": cands}, indent=1))
    return cands
