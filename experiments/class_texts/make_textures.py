"""A small real pool of another domain: crops of the three texture photographs scikit-image ships
(`skimage.data.brick`, `grass`, `gravel`, 512 x 512 grey each), written as a folder pool
ROOT/{brick,grass,gravel}/NNN.png (class names = folder names).

64 crops of 128 x 128 per photograph at positions drawn with seed 0 (crops of one photograph overlap:
the pool tests the class texts, not generalisation across photographs). Usage:
    python experiments/class_texts/make_textures.py runs/class_texts/textures_pool
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

CROPS, SIZE = 64, 128


def main(root: str) -> None:
    rng = np.random.default_rng(0)
    for name in ("brick", "grass", "gravel"):
        photo = getattr(data, name)()
        (Path(root) / name).mkdir(parents=True, exist_ok=True)
        for i in range(CROPS):
            r, c = rng.integers(0, photo.shape[0] - SIZE + 1), rng.integers(0, photo.shape[1] - SIZE + 1)
            Image.fromarray(photo[r:r + SIZE, c:c + SIZE]).save(Path(root) / name / f"{i:03d}.png")
    print(f"{root}: 3 classes x {CROPS} crops of {SIZE} px")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/class_texts/textures_pool")
