"""Frozen towers and the loader that picks one from a config."""
