"""Write the seeded CutPaste defect pools to disk: images/{good,defect}/, masks/{good,defect}/.

Each pool: 270 normal Fashion-MNIST test images of one class plus 15 in which a 7-10 px square
(of 28) cut from an image of another class is pasted at a random place; upscaled x8 (bicubic) and
inverted to dark on white. The generator is `adapt.data.defects` (also the `defects` pool kind);
the same (class, seed) always gives the same pool.

  python experiments/musc/make_defect_pools.py --out /tmp/defect_pools --classes Trouser,Bag,Sneaker --seeds 0
  adapt run configs/musc.py --set pool.path=/tmp/defect_pools/Bag_seed0/images --workdir runs/musc_bag
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from adapt.data.defects import defect_pool  # noqa: E402


def write_pool(out: Path, class_name: str, seed: int) -> Path:
    pool = defect_pool(class_name, seed=seed)
    root = out / f"{class_name}_seed{seed}"
    labels = pool.labels()
    manifest = []
    for i in range(len(pool)):
        kind = "defect" if labels[i] else "good"
        name = f"{i:03d}_fmnist{int(pool.source_indices[i]):05d}.png"
        for sub in (f"images/{kind}", f"masks/{kind}"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        pool.load(i).save(root / "images" / kind / name)
        Image.fromarray(pool.mask(i).astype(np.uint8) * 255).save(root / "masks" / kind / name)
        paste = pool.pastes[i]
        manifest.append(dict(file=f"images/{kind}/{name}", test_index=int(pool.source_indices[i]),
                             paste=None if paste is None else dataclasses.asdict(paste)))
    (root / "manifest.json").write_text(json.dumps(dict(class_name=class_name, seed=seed,
                                                        images=manifest), indent=1))
    return root


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--classes", default="Trouser,Bag,Sneaker")
    ap.add_argument("--seeds", default="0")
    a = ap.parse_args()
    for c in a.classes.split(","):
        for s in a.seeds.split(","):
            print(write_pool(Path(a.out), c, int(s)))


if __name__ == "__main__":
    main()
