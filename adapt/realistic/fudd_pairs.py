"""Make FuDD's pair file (adapt/features/fudd.py) once with an OpenAI-compatible chat endpoint; runs
then read it offline (`--set decision.fudd_descriptions=pairs.json`).

  python -m adapt.realistic.fudd_pairs --names "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,\\
      Sneaker,Bag,Ankle boot" --out fm_pairs.json --base-url https://api.openai.com/v1 --model gpt-4o-mini

Every unordered pair of the names is one group of the same path `python -m adapt.realistic.phrases`
uses (adapt/realistic/phrases_llm.py: its PROMPT asks for phrases that tell the listed concepts apart,
with the WordNet definitions of each; `repeats` answers at `temperature`, unparsable answers retried).
--pairs-from RUN/pool_probs.npz --k K keeps only the pairs inside some image's top-k of a finished
run (FuDD's pair set) instead of all K(K-1)/2. Key: the environment variable --api-key-env names.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import itertools
import json
import os
import sys

import numpy as np

from adapt.data.classes import normalise
from adapt.features.fudd import FORMAT, ambiguous_sets, pair_set
from adapt.realistic import phrases_llm
from adapt.vocab.vocabulary import load_vocabulary


def pair_groups(names: list[str], pairs, vocabulary: str = "wordnet") -> list[list[dict]]:
    """One phrases_llm group per class pair: [{"name", "definitions"}] x 2."""
    vocab = load_vocabulary(vocabulary)
    index = vocab.index()
    concept = lambda n: {"name": n, "definitions": list(vocab.entries[index[normalise(n)]].definitions)  # noqa: E731
                         if normalise(n) in index else []}
    return [[concept(names[a]), concept(names[b])] for a, b in pairs]


def make_pairs(names, pairs, ask, vocabulary: str = "wordnet") -> list[dict]:
    """[{"classes": [a, b], "descriptions": {a: [...], b: [...]}}]; ask(groups) -> {name: phrases}
    for a list with one group (phrases_llm.generate with the endpoint bound)."""
    return [{"classes": [g[0]["name"], g[1]["name"]], "descriptions": ask([g])}
            for g in pair_groups(list(names), pairs, vocabulary)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m adapt.realistic.fudd_pairs", description=__doc__.split("\n")[0])
    p.add_argument("--names", required=True, help="the class names, comma-separated, in class-id order")
    p.add_argument("--pairs-from", default="", help="a run's pool_probs.npz: only pairs inside some top-k")
    p.add_argument("--k", type=int, default=3)
    phrases_llm.add_endpoint_arguments(p)
    args = p.parse_args(argv)
    if not args.base_url or not args.model:
        p.error("give --base-url and --model (or ADAPT_LLM_BASE_URL / ADAPT_LLM_MODEL)")
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    pairs = pair_set(ambiguous_sets(np.load(args.pairs_from)["probs"], args.k)) if args.pairs_from else \
        list(itertools.combinations(range(len(names)), 2))

    def ask(groups):
        return phrases_llm.generate(groups, base_url=args.base_url, model=args.model,
                                    key=os.environ.get(args.api_key_env), repeats=args.repeats,
                                    temperature=args.temperature, log=lambda m: print(m, file=sys.stderr))
    try:
        entries = make_pairs(names, pairs, ask)
    except (ValueError, OSError) as e:
        print(f"adapt.realistic.fudd_pairs: error: {e}", file=sys.stderr)
        return 2
    generator = dict(base_url=args.base_url, model=args.model, temperature=args.temperature, repeats=args.repeats,
                     prompt_sha256=hashlib.sha256((phrases_llm.SYSTEM + phrases_llm.PROMPT).encode()).hexdigest(),
                     created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT, "generator": generator, "pairs": entries}, f, indent=1, ensure_ascii=False)
    print(f"wrote {args.out}: {len(entries)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
