"""The shape of featviz's import graph (DESIGN.md): no import circle, the ascent engine imports
nothing else of featviz, the library knows nothing about Snakemake or the tests, and no stage
reaches around the model package into `train`."""
from __future__ import annotations

import ast
import re
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
    users = sorted(m for m, ts in g.items() if "featviz.train" in ts and m not in ("featviz.cli", "featviz.verbs"))
    assert not users, f"featviz.train imported by {users} (feed images through featviz.model instead)"


def test_model_package_imports_no_stage():
    g = import_graph()
    allowed = {"featviz.errors", "featviz.io", "featviz.artifacts", "featviz.device", "featviz.data"}
    bad = {(m, t) for m, ts in g.items() if m.startswith("featviz.model")
           for t in ts if not t.startswith("featviz.model") and t not in allowed}
    assert not bad, f"featviz/model imports a stage: {sorted(bad)}"


# ---------------------------------------------------------------- the workflow's device policy

ROOT = PKG.parent


def rules() -> dict[str, str]:
    """Every rule (and checkpoint) of workflow/rules/*.smk: name -> its text."""
    out = {}
    for f in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        parts = re.split(r"^(?:rule|checkpoint) (\w+):\n", f.read_text(), flags=re.MULTILINE)
        out.update(zip(parts[1::2], parts[2::2]))
    return out


def verb_claims_device() -> dict[str, bool]:
    """featviz verb -> whether its command claims a device (featviz.device.claim_device)."""
    import inspect

    from featviz.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    return {name: "claim_device(" in inspect.getsource(p.get_default("fn")) for name, p in sub.choices.items()}


def test_a_rule_declares_a_gpu_exactly_when_its_verb_claims_a_device():
    claims = verb_claims_device()
    found = rules()
    assert {"train", "transfer_train", "transfer", "ascend", "probe"} <= set(found)
    wrong = []
    for name, text in found.items():
        verb = re.search(r'"featviz ([a-z-]+) ', text)
        assert verb, f"rule {name} calls no featviz verb"
        declares = re.search(r"^\s+gpu=GPU,", text, re.MULTILINE) is not None
        if declares != claims[verb.group(1)]:
            wrong.append(f"{name} (featviz {verb.group(1)}): gpu declared {declares}, device claimed "
                         f"{claims[verb.group(1)]}")
    assert not wrong, wrong


def test_profiles_name_only_rules_that_exist():
    import yaml

    names = set(rules())
    for f in sorted((ROOT / "profiles").glob("*/config.yaml")):
        prof = yaml.safe_load(f.read_text()) or {}
        named = set(prof.get("set-resources") or {}) | set(prof.get("set-threads") or {})
        arrays = prof.get("slurm-array-jobs")
        named |= set(arrays.split(",") if isinstance(arrays, str) else arrays or ())
        assert named <= names, f"{f.relative_to(ROOT)} names rules that do not exist: {sorted(named - names)}"
