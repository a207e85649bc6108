"""One adaptation job: pool -> embeddings -> class texts -> method -> artifact, metrics, report."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import jax
import numpy as np

import methods
from adapt.output import artifact
from adapt.core import distributed
from adapt.core import ops
from adapt.output import staging as outputs
from adapt.output import report
from adapt.output import html as report_html
from adapt.tuning import report as tuning_report
from adapt.core import mesh as mesh_lib
from adapt.data import open_pool, resolve_classes
from adapt.features.embed import check_settings, embed_pool
from adapt.core.method import EmbedOptions, MethodInputs
from adapt.models import load_model, model_source
from adapt.features.text import encode_classes

RUNLOCAL_LIMIT = 256


class Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        t = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t


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


def _config_command(config) -> str:
    return f"method={config.method} model={config.model.path or 'offline default'} " \
           f"pool={config.pool.kind}:{config.pool.path or config.pool.split}"


def run(config, workdir, progress: bool = True) -> dict:
    """Runs the job described by `config`, writes everything into `workdir`, returns the metrics."""
    module = methods.load(config.method)
    if hasattr(module, "run_job"):  # methods with their own job shape (MuSc: anomaly scores, maps)
        return module.run_job(config, workdir, progress=progress)
    timer = Timer()
    with timer.stage("setup"):  # everything that can fail on bad input, before any compute
        workdir = outputs.check_writable(workdir)
        check_settings(config.embed.batch_size, config.embed.chunk_size, config.embed.workers)
        method = module.make(config)
        pool_cfg = config.pool
        if config.runlocal and not pool_cfg.limit:
            pool_cfg = config.pool.copy_and_resolve_references()
            pool_cfg.limit = RUNLOCAL_LIMIT
        pool = open_pool(pool_cfg)
        classes = resolve_classes(pool, names=list(config.classes.names) or None,
                                  names_file=config.classes.file or None,
                                  descriptions_file=config.classes.descriptions or None)
        mesh = mesh_lib.make_mesh(config.embed.num_devices or None)
    with timer.stage("load_model"):
        model = load_model(config.model.kind, config.model.path, config.model.grounding)
    embed_kwargs = dict(cache_root=config.embed.cache_dir or None, batch_size=config.embed.batch_size,
                        chunk_size=config.embed.chunk_size, workers=config.embed.workers)
    with timer.stage("embed"):
        if distributed.is_multiprocess():  # each process embeds its slice; rows joined globally
            start, end = distributed.process_slice(len(pool))
            print(f"process {jax.process_index()}/{jax.process_count()}: embedding pool items "
                  f"[{start}, {end}) of {len(pool)}", flush=True)
            kept, emb_skipped, x, mask, views = distributed.embed_slices(
                model, pool, mesh, progress=progress, **embed_kwargs)
        else:
            emb = embed_pool(model, pool, mesh, progress=progress, **embed_kwargs)
            kept, emb_skipped = emb.kept, emb.skipped
            x, mask = mesh_lib.shard_rows(emb.embeddings, mesh)
            views = {k: mesh_lib.shard_rows(v, mesh)[0] for k, v in emb.views.items()}
    views = {"embedding": x} | views
    skipped = list(getattr(pool, "prescan_skipped", [])) + emb_skipped
    with timer.stage("embed_classes"):
        texts = encode_classes(model, classes.names, list(config.prompts.templates),
                               classes.descriptions, config.prompts.beta)
    n = len(kept)
    labels = None if classes.labels is None else np.asarray(classes.labels)[kept]
    few = module.few_labels(config, labels) if hasattr(module, "few_labels") and labels is not None else None
    inputs = MethodInputs(x=x, mask=mask, class_weights=mesh_lib.replicate(texts.weights, mesh),
                          logit_scale=float(model.logit_scale), views=views, class_texts=texts,
                          mesh=mesh, key=jax.random.key(config.seed), class_names=list(classes.names),
                          model=model, pool=pool, kept=np.asarray(kept), workdir=workdir,
                          progress=progress, labels=few, seed=int(config.seed),
                          embed=EmbedOptions(config.embed.cache_dir or None, config.embed.batch_size,
                                             config.embed.chunk_size, config.embed.workers))
    with timer.stage("method"):
        out = method.run(inputs)
        baselines = zero_shot_baselines(x, mask, texts, views, float(model.logit_scale), n)

    metrics = dict(method=config.method, setting=out.setting, model=model.model_id,
                   n_images=len(pool) + len(getattr(pool, "prescan_skipped", [])),
                   n_embedded=n, n_skipped=len(skipped), n_classes=len(classes.names),
                   selection_rule="none: one run, last iterate, no labels used", **out.metrics)
    metrics["zero_shot_head"] = "class_map" if "class_map" in baselines else "cosine"
    if texts.identical:  # encode_classes warned; keep it in the record too
        metrics["identical_class_embeddings"] = texts.identical
    if labels is not None and (labels >= 0).any():
        metrics.update(report.accuracy_metrics(out.predictions, labels, classes.names))
        acc = {k: report.accuracy_metrics(p, labels, classes.names)["accuracy"] for k, p in baselines.items()}
        metrics["zero_shot_accuracy"] = acc.get("class_map", acc["cosine"])
        if "class_map" in acc:
            metrics["cosine_zero_shot_accuracy"] = acc["cosine"]
        metrics["centered_zero_shot_accuracy"] = acc["centered"]
        head_x = out.head_features if out.head_features is not None else distributed.to_host(views[out.head.view])[:n]
        head_pred = out.head.probs(head_x).argmax(1)
        if out.rounds:
            metrics["rounds"] = tuning_report.score_rounds(out.rounds, labels)
        metrics["head_accuracy"] = report.accuracy_metrics(head_pred, labels, classes.names)["accuracy"]
    else:
        metrics.update(accuracy=None, per_class_accuracy=None, zero_shot_accuracy=None,
                       centered_zero_shot_accuracy=None, head_accuracy=None)

    metrics["n_processes"] = jax.process_count()
    if not distributed.is_writer():  # process 0 alone writes the shared outputs
        metrics["seconds"] = timer.seconds
        return metrics
    with timer.stage("write"):
        staging = outputs.begin(workdir)
        plots = _write_outputs(staging, config, model, out, metrics, classes, labels,
                               [pool.location(int(i)) for i in kept])
    with timer.stage("report"):  # report.html: galleries with thumbnails of the shown images only
        report_html.write(staging, pool=pool, kept=kept, out=out, baselines=baselines, labels=labels,
                          class_names=classes.names, metrics=metrics, skipped=skipped, plots=plots,
                          config=config)
    metrics["seconds"] = timer.seconds
    report.write_json(staging / "metrics.json", metrics)
    info = dict(model=model.model_id, pool=pool.source, classes=classes.names,
                command=_config_command(config))
    report.write_report(staging / "report.md", metrics, info, skipped, plots)
    if metrics.get("rounds"):
        with open(staging / "report.md", "a") as f:
            f.write(_rounds_section(metrics["rounds"], metrics.get("stages") or {}))
    outputs.commit(workdir, staging)
    return metrics


def _write_outputs(folder: Path, config, model, out, metrics, classes, labels, item_ids) -> list[str]:
    """Classifier, predictions and plots into `folder` (the staging folder); returns the plots."""
    artifact.save(folder / "classifier", head=out.head, class_names=classes.names, model=model,
                  model_source=model_source(config.model.kind, config.model.path),
                  method=config.method, config_json=config.to_json(), metrics=metrics,
                  embed_batch=config.embed.batch_size, extra_tensors=out.model_params,
                  model_setup=out.model_setup)
    report.write_predictions(folder / "predictions.csv", item_ids, out.predictions, out.probs,
                             classes.names)
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


def _rounds_section(scores: list[dict], stages: dict) -> str:
    """Markdown table of the scored tuning rounds (a method's stages, when it names them)."""
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    lines = ["", "## Rounds (scored against the pool's labels; the method never saw them)", "",
             "| round | stage | K | pseudo-labels | their accuracy | pool accuracy after it |", "|---|---|---|---|---|---|"]
    lines += [f"| {s['round']} | {stages.get(str(s['round']), '')} | {s['k']} | {s['n_pseudo']} | "
              f"{pct(s['pseudo_label_accuracy'])} | {pct(s.get('pool_accuracy'))} |" for s in scores]
    return "\n".join(lines) + "\n"
