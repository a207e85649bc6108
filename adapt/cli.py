"""The `adapt` command.

  adapt run CONFIG[:ARG] --workdir DIR [--set key=value ...]
  adapt predict ARTIFACT IMAGES... [--out predictions.csv]
  adapt methods
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys


def _cmd_run(args) -> int:
    from adapt import engine
    from adapt.config import apply_overrides, load_config

    config = apply_overrides(load_config(args.config), args.set or [])
    if args.distributed:
        from adapt import distributed

        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    metrics = engine.run(config, args.workdir, progress=not args.quiet)
    if metrics.get("n_processes", 1) > 1 and not metrics.get("seconds", {}).get("write"):
        print("process done (process 0 writes the outputs)")
        return 0
    keys = ("method", "setting", "n_images", "n_skipped", "accuracy", "zero_shot_accuracy",
            "centered_zero_shot_accuracy", "image_auroc", "image_ap")
    print(json.dumps({k: metrics[k] for k in keys if k in metrics}, indent=1))
    print(f"report: {args.workdir}/report.md")
    return 0


def _cmd_predict(args) -> int:
    """Rows for the images that decode; one stderr line per image skipped; 2 if none decodes."""
    from adapt.artifact import load
    from adapt.report import printable

    clf = load(args.artifact)
    kept, pred, probs, skipped = clf.predict_files(args.images)
    for path, reason in skipped:
        print(f"adapt: skipped {printable(path)}: {reason}", file=sys.stderr)
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout
    w = csv.writer(out)
    w.writerow(["path", "predicted_class", "confidence"])
    for j, p, pr in zip(kept, pred, probs):
        w.writerow([printable(args.images[j]), printable(clf.class_names[p]), f"{pr[p]:.6f}"])
    if args.out:
        out.close()
    if skipped:
        print(f"adapt: {len(skipped)} of {len(args.images)} images skipped (listed above)",
              file=sys.stderr)
    return 0 if len(kept) else 2


def _cmd_methods(args) -> int:
    import methods

    for name in methods.names():
        print(f"{name:<14} {methods.load(name).DESCRIPTION}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adapt", description="Adapt a frozen vision-language model to "
                                "a domain from an unlabeled image pool.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an adaptation job from a config file")
    r.add_argument("config", help="config file, optionally with an argument: configs/zero_shot.py:fashion_mnist")
    r.add_argument("--workdir", required=True, help="where the artifact, metrics and report go")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    r.add_argument("--distributed", action="store_true",
                   help="multi-process run on JAX's runtime (TPU/SLURM auto-detected, else the flags "
                   "below or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)")
    r.add_argument("--coordinator", help="host:port of process 0 (with --distributed)")
    r.add_argument("--num-processes", type=int, help="number of processes (with --distributed)")
    r.add_argument("--process-id", type=int, help="this process's index (with --distributed)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(fn=_cmd_run)
    q = sub.add_parser("predict", help="classify images with an adapted classifier")
    q.add_argument("artifact", help="the classifier folder a run wrote (WORKDIR/classifier)")
    q.add_argument("images", nargs="+", help="image files")
    q.add_argument("--out", help="write CSV here instead of standard output")
    q.set_defaults(fn=_cmd_predict)
    m = sub.add_parser("methods", help="list the methods")
    m.set_defaults(fn=_cmd_methods)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, OSError) as e:  # bad input: one clear line (ADAPT_DEBUG=1: traceback)
        if os.environ.get("ADAPT_DEBUG"):
            raise
        print(f"adapt: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _one_line(e: Exception) -> str:
    """The error as one line; a file-system error names its file and what to do."""
    if isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and e.filename:
        where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else "")
        return f"{e.strerror or e}: {where}; check its permissions and free space, or choose another folder"
    return str(e)

if __name__ == "__main__":
    sys.exit(main())
