"""A run's outputs replace the previous run's all together or not at all: staging folder + swap.

The write stage writes every output (classifier/, metrics.json, report.md, predictions.csv, plots)
into WORKDIR/.adapt-staging/ and lists them in its outputs.json; one rename of that folder to
WORKDIR/.adapt-swap/ is the commit point. `finish_swap` then moves each output into WORKDIR (an
old folder goes to WORKDIR/.adapt-trash/ first), removes the previous run's outputs that this run
did not make, and moves outputs.json into WORKDIR last. Every step can be repeated, so:
  * killed before the commit: the previous outputs are untouched; the next run discards the staging;
  * killed after it: .adapt-swap/ holds the complete new set, and the next run, `adapt predict` and
    `artifact.load` (on WORKDIR/classifier) finish the swap before reading anything.
WORKDIR/outputs.json names the outputs of the run now in place.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

STAGING, SWAP, TRASH, LISTING = ".adapt-staging", ".adapt-swap", ".adapt-trash", "outputs.json"


def check_writable(workdir) -> Path:
    """Creates `workdir` if needed; ValueError (one line) if it cannot be written: before compute."""
    workdir = Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as e:
        raise ValueError(f"workdir {workdir} cannot be written ({e.strerror}); fix its permissions "
                         "or choose another --workdir") from None
    return workdir


def begin(workdir: Path) -> Path:
    """An empty staging folder in `workdir` (a swap left by a killed run is finished first)."""
    finish_swap(workdir)
    staging = workdir / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def commit(workdir: Path, staging: Path) -> None:
    """Swaps the staged outputs in (see the module docstring)."""
    names = sorted(p.name for p in staging.iterdir() if p.name != LISTING and p.name[0] != ".")
    with open(staging / LISTING, "w") as f:
        json.dump({"outputs": names}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(staging, workdir / SWAP)
    finish_swap(workdir)


def _listed(path: Path) -> list[str]:
    """Plain names only: a tampered listing cannot point outside the workdir."""
    try:
        names = list(json.loads(path.read_text())["outputs"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [n for n in names if isinstance(n, str) and n not in ("", ".", "..") and "/" not in n
            and os.sep not in n]


def _discard(path: Path, trash: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        target = trash / path.name
        if target.exists():
            shutil.rmtree(target)
        os.replace(path, target)
    elif path.exists() or path.is_symlink():
        path.unlink()


def finish_swap(workdir) -> bool:
    """Moves a committed swap into place (idempotent); False when there was none."""
    workdir = Path(workdir)
    swap = workdir / SWAP
    if not (swap / LISTING).is_file():
        return False
    new = _listed(swap / LISTING)
    trash = workdir / TRASH
    trash.mkdir(exist_ok=True)
    for name in _listed(workdir / LISTING):
        if name not in new and name not in (LISTING, SWAP, STAGING, TRASH):
            _discard(workdir / name, trash)
    for name in new:
        if (swap / name).exists() or (swap / name).is_symlink():
            _discard(workdir / name, trash)
            os.replace(swap / name, workdir / name)
    os.replace(swap / LISTING, workdir / LISTING)
    shutil.rmtree(swap)
    shutil.rmtree(trash, ignore_errors=True)
    return True


def finish_swap_for_reading(workdir) -> None:
    """`finish_swap` for readers: ValueError (one line) when the folder cannot be written."""
    try:
        finish_swap(workdir)
    except OSError as e:
        raise ValueError(f"{workdir}: the last run was interrupted while swapping its outputs in and "
                         f"the swap cannot be finished here ({e.strerror}); run `adapt predict` once "
                         "with write access to it, or rerun the job") from None
