"""The benchmark's peak-memory figure is the measured process's own, not its parent's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.__main__ import _MEASURED, measured_peak_kib

ROOT = Path(__file__).resolve().parents[2]


def test_a_child_of_a_big_parent_reports_its_own_peak() -> None:
    # the benchmark holds the emulator's data (250 MiB at 100,000 incidents) when it starts an
    # ingest run; getrusage's ru_maxrss would report that as the child's peak
    ballast = b"\x01" * (300 << 20)  # written, so resident
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED, "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert len(ballast) == 300 << 20
    assert result.returncode == 0, result.stderr[-2000:]
    peak_mib = measured_peak_kib(result.stderr) / 1024
    assert 5 < peak_mib < 200, peak_mib


def test_the_cpu_figure_is_the_measured_process_own() -> None:
    """CPU seconds of the child alone (the benchmark's own process serves the emulator, whose
    work must not count for a reader): a child that does nothing reports well under the
    CPU this parent burnt before starting it."""
    import time

    from bench.__main__ import measured_cpu

    spin = time.process_time() + 1.0
    while time.process_time() < spin:  # the parent's CPU, not the child's
        pass
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED, "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    cpu = measured_cpu(result.stderr)
    assert 0 < cpu < 0.9, cpu
