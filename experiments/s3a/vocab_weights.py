"""Save the cached vocabulary classifier T_V (|V|, D) of the default s3a config to an .npy file.

    PYTHONPATH=. python experiments/s3a/vocab_weights.py /tmp/tv.npy
"""
from __future__ import annotations

import sys

import numpy as np

from adapt.features import setup
from adapt.features.embed import default_cache_root
from adapt.realistic.vocab_classifier import encode_vocabulary
from adapt.vocab.vocabulary import load_vocabulary
from configs.s3a import get_config


def main():
    config = get_config("fashion_mnist")
    model = setup.load_job_model(config)
    vocab = load_vocabulary(config.vocabulary.file)
    clf = encode_vocabulary(model, vocab, list(config.prompts.templates), cache_root=default_cache_root(),
                            chunk=config.vocabulary.chunk, progress=False, write=False)
    np.save(sys.argv[1], clf.weights.astype(np.float32))
    print(clf.weights.shape, "logit scale", model.logit_scale)


if __name__ == "__main__":
    main()
