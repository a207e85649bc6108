"""Frozen features of a pool and of class texts: image embeddings with their on-disk cache (embed),
class-text embeddings and prompts (text), a second image-only tower (second_tower).
May import: core, data, models.
"""
