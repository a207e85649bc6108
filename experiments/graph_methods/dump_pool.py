"""Writes one pool's cached embeddings, extra image views, class weights and labels to an .npz.

For NumPy side studies (held-out selection on the Fashion-MNIST train split) that should see exactly
what the engine's methods see. Embeds through the engine's cache, so a finished `adapt run` on the
same pool makes this instant.

  PYTHONPATH=. python experiments/graph_methods/dump_pool.py configs/zlap.py:fashion_mnist \
      --set pool.split=train --set pool.limit=10000 --out /tmp/val_raw.npz
"""
from __future__ import annotations

import argparse

import numpy as np

from adapt import mesh as mesh_lib
from adapt.config import apply_overrides, load_config
from adapt.data import open_pool, resolve_classes
from adapt.embed import embed_pool
from adapt.models import load_model
from adapt.text import encode_classes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    config = apply_overrides(load_config(a.config), a.set)
    pool = open_pool(config.pool)
    classes = resolve_classes(pool)
    model = load_model(config.model.kind, config.model.path, config.model.grounding)
    emb = embed_pool(model, pool, mesh_lib.make_mesh(), progress=True)
    texts = encode_classes(model, classes.names, list(config.prompts.templates))
    out = dict(x=emb.embeddings, y=np.asarray(classes.labels)[emb.kept], t=np.asarray(texts.weights),
               logit_scale=float(model.logit_scale), names=np.asarray(classes.names))
    out |= {f"view_{k}": v for k, v in emb.views.items()}
    np.savez(a.out, **out)
    print({k: getattr(v, "shape", v) for k, v in out.items()})


if __name__ == "__main__":
    main()
