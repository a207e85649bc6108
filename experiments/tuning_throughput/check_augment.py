"""Checks that torch_augment restates adapt.tuning.augment: the parameters our JAX keys draw for each
image, fed to the torch code, must give the same weak and strong views.

    python experiments/tuning_throughput/check_augment.py [--n 32] [--size 224]

Prints the largest difference and the share of pixels that differ by more than 1e-3 (posterize
and solarize are step functions, so a pixel on a step can round the other way in float32).
"""
from __future__ import annotations

import argparse

import common
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch_augment as ta

from adapt.tuning import augment as aug


def jax_params(key, n: int, kind: str) -> dict:
    """The per-image parameters adapt.tuning.augment._one draws from fold_in(key, i), as torch_augment takes them."""
    rows = []
    for i in range(n):
        k1, k2, k3, k4, k5 = jax.random.split(jax.random.fold_in(key, i), 5)
        a, b, c, d = jax.random.split(k1, 4)
        r = dict(area=jax.random.uniform(a, minval=0.5, maxval=1.0),
                 logr=jax.random.uniform(b, minval=jnp.log(3 / 4), maxval=jnp.log(4 / 3)),
                 top=jax.random.uniform(c), left=jax.random.uniform(d), flip=jax.random.bernoulli(k2))
        r["jitter"] = jnp.stack([jax.random.uniform(k, minval=0.6, maxval=1.4) for k in jax.random.split(k3, 3)])
        for j, k in enumerate((k4, k5)):
            kop, ks = jax.random.split(k)
            r[f"op{j}"], r[f"sign{j}"] = jax.random.randint(kop, (), 0, 8), jax.random.bernoulli(ks)
        rows.append({k: np.asarray(v) for k, v in r.items()})
    t = {k: torch.from_numpy(np.stack([r[k] for r in rows])) for k in rows[0]}
    p = dict(kind=kind, **{k: t[k] for k in ("area", "logr", "top", "left", "flip")})
    if kind == "strong":
        p["jitter"] = t["jitter"]
        p["ops"] = [(t["op0"].long(), t["sign0"]), (t["op1"].long(), t["sign1"])]
    return p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    mean, std = np.asarray(common.MEAN, np.float32), np.asarray(common.STD, np.float32)
    imgs = ((rng.uniform(size=(args.n, args.size, args.size, 3)) - mean) / std).astype(np.float32)
    tm, ts = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    key = jax.random.key(7)
    for kind in ("weak", "strong"):
        ours = np.asarray(aug.augment(key, jnp.asarray(imgs), common.MEAN, common.STD, kind))
        p = jax_params(key, args.n, kind)
        theirs = ta.apply(torch.from_numpy(imgs).permute(0, 3, 1, 2), p, tm, ts).permute(0, 2, 3, 1).numpy()
        d = np.abs(ours - theirs) * std  # in [0, 1] pixel units
        drawn = np.bincount(np.concatenate([o.numpy() for o, _ in p.get("ops", [])] or [[]]).astype(int), minlength=8)
        ops = "" if kind == "weak" else f", ops drawn {drawn.tolist()}"
        print(f"{kind}: max |diff| {d.max():.2e} (pixel units), share > 1e-3: {np.mean(d > 1e-3):.2e}{ops}")


if __name__ == "__main__":
    main()
