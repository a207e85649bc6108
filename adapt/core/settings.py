"""One validator for every method's `method_args`: `parse_method_args(Settings, method_args, method)`.

A method declares its arguments as a frozen dataclass `Settings`: the field types say what each
value is (str, int, float, bool, `tuple[T, ...]`, `T | None`), and its `__post_init__` checks
choices and ranges with `check_choice` / `check_at_least`. The values and their documentation live
in the method's config file (`configs/<method>.py`), the one place they are set; a `Settings` field
without a default must be given there, so a key the config forgets is an error, not a silent default.

`parse_method_args` refuses keys the dataclass does not know (naming the nearest known key), coerces
each value to its field's type (a list becomes a tuple, "3" an int, 2 a float of 2.0) and builds
the dataclass, whose `__post_init__` then runs.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Iterable, Mapping

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_method_args(settings_cls, method_args: Mapping, method: str, *, job_keys: Iterable[str] = ()):
    """method_args (a ConfigDict or any mapping) -> a `settings_cls` instance.

    job_keys: keys that may appear in method_args but are read by the method's job, not by
    `settings_cls` (they are neither checked nor passed on).
    Raises ValueError for an unknown key (naming the nearest known one), a missing key whose field
    has no default, or a value that is not of its field's type.
    """
    fields = dataclasses.fields(settings_cls)
    known = [f.name for f in fields]
    given = dict(method_args.items())
    for key in given:
        if key not in known and key not in job_keys:
            near = difflib.get_close_matches(key, known + list(job_keys), n=1, cutoff=0.0)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ValueError(f"unknown {method} method_args key '{key}'{hint}")
    hints = typing.get_type_hints(settings_cls)
    values = {}
    for f in fields:
        if f.name in given:
            values[f.name] = coerce(given[f.name], hints[f.name], f"method_args.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{method} needs method_args.{f.name} (its config file sets every key)")
    return settings_cls(**values)


def coerce(value, kind, name: str):
    """`value` as the type `kind` (see the module docstring); ValueError naming `name` if it is not one."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for member in (a for a in args if a is not type(None)):
            try:
                return coerce(value, member, name)
            except ValueError:
                continue
        raise ValueError(f"{name} must be {' or '.join(_name(a) for a in args)}, not {value!r}")
    if kind is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list, not {value!r}")
        if not args:
            return tuple(value)
        each = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if each is None and len(args) != len(value):
            raise ValueError(f"{name} must have {len(args)} entries, not {len(value)}: {value!r}")
        return tuple(coerce(v, each or args[i], f"{name}[{i}]") for i, v in enumerate(value))
    if kind is bool:
        return _to_bool(value, name)
    if kind is int:
        return _to_int(value, name)
    if kind is float:
        return _to_float(value, name)
    if isinstance(value, kind):
        return value
    raise ValueError(f"{name} must be {_name(kind)}, not {value!r}")


def _to_bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    raise ValueError(f"{name} must be a boolean, not {value!r}")


def _to_int(value, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be an integer, not {value!r}")


def _to_float(value, name: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be a number, not {value!r}")


def _name(kind) -> str:
    return "None" if kind is type(None) else getattr(kind, "__name__", str(kind))


def check_choice(name: str, value, choices, why: str = "") -> None:
    """ValueError unless `value` is one of `choices`; `why` adds to the message."""
    if value not in choices:
        raise ValueError(f"method_args.{name} must be one of {' | '.join(map(str, choices))}{why}, "
                         f"not {value!r}")


def check_at_least(name: str, value, low, why: str = "") -> None:
    """ValueError unless `value` >= `low`; `why` adds to the message."""
    if value < low:
        raise ValueError(f"method_args.{name} must be >= {low}{why}, got {value!r}")
