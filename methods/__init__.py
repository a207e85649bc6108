"""One module per method; the module name is the config's `method`. Each exposes `make(config)`."""
import importlib
import pkgutil


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str):
    if name not in names():
        raise ValueError(f"unknown method {name!r}; available: {', '.join(names())}")
    return importlib.import_module(f"methods.{name}")
