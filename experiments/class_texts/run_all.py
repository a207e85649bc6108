"""Every run of experiments/class_texts/README.md, in one process: the frozen model is loaded once
and shared by the runs (the box is shared and each `adapt run` spends most of its time loading it);
each run is otherwise the engine's own classification job, `adapt.engine.run(config, workdir)`,
with the same config `adapt run CONFIG --set ...` would build (its metrics.json names the command).

Usage:
  python experiments/class_texts/run_all.py choose RUNS_DIR        # the zpe_top choice (held out)
  python experiments/class_texts/run_all.py test RUNS_DIR ZPE_TOP  # every table row
Runs whose metrics.json exists are skipped.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from adapt import engine
from adapt.core.config import apply_overrides, load_config
from adapt.features import setup

CLIP80 = ["prompts.template_set=clip80"]
VARIANTS = {
    "base": [],
    "clip80": CLIP80,
    "zpe": CLIP80 + ["prompts.weighting=zpe", "prompts.zpe_top=0"],
    "zpe_top": CLIP80 + ["prompts.weighting=zpe"],  # + prompts.zpe_top=ZPE_TOP
    "real_frequent": ["classes.synonyms=frequent"],
    "real_ensemble": ["classes.synonyms=ensemble"],
    "loki": ["decision.rule=loki"],
    "loki_text": ["decision.rule=loki", "decision.loki_metric=text"],
}
POOLS = {"fashion_mnist": ":fashion_mnist", "fashion_mnist_inverted": ":fashion_mnist_inverted",
         "digits": ":digits", "textures": ""}
CHOICES = (0, 5, 10, 20)  # zpe_top candidates (README "Rule")
HELD_OUT = ["pool.split=train", "pool.limit=3000"]


def share_model():
    """Makes setup.load_job_model return one loaded model per (kind, path, grounding)."""
    loaded, load = {}, setup.load_job_model

    def shared(config):
        key = (config.model.kind, config.model.path, config.model.grounding)
        if key not in loaded:
            loaded[key] = load(config)
        return loaded[key]

    setup.load_job_model = shared


def run(spec: str, sets: list[str], out: Path) -> None:
    if (out / "metrics.json").is_file():
        return
    config = apply_overrides(load_config(spec), sets)
    m = engine.run(config, out, progress=False)
    print(f"{out}: accuracy {m['accuracy']}", flush=True)


def choose(runs: Path) -> None:
    for top in CHOICES:
        sets = HELD_OUT + CLIP80 + ["prompts.weighting=zpe", f"prompts.zpe_top={top}"]
        run("configs/zero_shot.py:fashion_mnist", sets, runs / "choose" / f"zpe_top_{top}")
    acc = {t: json.loads((runs / "choose" / f"zpe_top_{t}" / "metrics.json").read_text())["accuracy"]
           for t in CHOICES}
    print("held-out accuracy by zpe_top:", acc, "-> chosen", max(CHOICES, key=lambda t: (acc[t], -CHOICES.index(t))))


def test(runs: Path, top: int) -> None:
    for pool, arg in POOLS.items():
        extra = [f"pool.path={runs / 'textures_pool'}"] if pool == "textures" else []
        for method in ("zero_shot", "zlap"):
            for variant, sets in VARIANTS.items():
                if variant == "zpe_top" and top == 0:
                    continue
                sets = sets + [f"prompts.zpe_top={top}"] if variant == "zpe_top" else sets
                run(f"configs/{method}.py{arg}", extra + sets, runs / pool / method / variant)


if __name__ == "__main__":
    share_model()
    what, runs = sys.argv[1], Path(sys.argv[2])
    choose(runs) if what == "choose" else test(runs, int(sys.argv[3]))
