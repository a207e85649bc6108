"""MuSc against the kNN baseline as the anomaly ratio of a CutPaste pool grows (issue 21).

For each pool (class, ratio, seed, split): the offline model's stage maps (strides given) and
pooled embeddings are extracted once; for every (stride, r) the full table of nearest-patch
distances d_ij(p) is computed once and sorted over j, so that every MSM rank window is a
cumulative-sum lookup (the same numbers as adapt.anomaly.msm: checked against `musc.layer_scores` on the
default window of every pool). Every setting = (strides, degrees, window, RsCIN on/off) is then a
fusion of those maps; image AUROC of each is stored with the kNN-5 baseline's.

  PYTHONPATH=. python experiments/musc/ratios.py --classes Pullover,Sandal --split train \
      --seeds 7 --ratios 0,0.2,0.35,0.5 --out experiments/musc/results_ratios_heldout.json
  PYTHONPATH=. python experiments/musc/ratios.py --table experiments/musc/results_ratios_heldout.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

WINDOWS = (0.1, 0.3, 0.5)  # frac: the rank window [0, frac) of the N - 1 other images
DEGREE_SETS = ((1,), (3,), (5,), (1, 3, 5))


def sorted_distances(z):
    """z (N, P, C) unit rows -> (N, P, N - 1) ascending d_ij(p) over j != i (float32)."""
    import jax
    import jax.numpy as jnp

    n = z.shape[0]

    @jax.jit
    def row(zi):
        s = jnp.einsum("pc,nqc->npq", zi, z, precision=jax.lax.Precision.HIGHEST)
        return s.max(-1)  # (N, P)

    m = np.stack([np.asarray(row(z[i])) for i in range(n)])  # (N_i, N_j, P)
    d = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * m)).astype(np.float32)
    d[np.arange(n), np.arange(n)] = np.inf
    return np.sort(d.transpose(0, 2, 1), axis=-1)[..., : n - 1]


def window_means(sorted_d, fracs):
    """(N, P, N - 1) sorted distances -> {frac: (N, P) mean over ranks msm.rank_window(N, frac)}."""
    from adapt.anomaly import msm

    n = sorted_d.shape[0]
    cs = np.concatenate([np.zeros(sorted_d.shape[:2] + (1,)), np.cumsum(sorted_d, -1, dtype=np.float64)], -1)
    out = {}
    for f in fracs:
        lo, hi = msm.rank_window(n, f)
        out[f] = ((cs[..., hi] - cs[..., lo]) / (hi - lo)).astype(np.float32)
    return out


def evaluate_pool(cls, ratio, seed, split, strides, model, mesh, degrees=(1, 3, 5)):
    import jax.numpy as jnp

    from adapt.anomaly import job as anomaly
    from adapt.anomaly import patches
    from adapt.anomaly.metrics import image_auroc, knn_baseline
    from adapt.data.defects import defect_pool
    from methods import musc

    pool = defect_pool(cls, seed=seed, split=split, defect_ratio=ratio)
    t0 = time.perf_counter()
    feats = patches.extract(model, pool, mesh, strides, batch_size=32, progress=False)
    y = anomaly.anomaly_labels(pool)[0][feats.kept]
    n = len(y)
    maps = {}  # (stride, r, frac) -> (N, h, w)
    for li, st in enumerate(strides):
        h, w = feats.maps[li].shape[1:3]
        for r in degrees:
            z = np.asarray(musc.lnamd(jnp.asarray(feats.maps[li]), r))
            for f, a in window_means(sorted_distances(z), WINDOWS).items():
                maps[st, r, f] = a.reshape(n, h, w)
    check = musc.layer_scores(feats.maps[strides.index(16)], mesh, musc.Settings(), (3,))[0]
    max_diff = float(np.abs(check - maps[16, 3, 0.3]).max())
    assert max_diff < 1e-4, f"table path differs from adapt.anomaly.msm by {max_diff}"
    size = (feats.image_size, feats.image_size)
    emb = jnp.asarray(feats.embeddings)
    out = dict(pool=cls, ratio=ratio, seed=seed, split=split, n=n, n_anomalous=int(y.sum()),
               baseline_knn5=image_auroc(y, knn_baseline(feats.embeddings, 5)), msm_check=max_diff,
               settings={})
    layer_sets = [(s,) for s in strides] + ([tuple(strides)] if len(strides) > 1 else [])
    for use, rs, f in itertools.product(layer_sets, DEGREE_SETS, WINDOWS):
        if not set(rs) <= set(degrees):
            continue
        per_layer = [np.mean([maps[st, r, f] for r in rs], axis=0) for st in use]
        raw = np.asarray(musc.fuse(per_layer, size)[1], np.float64)
        final = np.asarray(musc.rscin(jnp.asarray(raw, jnp.float32), emb, (1, 2, 3)), np.float64)
        name = f"s{'+'.join(map(str, use))} r{','.join(map(str, rs))} w{f}"
        out["settings"][name] = dict(no_rscin=image_auroc(y, raw), rscin=image_auroc(y, final))
    out["seconds"] = time.perf_counter() - t0
    return out


def table(results, names) -> str:
    """Mean image AUROC per ratio (over classes and seeds) for the kNN baseline and each setting."""
    ratios = sorted({r["ratio"] for r in results})
    lines = ["| setting | " + " | ".join(f"ratio {x or 'std 15/285'}" for x in ratios) + " | min margin over kNN |",
             "|" + "---|" * (len(ratios) + 2)]

    def per_ratio(get):
        return [np.mean([get(r) for r in results if r["ratio"] == x]) for x in ratios]

    knn = per_ratio(lambda r: r["baseline_knn5"])
    lines.append("| kNN-5 baseline | " + " | ".join(f"{v:.3f}" for v in knn) + " | |")
    for name in names:
        for mode in ("no_rscin", "rscin"):
            v = per_ratio(lambda r, n=name, m=mode: r["settings"][n][m])
            margin = min(a - b for a, b in zip(v, knn))
            lines.append(f"| {name} {'RsCIN' if mode == 'rscin' else 'no RsCIN'} | "
                         + " | ".join(f"{x:.3f}" for x in v) + f" | {margin:+.3f} |")
    return "\n".join(lines)


def report_table(results, name, mode="no_rscin") -> str:
    """One setting against kNN-5, per ratio: per class mean ± std over seeds, and the mean over
    classes (± std over seeds of the per-seed class mean); pools where MuSc >= kNN counted."""
    ratios = sorted({r["ratio"] for r in results})
    classes = list(dict.fromkeys(r["pool"] for r in results))
    seeds = sorted({r["seed"] for r in results})
    lines = [f"| ratio | method | " + " | ".join(classes) + " | mean over classes | MuSc >= kNN |",
             "|" + "---|" * (len(classes) + 4)]
    for x in ratios:
        rows = [r for r in results if r["ratio"] == x]
        wins = sum(r["settings"][name][mode] >= r["baseline_knn5"] for r in rows)
        for label, get in (("kNN-5", lambda r: r["baseline_knn5"]),
                           (f"MuSc {name}", lambda r: r["settings"][name][mode])):
            cells = []
            for c in classes:
                v = [get(r) for r in rows if r["pool"] == c]
                cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "")
            per_seed = [np.mean([get(r) for r in rows if r["seed"] == sd]) for sd in seeds
                        if any(r["seed"] == sd for r in rows)]
            tail = f"{wins}/{len(rows)}" if label != "kNN-5" else ""
            lines.append(f"| {x or '15/285'} | {label} | " + " | ".join(cells)
                         + f" | {np.mean(per_seed):.3f} ± {np.std(per_seed):.3f} | {tail} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", default="Trouser,Bag,Sneaker")
    ap.add_argument("--ratios", default="0,0.2,0.35,0.5", help="0 = the standard 15 of 285")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--split", default="test")
    ap.add_argument("--strides", default="16,32")
    ap.add_argument("--degrees", default="1,3,5", help="LNAMD r to compute (settings needing others are skipped)")
    ap.add_argument("--out", default="")
    ap.add_argument("--table", default="")
    ap.add_argument("--settings", default="", help="';'-separated setting names for --table (default all)")
    ap.add_argument("--report", default="", help="with --table: one setting name, e.g. 's16 r3 w0.1'")
    ap.add_argument("--mode", default="no_rscin", help="with --report: no_rscin | rscin")
    a = ap.parse_args()
    if a.table:
        res = json.loads(Path(a.table).read_text())["results"]
        if a.report:
            print(report_table(res, a.report, a.mode))
            return
        names = a.settings.split(";") if a.settings else list(res[0]["settings"])
        print(table(res, names))
        return
    from adapt.core import mesh as mesh_lib
    from adapt.models import load_model

    model, mesh = load_model("offline"), mesh_lib.make_mesh()
    strides = tuple(int(v) for v in a.strides.split(","))
    results = []
    for seed, cls, ratio in itertools.product([int(v) for v in a.seeds.split(",")],
                                              a.classes.split(","), [float(v) for v in a.ratios.split(",")]):
        results.append(evaluate_pool(cls, ratio, seed, a.split, strides, model, mesh,
                                     tuple(int(v) for v in a.degrees.split(","))))
        r = results[-1]
        print(json.dumps({k: v for k, v in r.items() if k != "settings"}), flush=True)
        if a.out:
            Path(a.out).write_text(json.dumps(dict(date=time.strftime("%Y-%m-%d"), model=model.model_id,
                                                   results=results), indent=1))


if __name__ == "__main__":
    main()
