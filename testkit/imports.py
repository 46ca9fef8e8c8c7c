"""The first-party import graph, read from the source with ``ast`` (nothing is imported), for
the tests that check the dependency rules (tests/unit/test_layers.py for the floors of
docs/architecture.md, tests/emulator/test_imports.py for the emulator's own module map).

Every import counts: at module top, inside a function, or under ``if TYPE_CHECKING:`` (a
deferred import is still an arrow a reader has to follow).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("shared", "emulator", "bench", "tests", "testkit", "function_app", "infra")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def first_party_files() -> Iterator[Path]:
    for top in TOP_LEVEL:
        single = ROOT / f"{top}.py"
        if single.is_file():
            yield single
        folder = ROOT / top
        if folder.is_dir():
            yield from (p for p in sorted(folder.rglob("*.py")) if "node_modules" not in p.parts)


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """The first-party modules ``path`` imports (``from a import b`` counts ``a.b`` when that
    is a module, else ``a``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            # the longest known module the name starts with: a.b.C -> a.b
            candidate = name
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != module:
                found.add(candidate)
    # `from a.b import C` leaves both a.b and a; keep only the most specific of a chain
    return {m for m in found if not any(o.startswith(m + ".") for o in found)}


@functools.cache
def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in first_party_files()}
    known = set(files)
    return {m: imports_of(p, m, known) for m, p in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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
    return sorted(found)
