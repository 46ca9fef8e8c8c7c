"""The emulator's own module map: emulator/README.md's "Layout" table names every module, and
imports inside the emulator point down it.

That emulator/ and shared/ never import each other, and that no modules import each other in a
cycle, are checked for the whole repository by tests/unit/test_layers.py, on the same import
graph (testkit.imports)."""

from __future__ import annotations

import re

from testkit.imports import ROOT, import_graph

EMULATOR = ROOT / "emulator"


def emulator_graph() -> dict[str, set[str]]:
    """emulator module -> the emulator modules it imports."""
    return {
        module: {t for t in targets if t.startswith("emulator.")}
        for module, targets in import_graph().items()
        if module.startswith("emulator.") and module.count(".") == 1
    }


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
    graph = {k.rsplit(".", 1)[-1]: v for k, v in emulator_graph().items()}
    assert "server" in graph and "control" in graph  # the walk found them
    assert set(graph) - set(rank) == set()  # every module has a row
    upward = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in (t.rsplit(".", 1)[-1] for t in targets)
        if rank[target] < rank[module]
    ]
    assert upward == []
