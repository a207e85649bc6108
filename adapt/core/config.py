"""Config files (`ml_collections`) and command-line overrides.

A config is a Python file with `get_config(arg)`. `CONFIG` on the command line is `path.py` or
`path.py:arg` (big_vision style), or the name of a config the package ships (`zero_shot`,
`zlap:fashion_mnist`: the file `configs/<name>.py` of the installed `configs` package), so an installed
engine needs no source tree. Overrides `key.sub=value` must name existing keys: a misspelled key
is an error that names the nearest valid key. `reproduce_command(config)` writes a config back as
the `adapt run` command line that rebuilds it (report.md shows it).
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import shlex
from pathlib import Path

import ml_collections


class ConfigError(ValueError):
    pass


def _shipped_configs() -> Path:
    """The folder of the `configs` package installed beside adapt/, found without importing it."""
    spec = importlib.util.find_spec("configs")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the shipped configs package is not installed (reinstall vlm-adapt)")
    return Path(list(spec.submodule_search_locations)[0])


def config_names() -> list[str]:
    """The configs the package ships: one per method, named as the method."""
    return sorted(p.stem for p in _shipped_configs().glob("*.py")
                  if not p.stem.startswith("_") and p.stem != "common")


def config_file(path: str) -> Path:
    """A config file path, or a shipped config's name -> its file; ConfigError when neither."""
    file = Path(path)
    if file.is_file():
        return file
    if file.suffix != ".py" and len(file.parts) == 1:
        names = config_names()
        if path in names:
            return _shipped_configs() / f"{path}.py"
        near = difflib.get_close_matches(path, names, n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        raise ConfigError(f"no config file {path!r} and no shipped config of that name; {hint}"
                          f"shipped: {', '.join(names)} (adapt methods)")
    raise ConfigError(f"config file not found: {path}")


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Loads `path.py[:arg]` or `name[:arg]` and calls its `get_config(arg)`."""
    path, _, arg = spec.partition(":")
    file = config_file(path)
    module_spec = importlib.util.spec_from_file_location(f"_adapt_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} has no get_config(arg)")
    config = module.get_config(arg) if arg else module.get_config()
    config.lock()
    return config


def all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in config.items():
        name = f"{prefix}{k}"
        keys.append(name)
        if isinstance(v, ml_collections.ConfigDict):
            keys += all_keys(v, name + ".")
    return keys


def _parse_value(text: str, current):
    if isinstance(current, bool):
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"expected a boolean, got {text!r}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(current, (list, tuple)) and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()] if value else []
    if isinstance(current, (list, tuple)):
        value = type(current)(value) if isinstance(value, (list, tuple)) else value
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, str) and not isinstance(value, str):
        value = text
    return value


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> ml_collections.ConfigDict:
    """Applies `key.sub=value` strings in order; returns the same (locked) config."""
    valid = all_keys(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"unknown config key '{key}'{hint}")
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        current = node[leaf]
        if isinstance(current, ml_collections.ConfigDict):
            raise ConfigError(f"'{key}' is a group of keys; set one of its fields")
        value = _parse_value(text, current)
        try:
            with node.unlocked():
                node[leaf] = value
        except TypeError as e:
            raise ConfigError(f"bad value for '{key}': {e}") from None
    return config


def leaf_values(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
    """Every leaf of the config by its dotted key (`pool.path`), in the config's order."""
    out = {}
    for k, v in config.items():
        if isinstance(v, ml_collections.ConfigDict):
            out.update(leaf_values(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def override_text(value, current) -> str:
    """The text of `--set key=TEXT` that sets a key now holding `current` to `value`: the plain
    form when it reads back as the same value (see `_parse_value`), else the Python literal."""
    plain = [value] if isinstance(value, str) else []
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        plain = [",".join(value)]  # a list of names as `a,b,c`
    for text in plain + [repr(value)]:
        try:
            back = _parse_value(text, current)
        except ConfigError:
            continue
        if type(back) is type(value) and back == value:
            return text
    return repr(value)


def reproduce_command(config: ml_collections.ConfigDict, workdir="WORKDIR") -> str:
    """`adapt run METHOD --workdir W --set key=value ...`: the shipped config of the run's method
    with a `--set` for every key where the run differs from it, so pasting it rebuilds the config
    (a pool preset `:arg` is spelled out as its pool keys). Keys the shipped config lacks (a config
    file of one's own) are named after a `#`; without a shipped config, that is said instead."""
    try:
        shipped = load_config(str(config.method))
    except ConfigError:
        return f"# no shipped config for method {config.method!r}: use the run's config file"
    have, want = leaf_values(shipped), leaf_values(config)
    sets, missing = [], [k for k in want if k not in have]
    for key, value in want.items():
        if key in have and not (type(have[key]) is type(value) and have[key] == value):
            sets += ["--set", f"{key}={override_text(value, have[key])}"]
    line = shlex.join(["adapt", "run", str(config.method), "--workdir", str(workdir), *sets])
    return line + (f"  # not in the shipped config: {', '.join(missing)}" if missing else "")
