"""Settings and function-app helpers shared by tests and benchmarks."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from shared import bootstrap


def setenv(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Change settings mid-test (the composition root is rebuilt)."""
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    bootstrap.services.cache_clear()


@functools.cache
def indexed_functions() -> dict[str, Any]:
    """``function_app``'s functions by name, indexed once (indexing twice is refused)."""
    import function_app  # on first use: importing it registers its functions with the host

    return {f.get_function_name(): f for f in function_app.app.get_functions()}
