"""The dependency rule, checked: imports point down the floors of docs/architecture.md, and no
first-party modules import each other in a cycle.

The test reads every first-party module with ``ast`` (nothing is imported), so it runs in
milliseconds and sees imports inside functions and under ``TYPE_CHECKING`` too: a deferred
import is still an arrow a reader has to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared.cli import COMMANDS
from testkit.imports import (
    cycles,
    first_party_files,
    import_graph,
    imports_of,
    module_name,
    outside_imports,
    path_to,
    reached,
    runtime_graph,
)

# Floors, lowest first. A module belongs to the floor of its longest matching prefix. A module
# may import from its own floor and from any floor below; never from one above.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("shared", "shared.core")),
    (
        "wings",
        (
            "shared.defender",
            "shared.credentials",
            "shared.storage",
            "shared.push",
            "shared.telemetry",
        ),
    ),
    # the Protocols the use cases take, in the wings' value types (docs/architecture.md)
    ("ports", ("shared.ports",)),
    ("usecases", ("shared.usecases",)),
    ("root", ("shared.bootstrap",)),
    # shared.worker is the Functions face's per-invocation set-up (azure.functions, logging)
    ("faces", ("shared.api", "shared.cli", "shared.__main__", "shared.worker", "function_app")),
    # the local cloud stands apart (see SEPARATE); tools and tests sit on top of everything
    ("emulator", ("emulator",)),
    ("infra", ("infra",)),
    ("testkit", ("testkit",)),
    ("bench", ("bench",)),
    ("tests", ("tests",)),
]
#: outside packages the use cases must not import: they reach storage, Entra and Defender only
#: through the ports, so they run in milliseconds on the fakes of ``testkit.fakes``
SDKS = ("azure", "msal", "requests", "urllib3", "werkzeug", "opentelemetry")
RANK = {name: rank for rank, (name, _) in enumerate(FLOORS)}

# Pairs of floors that must not import each other in either direction, whatever their rank.
SEPARATE = {("emulator", "ground"), ("emulator", "ports"), ("emulator", "wings")}
SEPARATE |= {("emulator", f) for f in ("usecases", "root", "faces")}


def floor_of(module: str) -> str:
    best, best_len = "", -1
    for name, prefixes in FLOORS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = name, len(prefix)
    if not best:
        raise AssertionError(f"{module} is on no floor: add it to FLOORS in {__file__}")
    return best


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        here = floor_of(module)
        for target in sorted(targets):
            there = floor_of(target)
            if (here, there) in SEPARATE or (there, here) in SEPARATE:
                problems.append(f"{module} ({here}) -> {target} ({there}): kept apart")
            elif RANK[there] > RANK[here]:
                problems.append(f"{module} ({here}) -> {target} ({there}): upward")
    return problems


def test_every_module_is_on_a_floor() -> None:
    for module in import_graph():
        floor_of(module)


def test_imports_point_down() -> None:
    problems = upward_imports(import_graph())
    assert not problems, "imports that point up or cross apart:\n" + "\n".join(problems)


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def sdk_imports(floor: str) -> list[str]:
    """``module -> package`` for every SDK import of a module on ``floor``."""
    found = []
    for path in first_party_files():
        module = module_name(path)
        if floor_of(module) != floor:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            found += [f"{module} -> {n}" for n in names if n.split(".")[0] in SDKS]
    return sorted(found)


def test_use_cases_import_no_sdk() -> None:
    found = sdk_imports("usecases")
    assert not found, "use cases importing an SDK:\n" + "\n".join(found)


# What a module loads when it runs (testkit.imports.runtime_graph): its imports at module top and
# inside functions (a function-local import still loads its SDK the first time the function is
# called, so a use case reaching such a wing module would load the SDK mid-run), and the packages
# above each module it imports. Imports under ``if TYPE_CHECKING:`` never run and are not
# followed: a use case may name an adapter's type in an annotation (docs/architecture.md says
# where that is still the case).


def sdk_loaders() -> dict[str, set[str]]:
    """First-party module -> the SDKs it imports itself when it runs (top or in a function)."""
    found = {}
    for path in first_party_files():
        sdks = {n for n in outside_imports(path, runtime=True) if n in SDKS}
        if sdks:
            found[module_name(path)] = sdks
    return found


def loaded_sdks(graph: dict[str, set[str]], loaders: dict[str, set[str]], module: str) -> list[str]:
    """``chain -> sdk`` for every module ``module`` loads (itself and its packages included)
    that imports an SDK; empty when running ``module`` loads none."""
    packages = [module.rsplit(".", i)[0] for i in range(module.count(".") + 1)]
    problems = []
    for start in packages:
        parent = reached(graph, start)
        for target in sorted(set(parent) & set(loaders)):
            chain = " -> ".join(path_to(parent, target))
            problems.append(f"{chain} ({', '.join(sorted(loaders[target]))})")
    return sorted(set(problems))


#: what the SDK-free rule covers: every use case, and the ports they are written against
SDK_FREE = ("usecases", "ports")


def test_use_cases_load_no_sdk() -> None:
    """No use case, and not the ports, loads an SDK, through any first-party module."""
    graph, loaders = runtime_graph(), sdk_loaders()
    problems = [
        problem
        for module in sorted(graph)
        if floor_of(module) in SDK_FREE
        for problem in loaded_sdks(graph, loaders, module)
    ]
    assert not problems, "use cases or ports that load an SDK:\n" + "\n".join(problems)


#: wing modules that do I/O without an SDK of ``SDKS`` (the webhook POST on the standard
#: library's HTTP client): adapters all the same, kept from the faces
STDLIB_ADAPTERS = ("shared.push.transport",)


#: face -> adapter imports allowed, each with its reason (annotation-only imports, checked at
#: the next change of the module)
ADAPTER_NAMED_BY: dict[str, str] = {}


def is_adapter(runtime: dict[str, set[str]], loaders: dict[str, set[str]], module: str) -> bool:
    """A wing module that loads an SDK (itself or through what it imports), or does I/O on the
    standard library (STDLIB_ADAPTERS)."""
    return floor_of(module) == "wings" and (
        module in STDLIB_ADAPTERS or bool(loaded_sdks(runtime, loaders, module))
    )


def adapter_imports(
    floors: tuple[str, ...],
    graph: dict[str, set[str]],
    runtime: dict[str, set[str]],
    loaders: dict[str, set[str]],
) -> list[str]:
    """``module -> adapter`` for every wing adapter a module on ``floors`` imports in any way
    (``graph``: at top, in a function or only for annotations), minus ADAPTER_NAMED_BY."""
    return [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        if floor_of(module) in floors
        for target in sorted(targets)
        if is_adapter(runtime, loaders, target) and f"{module} -> {target}" not in ADAPTER_NAMED_BY
    ]


def test_faces_import_no_wing_adapter() -> None:
    """A face reaches the wings through a use case or the composition root; it may read a
    wing's values (SDK-free modules: vocabularies, records, pure parsing), never an adapter,
    not even to name its type (a port names it)."""
    graph, runtime, loaders = import_graph(), runtime_graph(), sdk_loaders()
    problems = adapter_imports(("faces",), graph, runtime, loaders)
    assert not problems, "faces importing a wing adapter:\n" + "\n".join(problems)


def test_use_cases_name_no_wing_adapter() -> None:
    """The use cases and the ports name their collaborators by the ports, never by an
    adapter's class, even in an annotation."""
    graph, runtime, loaders = import_graph(), runtime_graph(), sdk_loaders()
    problems = adapter_imports(("usecases", "ports"), graph, runtime, loaders)
    assert not problems, "use cases or ports importing a wing adapter:\n" + "\n".join(problems)


def test_every_allowed_adapter_import_is_still_there() -> None:
    """An entry of ADAPTER_NAMED_BY that no longer matches an import is stale: remove it."""
    graph = import_graph()
    present = {f"{m} -> {t}" for m, targets in graph.items() for t in targets}
    assert set(ADAPTER_NAMED_BY) <= present, set(ADAPTER_NAMED_BY) - present


def test_importing_the_cli_loads_no_sdk() -> None:
    """``python -m shared --help`` (and a usage error) imports the CLI and nothing it defers:
    the composition root and every SDK are imported when a command first needs a service."""
    graph = runtime_graph(at_import=True)
    loaders: dict[str, set[str]] = {}
    for path in first_party_files():
        sdks = {n for n in outside_imports(path, at_import=True) if n in SDKS}
        if sdks:
            loaders[module_name(path)] = sdks
    # the CLI imports its command modules by name (``shared.cli.COMMANDS``), which the import
    # graph cannot see: each is a root of its own
    roots = ["shared.__main__", *(f"shared.cli.{module}" for _, module in COMMANDS)]
    problems = [p for root in roots for p in loaded_sdks(graph, loaders, root)]
    assert not problems, "importing the CLI loads an SDK:\n" + "\n".join(problems)


#: the one framework a face may import itself: the Functions face's own (triggers, bindings)
FACE_FRAMEWORKS = ("azure.functions",)


def test_faces_import_no_sdk_but_their_framework() -> None:
    """A face that needs storage, Entra or Defender asks the composition root for an adapter;
    it never talks to an SDK itself."""
    found = [
        line
        for line in sdk_imports("faces")
        if not any(
            line.endswith(f" -> {name}") or f" -> {name}." in line for name in FACE_FRAMEWORKS
        )
    ]
    assert not found, "faces importing an SDK:\n" + "\n".join(found)


def test_the_sdk_rules_can_fail() -> None:
    """A use case reaching an SDK through a value module's function-local import is caught
    (with its chain), and so is a face importing an adapter; a TYPE_CHECKING-only edge is not
    in the runtime graph, so it is not followed."""
    graph = {
        "shared.usecases.x": {"shared.storage.values", "shared.usecases"},
        "shared.usecases": set(),
        "shared.storage.values": {"shared.storage.queue", "shared.storage"},
        "shared.storage.queue": set(),
        "shared.storage": set(),
        "shared.cli.y": {"shared.storage.queue", "shared.storage.values"},
    }
    loaders = {"shared.storage.queue": {"azure"}}
    assert loaded_sdks(graph, loaders, "shared.usecases.x") == [
        "shared.usecases.x -> shared.storage.values -> shared.storage.queue (azure)"
    ]
    assert loaded_sdks(graph, loaders, "shared.storage.values") != []
    assert adapter_imports(("faces",), graph, graph, loaders) == [
        "shared.cli.y -> shared.storage.queue",
        "shared.cli.y -> shared.storage.values",
    ]
    graph["shared.storage.values"] = {"shared.storage"}
    assert loaded_sdks(graph, loaders, "shared.usecases.x") == []
    assert adapter_imports(("faces",), graph, graph, loaders) == [
        "shared.cli.y -> shared.storage.queue"
    ]
    # an annotation-only import: not in the runtime graph, still an adapter named by a face
    annotations = {**graph, "shared.cli.y": {"shared.storage.queue"}}
    runtime = {**graph, "shared.cli.y": set()}
    assert adapter_imports(("faces",), annotations, runtime, loaders) == [
        "shared.cli.y -> shared.storage.queue"
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import azure.core", {"azure"}),
        ("def f():\n    from msal import x", {"msal"}),
        ("if TYPE_CHECKING:\n    import requests", set()),
        ("if TYPE_CHECKING:\n    import requests\nelse:\n    import urllib3", {"urllib3"}),
        ("if typing.TYPE_CHECKING:\n    import requests", set()),
        ("from . import azure", set()),
    ],
)
def test_runtime_imports_are_read(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "m.py"
    path.write_text(source, encoding="utf-8")
    assert outside_imports(path, runtime=True) & set(SDKS) == expected
    at_import = set() if source.startswith("def ") else expected
    assert outside_imports(path, at_import=True) & set(SDKS) == at_import


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The rule can fail: a ground-floor module importing a face is reported, and so is a cycle."""
    graph = {
        "shared.core.errors": {"shared.api.handlers"},
        "shared.api.handlers": {"shared.core.errors"},
    }
    assert upward_imports(graph) == [
        "shared.core.errors (ground) -> shared.api.handlers (faces): upward",
    ]
    assert cycles(graph) == [["shared.api.handlers", "shared.core.errors"]]


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("from shared.api import handlers", "shared.cli.x", {"shared.api.handlers"}),
        ("from shared.api.handlers import route", "shared.cli.x", {"shared.api.handlers"}),
        ("from . import handlers", "shared.api.routes", {"shared.api.handlers"}),
        ("from .handlers import route", "shared.api.routes", {"shared.api.handlers"}),
        ("def f():\n    import shared.core.errors", "shared.cli.x", {"shared.core.errors"}),
        (
            "if TYPE_CHECKING:\n    from shared.core import errors",
            "shared.cli.x",
            {"shared.core.errors"},
        ),
        ("import requests", "shared.cli.x", set()),
    ],
)
def test_imports_are_resolved(tmp_path: Path, source: str, module: str, expected: set[str]) -> None:
    path = tmp_path / "m.py"
    path.write_text(source, encoding="utf-8")
    known = {"shared", "shared.api", "shared.api.handlers", "shared.core.errors", "shared.cli.x"}
    assert imports_of(path, module, known) == expected


if __name__ == "__main__":
    graph = import_graph()
    print("\n".join(upward_imports(graph)))  # noqa: T201 (a listing for whoever fixes them)
    print("\n".join(" <-> ".join(c) for c in cycles(graph)))  # noqa: T201
