"""The shape of featviz's import graph (DESIGN.md): no import circle, the ascent engine imports
nothing else of featviz, the library knows nothing about Snakemake or the tests, and no stage
reaches around the model package into `train`."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "featviz"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The featviz modules `path` imports (anywhere in the file: function-level imports count)."""
    module = module_name(path)
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            # `from . import x` / `from .pkg import mod`: x may itself be a module
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    files = sorted(PKG.rglob("*.py"))
    known = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, known) for f in files}


def _external_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (a package importing its own submodules does not count:
    importing a submodule runs its package's __init__ first, which is no circle of ideas)."""
    def edges(m):
        return {t for t in graph[m] if not m.startswith(t + ".") and not t.startswith(m + ".")}

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(edges(m)):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_graph_is_read():
    g = import_graph()
    assert "featviz.cli" in g and "featviz.ascent.render" in g
    assert "featviz.io" in g["featviz.report.site"]
    assert "featviz.model" in g["featviz.probe"]


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert find_cycle({"p": {"p.x"}, "p.x": {"p"}}) is None  # a package and its own module


def test_ascent_imports_nothing_else_of_featviz():
    g = import_graph()
    outside = {(m, t) for m, ts in g.items() if m == "featviz.ascent" or m.startswith("featviz.ascent.")
               for t in ts if not (t == "featviz.ascent" or t.startswith("featviz.ascent."))}
    assert not outside, f"featviz/ascent reaches out of its package: {sorted(outside)}"


@pytest.mark.parametrize("banned", ["snakemake", "tests"])
def test_library_knows_nothing_of_the_workflow_or_tests(banned):
    users = [str(p.relative_to(PKG.parent)) for p in PKG.rglob("*.py") if banned in _external_imports(p)]
    assert not users, f"{banned} imported by {users}"


def test_no_stage_imports_train():
    g = import_graph()
    users = sorted(m for m, ts in g.items() if "featviz.train" in ts and m != "featviz.cli")
    assert not users, f"featviz.train imported by {users} (feed images through featviz.model instead)"


def test_model_package_imports_no_stage():
    g = import_graph()
    allowed = {"featviz.errors", "featviz.io", "featviz.artifacts", "featviz.device", "featviz.data"}
    bad = {(m, t) for m, ts in g.items() if m.startswith("featviz.model")
           for t in ts if not t.startswith("featviz.model") and t not in allowed}
    assert not bad, f"featviz/model imports a stage: {sorted(bad)}"
