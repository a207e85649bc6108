"""Vocabularies of words with definitions: WordNet's database (wordnet), the vocabulary files a
config names (vocabulary), class descriptions drawn from WordNet (wordnet_descriptions).
May import: core, data.
"""
