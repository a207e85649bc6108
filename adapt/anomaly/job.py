"""Anomaly-scoring jobs (MuSc): pool -> method (patch maps, scores) -> scores.csv, metrics, plots, report.

`run(config, method, workdir)` is what `adapt.engine.run` dispatches to for methods whose
`Method.job` is "anomaly" (methods/musc.py): the job sets up the pool, the mesh and the model, calls
`method.run(AnomalyInputs)` and scores and writes what it returns. Labels, when the pool has them,
are for evaluation only: the class named good / normal / nominal (or `method_args.normal_class`) is
normal, every other class anomalous. Masks (pools with `mask(i)`, e.g. the CutPaste defect pools)
give pixel metrics. `method_args.plot_images` and `method_args.save_maps` are the job's own options.
"""
from __future__ import annotations

import time

import numpy as np
from PIL import Image

from adapt.anomaly import html as report_html
from adapt.anomaly import metrics as am
from adapt.anomaly import report as rep
from adapt.core.job import Timer
from adapt.core.method import AnomalyInputs, AnomalyOutputs, Method, PoolTooSmall
from adapt.features import setup
from adapt.output import staging as outputs
from adapt.output.report import write_json

NORMAL_NAMES = ("good", "normal", "nominal", "ok")
MIN_POOL = 5  # fewer images cannot be scored against each other (checked before the model loads)


def anomaly_labels(pool, normal_class: str = "") -> tuple[np.ndarray | None, str | None]:
    """(N,) int: 0 normal, 1 anomalous, -1 unknown; and the normal class name. (None, None) when
    the pool is unlabelled or has no normal class."""
    y = pool.labels()
    names = pool.class_names
    if y is None or not names:
        return None, None
    low = [" ".join(str(n).lower().replace("_", " ").split()) for n in names]
    wanted = [normal_class.lower()] if normal_class else list(NORMAL_NAMES)
    hits = [i for i, n in enumerate(low) if n in wanted]
    if not hits:
        return None, None
    k = hits[0]
    out = np.where(y < 0, -1, np.where(y == k, 0, 1)).astype(np.int32)
    return out, names[k]


def pool_masks(pool, kept: np.ndarray, size: int) -> np.ndarray | None:
    """(M, size, size) bool masks of the kept items, or None. Resized as the official code does:
    bilinear, then only pixels that are still exactly 1 stay in the mask."""
    target = getattr(pool, "pool", pool)
    indices = getattr(pool, "indices", None)
    if not hasattr(target, "mask"):
        return None
    out = []
    for i in kept:
        j = int(indices[i]) if indices is not None else int(i)
        m = np.asarray(target.mask(j), np.float32)
        if m.shape != (size, size):
            m = np.asarray(Image.fromarray(m, mode="F").resize((size, size), Image.Resampling.BILINEAR))
        out.append(m >= 1.0)
    return np.stack(out)


def _check_pool_size(pool) -> None:
    if len(pool) < MIN_POOL:
        raise PoolTooSmall(f"the pool has {len(pool)} images; mutual scoring needs at least {MIN_POOL}")


def run(config, method: Method, workdir, progress: bool = True) -> dict:
    """Runs an anomaly-scoring job and writes scores.csv, metrics.json, report.md and plots."""
    workdir = outputs.check_writable(workdir)  # before any compute
    timer = Timer()
    args = config.method_args
    embed, pool, mesh, model, _ = setup.start_job(config, timer, check=_check_pool_size)
    with timer.stage("method"):
        out = method.run(AnomalyInputs(model, pool, mesh, embed, progress, int(config.seed)))
    skipped = list(getattr(pool, "prescan_skipped", [])) + list(out.skipped)
    size, kept = out.image_size, out.kept
    y_all, normal_name = anomaly_labels(pool, str(args.get("normal_class", "") or ""))
    y = None if y_all is None else y_all[kept]
    baseline = am.knn_baseline(out.embeddings, 5)
    metrics = dict(method=config.method, setting="transductive", model=model.model_id,
                   n_images=setup.n_pool_items(pool), n_scored=len(kept),
                   n_skipped=len(skipped), image_size=size,
                   selection_rule="none: the config's fixed hyperparameters (its docstring says where "
                                  "each comes from), one run, no labels of this pool used", **out.info)
    metrics.update(evaluate(y, out, baseline, pool, kept, size, normal_name))
    with timer.stage("write"):
        staged = outputs.begin(workdir)  # swapped in whole at the end (adapt/output/staging.py)
        ids = [pool.item_id(int(i)) for i in kept]
        rep.write_scores(staged / "scores.csv", ids, out.scores, out.raw_scores, baseline, y)
        plots = rep.plot_grid(staged / "anomaly_grid.png", pool, kept, out, y, size,
                              per_side=int(args.get("plot_images", 8) or 8))
        if y is not None:
            plots.append(rep.plot_histogram(staged / "score_histogram.png", out.scores, y))
        if bool(args.get("save_maps", False)):
            np.save(staged / "anomaly_maps.npy", out.maps.astype(np.float16))
    metrics["seconds"] = timer.seconds
    metrics["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    write_json(staged / "metrics.json", metrics)
    rep.write_report(staged / "report.md", metrics, dict(model=model.model_id, pool=pool.source,
                                                          normal=normal_name), skipped, plots)
    report_html.write_anomaly(staged, pool=pool, kept=kept, out=out, y=y, metrics=metrics,
                              skipped=skipped, plots=plots, config=config)
    outputs.commit(workdir, staged)
    return metrics


def evaluate(y, out: AnomalyOutputs, baseline, pool, kept, size, normal_name) -> dict:
    """Image metrics of the final scores, the scores before RsCIN and the kNN baseline; per
    anomaly class AUROC; pixel metrics when the pool has masks. All None without labels."""
    m = dict(normal_class=normal_name, n_normal=None, n_anomalous=None)
    m.update(am.binary_metrics(np.zeros(0), np.zeros(0), "image"))
    m.update(image_auroc_before_rscin=None, baseline_knn5_image_auroc=None,
             baseline_knn5_image_ap=None, image_auroc_by_class=None)
    if y is None:
        return m
    m.update(n_normal=int((y == 0).sum()), n_anomalous=int((y == 1).sum()))
    m.update(am.binary_metrics(y, out.scores, "image"))
    m["image_auroc_before_rscin"] = am.image_auroc(y, out.raw_scores)
    b = am.binary_metrics(y, baseline, "image")
    m.update(baseline_knn5_image_auroc=b["image_auroc"], baseline_knn5_image_ap=b["image_ap"])
    raw = pool.labels()[kept]
    names = pool.class_names
    by_class = {}
    for k, name in enumerate(names):
        if name == normal_name or not (raw == k).any():
            continue
        sel = (y == 0) | (raw == k)
        by_class[name] = am.image_auroc(y[sel], out.scores[sel])
    m["image_auroc_by_class"] = by_class if len(by_class) > 1 else None
    masks = pool_masks(pool, kept, size)
    if masks is not None:
        m.update(am.pixel_metrics(masks, out.maps))
    return m
