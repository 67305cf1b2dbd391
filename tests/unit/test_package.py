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
    "_workercli": 0,
    "_dashcli": 0,
    "dashboard": 0,
    "__main__": 0,
    "testing": 0,
    "app": 1,
    "routing": 1,
    "scheduling": 1,
    "canvas": 1,
    "deadletter": 1,
    "status": 1,
    "task": 1,
    "sync": 1,
    "job": 1,
    "context": 1,
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
