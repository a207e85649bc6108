"""adapt run configs/s3a.py:fashion_mnist --workdir runs/s3a_fm

S3A CVPR in the realistic setting (spec s3a.md): the class names are NOT given to the method; it
clusters the pool and names each cluster with one word of a broad vocabulary (default: the built-in
WordNet visual nouns, 20,404 names; or `--set vocabulary.file=my_vocab.jsonl`, format in
adapt/vocab/vocabulary.py). The pool's class names, when it has them, are used for evaluation only.
The argument after ':' is a pool preset (fashion_mnist, fashion_mnist_inverted, textile, digits);
without one, give a folder with `--set pool.path=DIR`.

K (`method_args.k`) is "estimate" (silhouette search, no labels) or a number, which is an
assumption (the official code gives the true class count): `--set method_args.k=10`. The estimate
is marked unreliable when its best silhouette is below 0.25 (usual with the offline default model);
then `method_args.k_fallback` (your K) is used when given, else the estimate is kept and flagged in
report.md. When you know roughly how many classes the pool has, give K: that is the documented
default way to run S3A on a new pool (experiments/s3a/README.md, issue 28).
Prompt step (`method_args.phrases`): "glosses" (offline default: WordNet definitions of each
cluster's candidate words), "none" (Cluster-Vote-Realign only) or a phrase file from
`python -m adapt.realistic.phrases` (adapt/realistic/phrases_llm.py documents the LLM prompt).
The vocabulary classifier uses the 7 CLIP ImageNet templates of the official code; it is built once
per model and vocabulary and cached under the embedding cache (about 25 minutes for the built-in
vocabulary with the offline default model on 2 CPU cores).
"""
from configs.common import base_config

TEMPLATES_7 = ["itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
               "a {} in a video game.", "art of the {}.", "a photo of the small {}."]


def get_config(arg: str = ""):
    import ml_collections

    config = base_config("s3a", arg)
    config.prompts.templates = list(TEMPLATES_7)
    config.vocabulary = ml_collections.ConfigDict()
    config.vocabulary.file = "wordnet"  # "wordnet" = built-in, else a .jsonl / .tsv / .txt file
    config.vocabulary.chunk = 2048  # names per cached chunk of the vocabulary classifier
    a = config.method_args
    a.k = "estimate"  # "estimate" or a number of clusters (recommended when you know it: see below)
    a.k_search = "grid"  # grid (every K up to 30, then +15% steps) | binary (the official search)
    a.k_fallback = 0  # K to use when the estimate is unreliable (best silhouette < 0.25); 0 = keep it, flagged
    a.k_min = 2  # silhouette search bounds
    a.k_max = 100
    a.search_rounds = 3
    a.sample_min = 30000  # search subsample: min(N, max(sample_min, sample_frac * N)), <= sample_max
    a.sample_frac = 0.5
    a.sample_max = 0  # 0 = no cap
    a.search_n_init = 3  # k-means restarts per scored K
    a.search_max_iter = 300
    a.n_init = 17  # the final k-means (official: n_init 17, max_iter 1000, seed 0)
    a.max_iter = 1000
    a.tol = 1e-4
    a.rounds = 3  # vote-realign rounds
    a.phrases = "glosses"  # glosses | none | path to a phrase file
    a.phrase_templates = ["a photo of a {concept}, {phrase}."]
    a.candidates = 3  # top voted words per cluster in the prompt step
    a.top_phrases = 3  # hits: each image's top-n phrase entries
    a.block = 1024  # rows / words per similarity tile
    a.shrink = False  # Hungarian on voted columns only (equal optimum; faster for huge vocabularies)
    a.realign = "auto"  # auto (accept a realign only if the partition's silhouette does not drop) | words (paper) | keep
    # Self-learning (adapt/realistic/self_learning.py): EMA teacher, student on the structural labels
    # (plus confident teacher labels when w_ins > 0, the paper's 1.0), over the whole vocabulary.
    # Epochs, step floor and w_ins were chosen on a held-out pool (experiments/s3a/README.md section 5).
    # The student is the model's tunable visual side (offline default: head BN affine + LoRA of the
    # head conv on cached head inputs; CLIP: VPT tokens), not the full tower of the official code:
    # a declared, labelled variant.
    config.self_learning = ml_collections.ConfigDict()
    sl = config.self_learning
    sl.epochs = 30  # 0 = CVPR only (official: 30)
    sl.batch_size = 128
    sl.lr = 1e-3  # AdamW, per-step cosine; official 2e-5 x batch/256 is for full-tower fine-tuning
    sl.weight_decay = 0.05
    sl.tau = 0.5  # teacher confidence threshold
    sl.scale = 100.0  # logit scale of teacher/student over the vocabulary (official: 100); 0 = the model's own
    sl.w_ins = 0.0  # official 1.0; 0: the confident teacher's words are the weak zero-shot argmax (issue 28)
    sl.w_str = 0.25
    sl.warmup_epochs = 2  # structural labels fixed to CVPR's before this epoch
    sl.lora_rank = 16
    sl.augment = "weak"  # the student's view (offline cached path: flips only)
    sl.keep = "auto"  # auto: output the student unless it lowered the partition's silhouette (else CVPR's) | student
    sl.min_steps_per_epoch = 50  # floor on optimizer steps an epoch (more passes over pools under 6,400 images)
    return config
