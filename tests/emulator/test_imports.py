"""The emulator's import rules, read from the source (an AST walk, nothing is imported):
no import cycle between emulator modules, and emulator/ and shared/ never import each other (the
emulator is an independent reading of Microsoft's contract, not of our client).

Every import counts: at module top, inside a function, or under `if TYPE_CHECKING:` (a cycle
hidden from the interpreter is still one for a reader)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = ROOT / "emulator"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> Iterator[str]:
    """Every module name the file at `path` imports (see `imports`)."""
    if path.name == "__init__.py":
        package = _module_name(path)
    else:
        package = "" if path.parent == ROOT else _module_name(path.parent)
    return imports(path.read_text(encoding="utf-8"), package)


def imports(source: str, package: str) -> Iterator[str]:
    """Every module name `source` (a module of `package`) imports: for `from p import n`, `p`
    and `p.n` (`n` may be a module); relative imports resolved."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


def emulator_graph() -> dict[str, set[str]]:
    """emulator module -> the emulator modules it imports."""
    modules = {_module_name(p): p for p in EMULATOR.glob("*.py")}
    return {
        name: {m for m in _imported(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_and_only_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_kind_of_import_counts() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from emulator.server import Emulator\n"
        "def f():\n    import emulator.admin\n"
        "from emulator import store\n"
        "from . import faults\n"
    )
    names = set(imports(source, "emulator"))
    assert {"emulator.server", "emulator.admin", "emulator.store", "emulator.faults"} <= names


def test_no_import_cycle_between_emulator_modules() -> None:
    graph = emulator_graph()
    assert "emulator.server" in graph and "emulator.control" in graph  # the walk found them
    assert cycles(graph) == []


@pytest.mark.parametrize(
    ("tree", "forbidden"),
    [("emulator", "shared"), ("shared", "emulator")],
)
def test_emulator_and_shared_never_import_each_other(tree: str, forbidden: str) -> None:
    files = sorted((ROOT / tree).rglob("*.py"))
    if tree == "shared":
        files.append(ROOT / "function_app.py")
    assert files
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in _imported(path)
        if name == forbidden or name.startswith(f"{forbidden}.")
    ]
    assert offenders == []


def readme_layout() -> list[list[str]]:
    """The module rows of emulator/README.md's "Layout" table, top first."""
    text = (EMULATOR / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) > 2 and ".py`" in cells[1]:
            rows.append(re.findall(r"`([a-z_]+)\.py`", cells[1]))
    return rows


def test_the_readme_module_map_is_complete_and_imports_point_down_it() -> None:
    rank = {module: i for i, row in enumerate(readme_layout()) for module in row}
    graph = {k.rsplit(".", 1)[-1]: v for k, v in emulator_graph().items() if k != "emulator"}
    assert set(graph) - set(rank) == set()  # every module has a row
    upward = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in (t.rsplit(".", 1)[-1] for t in targets if t != "emulator")
        if rank[target] < rank[module]
    ]
    assert upward == []
