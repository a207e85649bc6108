"""WordNet grounding of class names onto the 1000 ImageNet classes (the offline model's text tie).

The ImageNet-1k classes are WordNet noun synsets, so a class name that WordNet knows can be tied to
them through the hierarchy instead of through MiniLM nearest neighbours alone:

  1. the name's synset s: the first lemma of `lookup_candidates(name)` found in WordNet's index
     ("T-shirt/top" tries "t-shirt/top", "t-shirt", "top"; "Ankle boot" tries "ankle_boot", "boot"),
     and of its senses the most frequent one under the visual roots (`adapt.vocab.wordnet_descriptions`);
  2. the support: the ImageNet classes that are s or a hyponym of s; when there is none, the same
     for s's first hypernym, at most `max_up` levels up ("sneaker" = gym_shoe -> shoe -> running
     shoe, loafer, sandal);
  3. no synset, or no support within `max_up` levels: the name is ungrounded (all 1000 classes).

The class map then puts its softmax(cos / tau) top-T weights on the support only (see
`adapt.models.offline.conse_weights`). No target data is involved: the rule reads WordNet and the
ImageNet class list. How it compares with the plain class map on held-out ImageNet classes and on
Fashion-MNIST: experiments/offline_model/README.md.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from adapt.vocab import wordnet
from adapt.vocab.wordnet_descriptions import choose_synset, read_noun_index

MAX_UP = 2


class Grounding:
    """Class name -> (1000,) bool support over the ImageNet classes (all True when ungrounded)."""

    def __init__(self, imagenet_wnids: Sequence[str], root: str | os.PathLike | None = None,
                 max_up: int = MAX_UP):
        self.index, self.synsets = read_noun_index(root), wordnet.read_noun_synsets(root)
        self.max_up = max_up
        self._memo: dict[str, tuple[tuple[int, ...], str]] = {}
        self.offsets = [w[1:] for w in imagenet_wnids]
        # each ImageNet class's ancestors, itself included: s grounds class i when s is among them
        ancestors = wordnet.ancestors(self.synsets)
        self.lineage = [ancestors.get(o, frozenset()) | {o} for o in self.offsets]

    def synset(self, name: str) -> str | None:
        """The offset of the name's synset, or None when WordNet does not know the name."""
        return choose_synset(name, self.index, self.synsets)[1]

    def ground(self, name: str) -> tuple[tuple[int, ...], str]:
        """(ImageNet class indices of the support, how); () when ungrounded. Memoised per name."""
        if name not in self._memo:
            self._memo[name] = self._ground(name)
        return self._memo[name]

    def _ground(self, name: str) -> tuple[tuple[int, ...], str]:
        s = self.synset(name)
        if s is None:
            return (), "not in WordNet"
        start = self.synsets[s].lemmas[0]
        for up in range(self.max_up + 1):
            got = tuple(i for i, lin in enumerate(self.lineage) if s in lin)
            if got:
                via = f" via {self.synsets[s].lemmas[0]} ({up} up)" if up else ""
                return got, f"{start}{via}"
            if not self.synsets[s].hypernyms:
                break
            s = self.synsets[s].hypernyms[0]
        return (), f"{start}: no ImageNet class within {self.max_up} levels"

    def support(self, names: Sequence[str], n_classes: int) -> np.ndarray:
        """(len(names), n_classes) bool: each name's support, all True for ungrounded names."""
        out = np.ones((len(names), n_classes), bool)
        for row, name in enumerate(names):
            got = self.ground(name)[0]
            if got:
                out[row] = False
                out[row, list(got)] = True
        return out
