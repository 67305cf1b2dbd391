"""Package shape: one public surface, and imports that only point down the layers."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import aioq

PACKAGE = Path(aioq.__file__).parent

# Lower number = higher layer. A module may import from its own layer or below.
LAYERS = {
    "cli": 0,
    "_logfmt": 0,
    "_opscli": 0,
    "_eventcli": 0,
    "_schedcli": 0,
    "_workercli": 0,
    "_reload": 0,
    "_dashcli": 0,
    "dashboard": 0,
    "__main__": 0,
    "testing": 0,
    "contrib": 0,
    "app": 1,
    "routing": 1,
    "scheduling": 1,
    "schedules": 1,
    "events": 1,
    "canvas": 1,
    "deadletter": 1,
    "status": 1,
    "task": 1,
    "sync": 1,
    "wrapping": 1,
    "sending": 1,
    "job": 1,
    "context": 1,
    "hooks": 1,
    "worker": 1,
    "__init__": 1,
    "_worker": 2,
    "_transport": 3,
    "_core": 4,
    "errors": 5,
    "_version": 5,
}


def layer_of(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def imports_of(path: Path) -> list[str]:
    """Runtime imports of aioq modules (``if TYPE_CHECKING:`` blocks excluded)."""
    tree = ast.parse(path.read_text())
    found: list[str] = []
    rel_pkg = path.relative_to(PACKAGE).with_suffix("").parts[:-1]

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                base = list(rel_pkg[: len(rel_pkg) - node.level + 1])
                target = ".".join(base + ([node.module] if node.module else []))
                found.append(target)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aioq."):
                found.append(node.module.removeprefix("aioq."))  # type: ignore[union-attr]
            for field in ("body", "orelse", "finalbody", "handlers"):
                child = getattr(node, field, None)
                if isinstance(child, list):
                    visit([c for c in child if isinstance(c, ast.stmt | ast.excepthandler)])  # type: ignore[misc]

    visit(tree.body)
    return [f for f in found if f]


def test_imports_point_down() -> None:
    problems = [
        f"{here} imports {target}"
        for path in PACKAGE.rglob("*.py")
        if (here := ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        for target in imports_of(path)
        if layer_of(target) < layer_of(here)
    ]
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_all_is_sorted_and_complete() -> None:
    public = {
        n
        for n in dir(aioq)
        if not n.startswith("_") and not isinstance(getattr(aioq, n), types.ModuleType)
    }
    assert public == set(aioq.__all__)
    assert list(aioq.__all__) == sorted(aioq.__all__)


def test_modules_stay_small() -> None:
    too_big = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert not too_big


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_imports() -> dict[str, set[str]]:
    """Every aioq module → the aioq modules it imports anywhere: at the top, in
    a function, or under ``if TYPE_CHECKING:`` (a type-only cycle is a cycle)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:  # `from . import x` imports module x
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in modules else target)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    graph = all_imports()
    problems = [
        " ↔ ".join(component)
        + "\n    "
        + "\n    ".join(f"{m} → {', '.join(sorted(graph[m] & set(component)))}" for m in component)
        for component in cycles(graph)
    ]
    assert not problems, "import cycles among aioq modules:\n" + "\n".join(problems)


def test_cycle_finder_sees_type_only_imports() -> None:
    """The finder itself: a cycle closed only by a TYPE_CHECKING import counts."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .app import App\n"
    imports = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)]
    assert [n.module for n in imports] == ["typing", "app"]
