"""The one module of `adapt` that knows the methods of `methods/` (one module per method, named as
the config's `method`; each exposes `make(config) -> Method` and `DESCRIPTION`)."""
from __future__ import annotations

import methods
from adapt.core.method import Method


def names() -> list[str]:
    """The methods, sorted by name."""
    return methods.names()


def description(name: str) -> str:
    """One line on what the method does (its module's DESCRIPTION)."""
    return methods.load(name).DESCRIPTION


def make_method(config) -> Method:
    """The method the config names, made from the config (its settings validated); ValueError
    for an unknown method or bad settings."""
    return methods.load(config.method).make(config)
