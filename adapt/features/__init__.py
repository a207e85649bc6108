"""Frozen features of a pool and of class texts: image embeddings with their on-disk cache (embed),
class-text embeddings and prompts (text; the job's class side with its options: class_texts, zpe,
synonyms), zero-shot techniques on the class side (perception: PerceptionCLIP's contexts; fudd: FuDD's
differential descriptions, from WordNet or a pair file), a second image-only tower (second_tower), and
the start every job shares (setup: pool, mesh, model, the pool's rows on one process or many).
May import: core, data, models, vocab.
"""
