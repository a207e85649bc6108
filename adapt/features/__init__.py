"""Frozen features of a pool and of class texts: image embeddings with their on-disk cache (embed),
class-text embeddings and prompts (text), a second image-only tower (second_tower), and the start
every job shares (setup: pool, mesh, model, the pool's rows on one process or many), zero-shot
techniques on the class side (perception: PerceptionCLIP's contexts; fudd: FuDD's differential
descriptions, from WordNet or a pair file).
May import: core, data, models, vocab.
"""
