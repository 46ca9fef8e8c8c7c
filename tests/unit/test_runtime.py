"""The entry points pace the cyclic garbage collector, and leave an operator's choice alone."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.core.runtime import YOUNG_COLLECTION_EVERY, pace_collector

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def collector() -> Iterator[None]:
    before, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.set_threshold(*before)
    (gc.enable if enabled else gc.disable)()


@pytest.mark.usefixtures("collector")
def test_the_young_generation_is_collected_less_often_and_the_older_as_before() -> None:
    gc.set_threshold(700, 10, 10)
    pace_collector()
    assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, 10, 10)


@pytest.mark.usefixtures("collector")
@pytest.mark.parametrize("threshold", [(0, 10, 10), (200_000, 5, 5)])
def test_a_collector_turned_off_or_already_slower_is_left_alone(
    threshold: tuple[int, int, int],
) -> None:
    gc.set_threshold(*threshold)
    pace_collector()
    assert gc.get_threshold() == threshold
    gc.set_threshold(700, 10, 10)
    gc.disable()
    pace_collector()
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "entry",
    [
        "import runpy, sys; sys.argv = ['shared', '--help']\n"
        "try:\n    runpy.run_module('shared', run_name='__main__')\nexcept SystemExit:\n    pass",
        "from shared.worker import NO_INVOCATION, invocation\nwith invocation(NO_INVOCATION):\n"
        "    pass",
    ],
    ids=["cli", "functions-worker"],
)
def test_both_entry_points_pace_it(entry: str) -> None:
    # CPython's default pace, set rather than assumed (it is not the same in every version)
    code = f"import gc\ngc.set_threshold(700, 10, 10)\n{entry}\nprint(gc.get_threshold()[0])"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == str(YOUNG_COLLECTION_EVERY)
