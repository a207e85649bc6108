"""Every GDA / TEEN / few-shot-prototype variant of README.md on one pool, in one process: the pool
and the class texts are embedded once (the engine's classification set-up, adapt/engine.py), then
each variant's method runs on the same inputs and is scored against the pool's labels. The same
numbers as one `adapt run` per variant (checked on two of them in README.md), minutes faster on a
busy machine because the model loads once.

  PYTHONPATH=. python experiments/statistics/sweep.py fashion_mnist|digits > OUT.jsonl
"""
import json
import sys
import time

import jax
import numpy as np

from adapt import engine, registry
from adapt.core import mesh as mesh_lib
from adapt.core.config import apply_overrides, load_config
from adapt.core.job import Timer
from adapt.core.method import MethodInputs
from adapt.data import resolve_classes
from adapt.features import setup
from adapt.features.text import encode_classes

VARIANTS = [("gda", [f"method_args.setting=ssl", f"method_args.labels_per_class={k}"]) for k in (1, 2, 4)] + [
    ("teen", [f"method_args.base={b}", f"method_args.lam={lam}", f"method_args.labels_per_class={k}"])
    for k in (1, 2, 4) for b, lam in (("text", 0.5), ("pool", 0.5), ("text", 1.0))] + [("gda", []), ("transclip", [])]


def inputs_for(config):
    """The classification job's inputs (without few labels) and the pool's labels."""
    embed, pool, mesh, model, classes = setup.start_job(config, Timer(), check=lambda pool: resolve_classes(
        pool, names=None, names_file=None, descriptions_file=None))
    rows = setup.embed_job_pool(model, pool, mesh, embed, progress=False)
    texts = encode_classes(model, classes.names, list(config.prompts.templates), classes.descriptions,
                           config.prompts.beta)
    labels = np.asarray(classes.labels)[rows.kept]
    return MethodInputs(x=rows.x, mask=rows.mask, class_weights=mesh_lib.replicate(texts.weights, mesh),
                        logit_scale=float(model.logit_scale), views=rows.views, class_texts=texts, mesh=mesh,
                        key=jax.random.key(config.seed), class_names=list(classes.names), model=model,
                        pool=pool, kept=rows.kept, progress=False, seed=int(config.seed), embed=embed), labels


def main(pool):
    base, labels = inputs_for(load_config(f"gda:{pool}"))
    baselines = engine.zero_shot_baselines(base.x, base.mask, base.class_texts, base.views, base.logit_scale,
                                           len(labels))  # the zero-shot accuracies every run reports
    print(json.dumps(dict(pool=pool, method="zero_shot_baselines", overrides=[],
                          **{k: float((p == labels).mean()) for k, p in baselines.items()})), flush=True)
    for name, overrides in VARIANTS:
        config = apply_overrides(load_config(f"{name}:{pool}"), overrides)
        method = registry.make_method(config)
        few = method.few_labels(labels) if method.few_labels else None
        start = time.time()
        out = method.run(base._replace(labels=few))
        print(json.dumps(dict(pool=pool, method=name, overrides=overrides, accuracy=float((out.predictions == labels).mean()),
                              head_accuracy=float((out.head.probs(np.asarray(base.views[out.head.view])[:len(labels)])
                                                   .argmax(1) == labels).mean()),
                              seconds=round(time.time() - start, 1))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
