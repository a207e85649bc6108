"""The shape of the house, read from the code's imports and definitions with `ast`.

No import circle among our modules; each family folder imports only the families its `__init__`
docstring names ("May import: ..."); `adapt/` loads `methods/` in one place only (adapt/registry.py);
methods import neither jobs nor each other; no function over 80 lines; a function-local import is
never one of our modules and always says why in a comment (optional heavy dependencies).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80
LOADER = "adapt.registry"  # the one module of adapt/ that may import methods/
JOBS = ("adapt.engine", "adapt.cli", "adapt.registry", "adapt.anomaly.job", "adapt.realistic.job")
ALWAYS = ("adapt.assets",)  # shipped data: every family may read it


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    files = sorted((ROOT / "adapt").rglob("*.py")) + sorted((ROOT / "methods").rglob("*.py"))
    return {_module_name(p): p for p in files}


MODULES = _sources()


def _ours(name: str) -> str | None:
    """The longest module of ours that `name` names or lies in, or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


class _Import:
    def __init__(self, target: str, line: int, local: bool):
        self.target, self.line, self.local = target, line, local


def _imports(module: str) -> list[_Import]:
    """Every import of `module` (module level and inside functions) as the names it reaches."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []

    def visit(node, local):
        for child in ast.iter_child_nodes(node):
            is_function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend(_Import(a.name, child.lineno, local) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[:len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for a in child.names:  # `from pkg import sub` reaches pkg.sub when that is a module
                    full = f"{base}.{a.name}"
                    out.append(_Import(full if full in MODULES else base, child.lineno, local))
            visit(child, local or is_function)

    visit(ast.parse(path.read_text()), False)
    return out


def _edges() -> dict[str, set[str]]:
    edges = {m: set() for m in MODULES}
    for m in MODULES:
        for imp in _imports(m):
            target = _ours(imp.target)
            if target and target != m:
                edges[m].add(target)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1
                    stack.append(w); on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on_stack.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_sees_a_circle():  # the check below can fail
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    assert _cycles(_edges()) == []


def _family(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "adapt" and len(parts) > 2 or \
        (len(parts) == 2 and (ROOT / "adapt" / parts[-1]).is_dir()) else None


def _allowed(family: str) -> set[str]:
    doc = ast.get_docstring(ast.parse(MODULES[family].read_text())) or ""
    found = re.search(r"May import:\s*([^\n.]*)", doc)
    assert found, f"{family}/__init__.py: its docstring must say 'May import: ...'"
    names = [n.strip() for n in found.group(1).replace("nothing of `adapt` outside", "").split(",")]
    return {f"adapt.{n.strip('` ')}" for n in names if n.strip("` ")} | {family, *ALWAYS}


def test_families_import_what_their_docstring_allows():
    wrong = []
    for module, targets in _edges().items():
        family = _family(module)
        if family is None or family in ALWAYS:
            continue
        allowed = _allowed(family)
        for t in targets:
            t_family = _family(t) or t
            if t.startswith("adapt.") and t_family not in allowed:
                wrong.append(f"{module} -> {t}")
    assert wrong == []


def test_adapt_loads_methods_in_one_place():
    loaders = [m for m, ts in _edges().items() if m.startswith("adapt") and any(
        t == "methods" or t.startswith("methods.") for t in ts)]
    assert set(loaders) <= {LOADER}


def test_methods_import_no_job_and_no_other_method():
    wrong = [f"{m} -> {t}" for m, ts in _edges().items() if m.startswith("methods.")
             for t in ts if t.startswith("methods") or t in JOBS]
    assert wrong == []


def test_no_function_over_80_lines():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


def test_local_imports_are_optional_dependencies_with_a_reason():
    wrong = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for imp in _imports(module):
            if not imp.local:
                continue
            where = f"{path.relative_to(ROOT)}:{imp.line} {imp.target}"
            if imp.target.split(".")[0] in ("adapt", "methods", "configs"):
                wrong.append(where + " (one of ours: import it at the top)")
            elif "#" not in lines[imp.line - 1] and not lines[imp.line - 2].strip().startswith("#"):
                wrong.append(where + " (say why it is local in a comment)")
    assert sorted(set(wrong)) == []
