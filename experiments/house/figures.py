"""Figures of the house of a checkout: modules per folder, longest functions and modules, import
circles, function-local imports, arrows from adapt/ into methods/ and from methods/ into jobs.

    python experiments/house/figures.py [ROOT]     # ROOT: a checkout (default: this one)

It reads the code with the same `ast` parsing as tests/test_house.py (that file, from THIS checkout,
is applied to ROOT), so an older checkout can be measured with today's rules.
"""
from __future__ import annotations

import ast
import collections
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]


def house_rules(root: Path) -> types.ModuleType:
    """tests/test_house.py of this checkout, pointed at `root`."""
    source = (HERE / "tests" / "test_house.py").read_text().replace(
        "ROOT = Path(__file__).resolve().parents[1]", f"ROOT = Path({str(root)!r})")
    module = types.ModuleType("house_rules")
    exec(compile(source, "test_house.py", "exec"), module.__dict__)
    return module


def figures(root: Path) -> dict:
    rules = house_rules(root)
    mods = rules.MODULES
    functions = sorted(((n.end_lineno - n.lineno + 1, f"{p.relative_to(root)}:{n.name}")
                        for p in mods.values() for n in ast.walk(ast.parse(p.read_text()))
                        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), reverse=True)
    edges = rules._edges()
    local = {(m, i.line, i.target.split(".")[0] in ("adapt", "methods", "configs"))
             for m in mods for i in rules._imports(m) if i.local}
    return {
        "modules": len(mods),
        "files per folder": dict(sorted(collections.Counter(
            str(p.parent.relative_to(root)) for p in mods.values()).items())),
        "longest functions": functions[:3],
        "functions over 80 lines": sum(n > 80 for n, _ in functions),
        "longest module": max((len(p.read_text().splitlines()), str(p.relative_to(root))) for p in mods.values()),
        "import circles": rules._cycles(edges),
        "adapt/ modules importing methods/": sorted(m for m, ts in edges.items() if m.startswith("adapt")
                                                    and any(t.startswith("methods") for t in ts)),
        "methods importing adapt jobs or methods": sorted(
            f"{m} -> {t}" for m, ts in edges.items() if m.startswith("methods.") for t in ts
            if t.startswith("methods") or t in rules.JOBS or t in ("adapt.anomaly", "adapt.realistic_job")),
        "function-local import statements (ours / all)": (len({(m, l) for m, l, ours in local if ours}),
                                                          len({(m, l) for m, l, _ in local})),
    }


if __name__ == "__main__":
    for key, value in figures(Path(sys.argv[1] if len(sys.argv) > 1 else HERE).resolve()).items():
        print(f"{key}: {value}")
