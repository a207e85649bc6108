"""Scores and plots of tuning rounds (the method never sees labels; the engine scores afterwards)."""
from __future__ import annotations

import numpy as np


def score_rounds(rounds: list[dict], labels: np.ndarray) -> list[dict]:
    """Per round: pseudo-label accuracy (on the images it trained on) and pool accuracy of the
    round's predictions (after its training), against the known labels."""
    rows = []
    for r in rounds:
        idx, lab = np.asarray(r["pseudo_indices"]), np.asarray(r["pseudo_labels"])
        known = labels[idx] >= 0
        row = dict(round=r["round"], k=r["k"], n_pseudo=int(len(idx)),
                   pseudo_label_accuracy=float((lab[known] == labels[idx][known]).mean()) if known.any() else None)
        if r.get("predictions") is not None:
            ok = labels >= 0
            row["pool_accuracy"] = float((np.asarray(r["predictions"])[ok] == labels[ok]).mean())
        rows.append(row)
    return rows


def plot_rounds(path, rounds: list[dict], scores: list[dict] | None) -> None:
    """Training loss per epoch (one line per round) and, when scored, accuracy vs round."""
    # local: plotting only (matplotlib is slow to load), and Agg must be chosen before pyplot loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"), see above

    fig, axes = plt.subplots(1, 2 if scores else 1, figsize=(11 if scores else 6, 4), squeeze=False)
    ax = axes[0, 0]
    for r in rounds:
        hist = r.get("history") or []
        ax.plot([h["epoch"] + 1 for h in hist], [h["loss"] for h in hist], label=f"round {r['round']} (K={r['k']})")
    ax.set(xlabel="epoch", ylabel="training loss", title="loss per round")
    ax.legend(fontsize=7)
    if scores:
        ax = axes[0, 1]
        x = [s["round"] for s in scores]
        ax.plot(x, [s["pseudo_label_accuracy"] for s in scores], "o-", label="pseudo-labels it trained on")
        if all("pool_accuracy" in s for s in scores):
            ax.plot(x, [s["pool_accuracy"] for s in scores], "s-", label="pool predictions after the round")
        ax.set(xlabel="round", ylabel="accuracy", title="accuracy vs round")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
