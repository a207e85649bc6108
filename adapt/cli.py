"""The `adapt` command.

  adapt run CONFIG[:ARG] --workdir DIR [--set key=value ...]
  adapt predict ARTIFACT IMAGES... [--out predictions.csv]
  adapt soup RUN_DIR... --out DIR [--greedy --labels HELD_OUT.csv]
  adapt methods
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import warnings

from adapt import engine, registry
from adapt.core import distributed
from adapt.core.config import apply_overrides, config_names, load_config
from adapt.output import soup
from adapt.output.artifact import load
from adapt.output.html_page import record_command
from adapt.output.report import printable
from configs.common import PRESETS


def _cmd_run(args) -> int:
    config = apply_overrides(load_config(args.config), args.set or [])
    # report.html shows the command that reproduces the run
    record_command(["run", args.config, "--workdir", args.workdir,
                    *[a for s in args.set or [] for a in ("--set", s)]])
    if args.distributed:
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


def _cmd_soup(args) -> int:
    """Uniform (label-free) or greedy (held-out labels) soup of runs that differ only in seed."""
    runs = [soup.read(r) for r in args.runs]
    soup.check_compatible(runs)
    if args.greedy:
        if not args.labels:
            raise ValueError("--greedy needs held-out labelled images: --labels FILE.csv (header path,class)")
        images, labels = soup.read_labelled(args.labels, runs[0].meta["class_names"])
        tensors, kept, alone, best = soup.greedy(runs, soup.held_out_scorer(runs[0], images, labels))
        info = dict(kind="greedy", held_out=str(args.labels), n_held_out=len(images), kept=kept,
                    ingredient_accuracy=alone, soup_accuracy=best)
    else:
        tensors, info = soup.uniform([r.tensors for r in runs]), dict(kind="uniform")
    path = soup.write(args.out, runs, tensors, info)
    print(json.dumps(info, indent=1))
    print(f"souped classifier: {path}")
    return 0


def _cmd_methods(args) -> int:
    configs = set(config_names())
    print(f"{'method':<13} {'config':<13} what it does")
    for name in registry.names():
        config = name if name in configs else "-"
        print(f"{name:<13} {config:<13} {registry.description(name)}")
    presets = ", ".join(p for p in PRESETS if p and p != "folder")
    print(f"\nadapt run CONFIG[:PRESET] --workdir DIR: CONFIG is a shipped config name above or a config "
          f"file;\nPRESET one of {presets} (musc also defects,CLASS); none = a folder: "
          "--set pool.path=DIR")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adapt", description="Adapt a frozen vision-language model to "
                                "a domain from an unlabeled image pool.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an adaptation job from a config file")
    r.add_argument("config", help="a shipped config's name or a config file, optionally with an argument: "
                   "zero_shot:fashion_mnist, configs/zlap.py:digits (adapt methods lists them)")
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
    s = sub.add_parser("soup", help="average the tuned parameters of runs that differ only in seed")
    s.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (or their classifier/ folders)")
    s.add_argument("--out", required=True, help="folder for the souped classifier (OUT/classifier)")
    s.add_argument("--greedy", action="store_true", help="greedy soup on held-out labels (few-label "
                   "setting only); default: the uniform soup, which needs no labels")
    s.add_argument("--labels", help="with --greedy: CSV `path,class` of labelled held-out images")
    s.set_defaults(fn=_cmd_soup)
    m = sub.add_parser("methods", help="list the methods")
    m.set_defaults(fn=_cmd_methods)
    return p


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as `adapt: warning: ...` lines, without the source line (ADAPT_DEBUG=1: Python's form)."""
    return f"adapt: warning: {message}\n"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not os.environ.get("ADAPT_DEBUG"):
        warnings.formatwarning = _one_line_warning
    try:
        return args.fn(args)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
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
