"""Anomaly-scoring jobs (MuSc): pool -> patch maps -> method -> scores.csv, metrics, plots, report.

`run_anomaly_job(config, workdir)` is what `adapt.engine.run` dispatches to for methods that define
`run_job` (methods/musc.py). Labels, when the pool has them, are for evaluation only: the class
named good / normal / nominal (or `method_args.normal_class`) is normal, every other class
anomalous. Masks (pools with `mask(i)`, e.g. the CutPaste defect pools) give pixel metrics.
"""
from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import numpy as np

NORMAL_NAMES = ("good", "normal", "nominal", "ok")
RUNLOCAL_LIMIT = 256


class PoolTooSmall(ValueError):
    """The pool has too few images for mutual scoring."""


class AnomalyInputs(NamedTuple):
    """patch_maps: one (N, h_l, w_l, C_l) float32 array per layer (host); embeddings (N, D) unit
    rows (host); image_size (H, W) of the pixel maps; mesh: the device mesh."""

    patch_maps: list
    embeddings: np.ndarray
    image_size: tuple
    mesh: Any


class AnomalyOutputs(NamedTuple):
    """scores (N,) final image scores (after RsCIN), raw_scores (N,) before RsCIN, maps (N, H, W)
    pixel anomaly maps, layer_maps: per-layer patch-grid maps (N, h_l, w_l), info: settings used."""

    scores: np.ndarray
    raw_scores: np.ndarray
    maps: np.ndarray
    layer_maps: list
    info: dict


class AnomalyMethod(NamedTuple):
    name: str
    description: str
    run: Callable[..., AnomalyOutputs]
    settings: Any


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
    from PIL import Image

    out = []
    for i in kept:
        j = int(indices[i]) if indices is not None else int(i)
        m = np.asarray(target.mask(j), np.float32)
        if m.shape != (size, size):
            m = np.asarray(Image.fromarray(m, mode="F").resize((size, size), Image.Resampling.BILINEAR))
        out.append(m >= 1.0)
    return np.stack(out)


def run_anomaly_job(config, workdir, progress: bool = True) -> dict:
    """Runs an anomaly-scoring job and writes scores.csv, metrics.json, report.md and plots."""
    import methods
    from adapt.anomaly import metrics as am
    from adapt.anomaly import report as rep
    from adapt.core import mesh as mesh_lib
    from adapt.output import staging as outputs
    from adapt.anomaly import patches
    from adapt.output import html_jobs as report_html_jobs
    from adapt.data import open_pool
    from adapt.engine import Timer
    from adapt.models import load_model
    from adapt.output.report import write_json

    workdir = outputs.check_writable(workdir)  # before any compute
    timer = Timer()
    args = config.method_args
    with timer.stage("setup"):
        method = methods.load(config.method).make(config)
        pool_cfg = config.pool
        if config.runlocal and not pool_cfg.limit:
            pool_cfg = config.pool.copy_and_resolve_references()
            pool_cfg.limit = RUNLOCAL_LIMIT
        pool = open_pool(pool_cfg)
        if len(pool) < 5:
            raise PoolTooSmall(f"the pool has {len(pool)} images; mutual scoring needs at least 5")
        mesh = mesh_lib.make_mesh(config.embed.num_devices or None)
    with timer.stage("load_model"):
        model = load_model(config.model.kind, config.model.path, config.model.grounding)
    s = method.settings
    layers = tuple(s.layers) or patches.default_layers(model)
    degrees = tuple(s.degrees) or patches.default_degrees(model)
    with timer.stage("embed"):
        feats = patches.extract(model, pool, mesh, layers, image_size=s.image_size,
                                cache_root=config.embed.cache_dir or None,
                                batch_size=config.embed.batch_size,
                                chunk_size=config.embed.chunk_size, workers=config.embed.workers,
                                progress=progress)
    size = feats.image_size
    inputs = AnomalyInputs(feats.maps, feats.embeddings, (size, size), mesh)
    scoring = model_scoring_defaults(args, s, model)
    with timer.stage("method"):
        out = method.run(inputs, layers=layers, degrees=degrees, **scoring)
    skipped = list(getattr(pool, "prescan_skipped", [])) + feats.skipped
    n = len(feats.kept)
    y_all, normal_name = anomaly_labels(pool, str(args.get("normal_class", "") or ""))
    y = None if y_all is None else y_all[feats.kept]
    baseline = am.knn_baseline(feats.embeddings, 5)
    metrics = dict(method=config.method, setting="transductive", model=model.model_id,
                   n_images=len(pool) + len(getattr(pool, "prescan_skipped", [])), n_scored=n,
                   n_skipped=len(skipped), image_size=size,
                   selection_rule="none: the config's fixed hyperparameters (its docstring says where "
                                  "each comes from), one run, no labels of this pool used", **out.info)
    metrics.update(evaluate(y, out, baseline, pool, feats.kept, size, normal_name))
    with timer.stage("write"):
        staged = outputs.begin(workdir)  # swapped in whole at the end (adapt/output/staging.py)
        ids = [pool.item_id(int(i)) for i in feats.kept]
        rep.write_scores(staged / "scores.csv", ids, out.scores, out.raw_scores, baseline, y)
        plots = rep.plot_grid(staged / "anomaly_grid.png", pool, feats.kept, out, y, size,
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
    report_html_jobs.write_anomaly(staged, pool=pool, kept=feats.kept, out=out, y=y, metrics=metrics,
                                   skipped=skipped, plots=plots, config=config)
    outputs.commit(workdir, staged)
    return metrics


def model_scoring_defaults(args, settings, model) -> dict:
    """MuSc rank window and RsCIN left to the model: frac 0 -> patches.default_window(model);
    rscin auto -> RsCIN (settings.k_list) as patches.default_rscin(model), on -> k_list, off -> none."""
    from adapt.anomaly import patches

    out = {}
    if not float(args.get("frac", 0.0) or 0.0):
        out["frac"] = patches.default_window(model)
    rscin = str(args.get("rscin", "auto") or "auto")
    if rscin not in ("auto", "on", "off"):
        raise ValueError(f"method_args.rscin must be auto, on or off, not {rscin!r}")
    if rscin == "off" or (rscin == "auto" and not patches.default_rscin(model)):
        out["k_list"] = ()
    return out


def evaluate(y, out: AnomalyOutputs, baseline, pool, kept, size, normal_name) -> dict:
    """Image metrics of the final scores, the scores before RsCIN and the kNN baseline; per
    anomaly class AUROC; pixel metrics when the pool has masks. All None without labels."""
    from adapt.anomaly import metrics as am

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
