"""The first-party import graph, read from the source with ``ast`` (nothing is imported), for
the tests that check the dependency rules (tests/unit/test_layers.py for the floors of
docs/architecture.md, tests/emulator/test_imports.py for the emulator's own module map).

Every import counts: at module top, inside a function, or under ``if TYPE_CHECKING:`` (a
deferred import is still an arrow a reader has to follow). ``runtime_graph`` is the other
reading, for what a module loads when it runs: imports under ``if TYPE_CHECKING:`` never run and
are left out; an import inside a function runs when the function is called and is kept; and
importing ``a.b.c`` runs the packages ``a`` and ``a.b`` first.
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


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(
    tree: ast.AST, *, runtime: bool = False, at_import: bool = False
) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of ``tree``; with ``runtime``, not those under
    ``if TYPE_CHECKING:`` (its ``else`` branch runs, so it is kept); with ``at_import`` (which
    implies ``runtime``), also not those inside a function: what importing the module runs."""
    runtime = runtime or at_import
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif at_import and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        elif runtime and isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                if isinstance(child, ast.Import | ast.ImportFrom):
                    yield child
                else:
                    yield from import_nodes(child, runtime=runtime, at_import=at_import)
        else:
            yield from import_nodes(node, runtime=runtime, at_import=at_import)


def outside_imports(path: Path, *, runtime: bool = False, at_import: bool = False) -> set[str]:
    """The top-level names of the absolute imports of ``path`` (``azure`` for
    ``from azure.core import x``), first-party ones included (``import_nodes`` says which)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in import_nodes(tree, runtime=runtime, at_import=at_import):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def imports_of(
    path: Path, module: str, known: set[str], *, runtime: bool = False, at_import: bool = False
) -> set[str]:
    """The first-party modules ``path`` imports (``from a import b`` counts ``a.b`` when that
    is a module, else ``a``); with ``runtime`` or ``at_import``, only the imports that run
    (``import_nodes``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in import_nodes(tree, runtime=runtime, at_import=at_import):
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


@functools.cache
def runtime_graph(*, at_import: bool = False) -> dict[str, set[str]]:
    """What each first-party module loads when run (with ``at_import``: when imported, its
    functions not called): ``imports_of`` with ``runtime``, plus the packages above each
    module imported (``a.b.c`` runs ``a`` and ``a.b``)."""
    files = {module_name(p): p for p in first_party_files()}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = imports_of(path, module, known, runtime=True, at_import=at_import)
        parents = {t.rsplit(".", i)[0] for t in targets for i in range(1, t.count(".") + 1)}
        graph[module] = (targets | parents) & known - {module}
    return graph


def reached(graph: dict[str, set[str]], start: str) -> dict[str, str | None]:
    """Every module ``start`` reaches in ``graph``, each with the module that imports it on
    one shortest path from ``start`` (``start`` itself maps to None)."""
    parent: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(graph.get(module, ())):
                if target not in parent:
                    parent[target] = module
                    following.append(target)
        frontier = following
    return parent


def path_to(parent: dict[str, str | None], module: str) -> list[str]:
    """The import chain from the start of ``reached`` to ``module``."""
    chain = [module]
    while (step := parent[chain[-1]]) is not None:
        chain.append(step)
    return chain[::-1]


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
