"""One adaptation job: the config's method made through the registry, then the job of its kind.

classify (here): pool -> embeddings -> class texts -> method -> artifact, metrics, report;
anomaly: adapt.anomaly.job; realistic (class names unknown): adapt.realistic.job.
"""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from adapt import registry
from adapt.anomaly import job as anomaly_job
from adapt.core import distributed, ops
from adapt.core import mesh as mesh_lib
from adapt.core.config import reproduce_command
from adapt.core.job import Timer
from adapt.core.method import ANOMALY, CLASSIFY, REALISTIC, Method, MethodInputs, MethodOutputs
from adapt.data import resolve_classes
from adapt.features import setup
from adapt.features.class_texts import build_class_texts
from adapt.features.perception import context_probs
from adapt.models import model_source
from adapt.output import artifact, chain, report
from adapt.output import html as report_html
from adapt.output import staging as outputs
from adapt.output.decision import DecisionContext, apply_decision
from adapt.realistic import job as realistic_job
from adapt.tuning import report as tuning_report


def run(config, workdir, progress: bool = True) -> dict:
    """Runs the job described by `config`, writes everything into `workdir`, returns the metrics."""
    method = registry.make_method(config)
    jobs = {CLASSIFY: classify, ANOMALY: anomaly_job.run, REALISTIC: realistic_job.run}
    if method.job not in jobs:
        raise ValueError(f"method {method.name!r} asks for job kind {method.job!r}; known: {sorted(jobs)}")
    return jobs[method.job](config, method, workdir, progress=progress)


def zero_shot_baselines(x, mask, texts, views, scale, n) -> dict[str, np.ndarray]:
    """Predictions (n,) of the label-free references every method is compared with.

    cosine: argmax s X T^T on the embeddings as the model gives them (inductive).
    class_map: the model's own class map onto an image view, when it has one (inductive).
    centered: cosine after subtracting the pool's mean embedding and renormalising (transductive).
    """
    host = distributed.to_host
    out = {"cosine": host(ops.zero_shot_logits(x, texts.weights, scale))[:n].argmax(1)}
    if texts.view_weights is not None:
        out["class_map"] = (host(views[texts.view])[:n] @ texts.view_weights.T).argmax(1)
    xc, _ = ops.centered(x, mask)
    out["centered"] = host(ops.zero_shot_logits(xc, texts.weights, scale))[:n].argmax(1)
    return out


def classify(config, method: Method, workdir, progress: bool = True) -> dict:
    """The classification job of `method` (classes known): embeds pool and classes, runs it."""
    timer = Timer()
    workdir = outputs.check_writable(workdir)
    start = chain.open_start(config.init["from"]) if config.init["from"] else None
    embed, pool, mesh, model, classes = setup.start_job(config, timer, check=lambda pool: resolve_classes(
        pool, names=list(config.classes.names) or None, names_file=config.classes.file or None,
        descriptions_file=config.classes.descriptions or None))
    if start is not None:
        chain.check_classes(start, classes.names)
        chain.prepare_model(start, model)  # the start run's tuned parameters embed the pool
    with timer.stage("embed"):
        rows = setup.embed_job_pool(model, pool, mesh, embed, progress)
    with timer.stage("embed_classes"):
        texts = build_class_texts(config, model, classes, rows)
    labels = None if classes.labels is None else np.asarray(classes.labels)[rows.kept]
    few = method.few_labels(labels) if method.few_labels is not None and labels is not None else None
    items = [pool.location(int(i)) for i in rows.kept]
    prior, prior_record, context_record = _prior(config, start, model, texts, classes, rows, items)
    inputs = MethodInputs(x=rows.x, mask=rows.mask, class_weights=mesh_lib.replicate(texts.weights, mesh),
                          logit_scale=float(model.logit_scale), views=rows.views, class_texts=texts,
                          mesh=mesh, key=jax.random.key(config.seed), class_names=list(classes.names),
                          model=model, pool=pool, kept=rows.kept, workdir=workdir,
                          progress=progress, labels=few, seed=int(config.seed), embed=embed,
                          prior_probs=prior)
    with timer.stage("method"):
        out = method.run(inputs)
        if start is not None:
            out = _chained_outputs(out, start, method, config, prior_record)
        before = out.predictions
        out, decision = _decide(config, out, model, classes, texts, rows)
        baselines = zero_shot_baselines(rows.x, rows.mask, texts, rows.views, float(model.logit_scale),
                                        len(rows.kept))
    metrics = _metrics(config, model, pool, rows, classes, texts, out, baselines, labels)
    metrics.update(n_processes=jax.process_count(), decision=decision,
                   **({"class_texts": texts.record} if getattr(texts, "record", None) else {}),
                   **({"context": context_record} if context_record else {}))
    if metrics["accuracy"] is not None:
        metrics["accuracy_before_decision"] = report.accuracy_metrics(before, labels, classes.names)["accuracy"]
    if not distributed.is_writer():  # process 0 alone writes the shared outputs
        metrics["seconds"] = timer.seconds
        return metrics
    with timer.stage("write"):
        staging = outputs.begin(workdir)
        plots = _write_outputs(staging, config, model, out, metrics, classes, labels, items)
    with timer.stage("report"):  # report.html: galleries with thumbnails of the shown images only
        report_html.write(staging, pool=pool, kept=rows.kept, out=out, baselines=baselines, labels=labels,
                          class_names=classes.names, metrics=metrics, skipped=rows.skipped, plots=plots,
                          config=config)
    metrics["seconds"] = timer.seconds
    report.write_json(staging / "metrics.json", metrics)
    info = dict(model=model.model_id, pool=pool.source, classes=classes.names,
                command=reproduce_command(config, workdir))
    report.write_report(staging / "report.md", metrics, info, rows.skipped, plots)
    if metrics.get("rounds"):
        with open(staging / "report.md", "a") as f:
            f.write(_rounds_section(metrics["rounds"], metrics.get("stages") or {}))
    if metrics.get("chain"):
        with open(staging / "report.md", "a") as f:
            f.write(_chain_section(metrics["chain"], metrics["chain_prior"]))
    outputs.commit(workdir, staging)
    return metrics


def _prior(config, start, model, texts, classes, rows, items):
    """The method's prior (N, K) or None, from a chained start run or from PerceptionCLIP's
    contexts (`prompts.context`), with the record of each (prior_record, context_record)."""
    prior, prior_record, context_record = None, None, None
    if start is not None:
        head_view = distributed.to_host(rows.views[start.classifier.head.view])[:len(rows.kept)]
        prior, prior_record = chain.prior(start, items, head_view)
    if config.prompts.get("context", "none") != "none":  # PerceptionCLIP: its p(y|x) is the prior
        if start is not None:
            raise ValueError("prompts.context and init.from both give the method's prior: choose one")
        prior, context_record = context_probs(config, model, texts, classes.names, rows)
    return prior, prior_record, context_record


def _decide(config, out: MethodOutputs, model, classes, texts, rows):
    """`decision.rule` applied to the method's outputs (adapt.output.decision); the pool rows go to
    the host only for a rule other than argmax."""
    if config.get("decision", {}).get("rule", "argmax") == "argmax":
        x_host = view = None
    else:
        host = lambda a: distributed.to_host(a)[:len(rows.kept)]  # noqa: E731
        x_host, view = host(rows.x), (host(rows.views[texts.view]) if texts.view else None)
    return apply_decision(config, out, DecisionContext(model, list(classes.names), texts, x_host, config, view))


def _metrics(config, model, pool, rows, classes, texts, out: MethodOutputs, baselines, labels) -> dict:
    """The run's metrics; accuracies of the method, its head and the baselines when labels exist."""
    n = len(rows.kept)
    metrics = dict(method=config.method, setting=out.setting, model=model.model_id,
                   n_images=setup.n_pool_items(pool), n_embedded=n, n_skipped=len(rows.skipped),
                   n_classes=len(classes.names), selection_rule="none: one run, last iterate, no labels used",
                   **out.metrics)
    metrics["zero_shot_head"] = "class_map" if "class_map" in baselines else "cosine"
    if texts.identical:  # encode_classes warned; keep it in the record too
        metrics["identical_class_embeddings"] = texts.identical
    if labels is None or not (labels >= 0).any():
        metrics.update(accuracy=None, per_class_accuracy=None, zero_shot_accuracy=None,
                       centered_zero_shot_accuracy=None, head_accuracy=None)
        return metrics
    metrics.update(report.accuracy_metrics(out.predictions, labels, classes.names))
    acc = {k: report.accuracy_metrics(p, labels, classes.names)["accuracy"] for k, p in baselines.items()}
    metrics["zero_shot_accuracy"] = acc.get("class_map", acc["cosine"])
    if "class_map" in acc:
        metrics["cosine_zero_shot_accuracy"] = acc["cosine"]
    metrics["centered_zero_shot_accuracy"] = acc["centered"]
    head_x = out.head_features if out.head_features is not None else \
        distributed.to_host(rows.views[out.head.view])[:n]
    head_pred = out.head.probs(head_x).argmax(1)
    if out.rounds:
        metrics["rounds"] = tuning_report.score_rounds(out.rounds, labels)
    metrics["head_accuracy"] = report.accuracy_metrics(head_pred, labels, classes.names)["accuracy"]
    return metrics


def _write_outputs(folder: Path, config, model, out, metrics, classes, labels, item_ids) -> list[str]:
    """Classifier, predictions and plots into `folder` (the staging folder); returns the plots."""
    artifact.save(folder / "classifier", head=out.head, class_names=classes.names, model=model,
                  model_source=model_source(config.model.kind, config.model.path, config.model.get("arch", "")),
                  method=config.method, config_json=config.to_json(), metrics=metrics,
                  embed_batch=config.embed.batch_size, extra_tensors=out.model_params,
                  model_setup=out.model_setup)
    report.write_predictions(folder / "predictions.csv", item_ids, out.predictions, out.probs,
                             classes.names)
    chain.write_pool_probs(folder, item_ids, out.probs)
    plots = ["confidence.png"]
    report.plot_confidence(folder / "confidence.png", out.probs, out.predictions, labels)
    if metrics["accuracy"] is not None:
        report.plot_confusion(folder / "confusion.png", out.predictions, labels, classes.names)
        plots.insert(0, "confusion.png")
    if out.rounds:
        tuning_report.plot_rounds(folder / "rounds.png", out.rounds, metrics.get("rounds"))
        plots.append("rounds.png")
    for name, draw in (out.plots or {}).items():
        draw(folder / name)
        plots.append(name)
    return plots


def _chained_outputs(out: MethodOutputs, start, method: Method, config, prior_record: dict) -> MethodOutputs:
    """A chained run's outputs: the start run's tuned parameters (then the method's own, if it
    tunes too) for the artifact, and the chain and its prior in the metrics."""
    params = {**start.classifier.params, **(out.model_params or {})}
    setup_ = out.model_setup or start.classifier.meta.get("model_setup") or None
    used = "used as the method's prior / starting labels" if method.uses_prior else \
        f"not used: {method.name} has no prior or starting labels"
    metrics = dict(out.metrics, chain=start.chain + [config.method],
                   chain_prior=dict(prior_record, use=used))
    return out._replace(model_params=params or None, model_setup=setup_, metrics=metrics)


def _chain_section(runs: list[str], prior: dict) -> str:
    """Markdown: the runs this one starts from, and what became of the start run's probabilities."""
    lines = ["", "## Chain", "", " -> ".join(f"`{r}`" for r in runs), "",
             ("This run embedded the pool with the start run's tuned model (the zero-shot rows above "
              "are on those features) and its artifact carries those parameters."),
             f"Start probabilities: {prior['use']}; source: {prior['source']}."]
    if "agreement_with_start_predictions" in prior:
        lines.append(f"Their argmax agrees with the start run's predictions.csv on "
                     f"{100 * prior['agreement_with_start_predictions']:.2f}% of the pool.")
    return "\n".join(lines) + "\n"


def _rounds_section(scores: list[dict], stages: dict) -> str:
    """Markdown table of the scored tuning rounds (a method's stages, when it names them)."""
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    lines = ["", "## Rounds (scored against the pool's labels; the method never saw them)", "",
             "| round | stage | K | pseudo-labels | their accuracy | pool accuracy after it |", "|---|---|---|---|---|---|"]
    lines += [f"| {s['round']} | {stages.get(str(s['round']), '')} | {s['k']} | {s['n_pseudo']} | "
              f"{pct(s['pseudo_label_accuracy'])} | {pct(s.get('pool_accuracy'))} |" for s in scores]
    return "\n".join(lines) + "\n"
