"""The benchmark's peak-memory figure is the measured process's own, not its parent's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import _MEASURED, absent_in_deploy, measured_peak_kib

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.subprocess
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


@pytest.mark.subprocess
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


def test_modules_no_pinned_distribution_provides_are_absent(tmp_path: Path) -> None:
    pins = tmp_path / "requirements.txt"
    pins.write_text("# runtime\nrequests==2.34.2  # HTTP\nPyJWT==2.15.1\n")
    absent = absent_in_deploy(pins)
    assert "aiohttp" in absent and "orjson" in absent  # installed here, not pinned there
    assert "requests" not in absent and "jwt" not in absent  # pinned (PyJWT provides jwt)


@pytest.mark.subprocess
def test_the_product_imports_only_what_a_deploy_installs() -> None:
    """The measured process sees the deployed set of packages: every module of the product
    still imports there (a test-only package it needed would be a missing requirement)."""
    absent = absent_in_deploy()
    assert "aiohttp" in absent  # present here for the Graph SDK's tests only
    probe = (
        "import sys, function_app, shared.bootstrap, shared.cli, shared.worker;"
        "print(sys.modules['aiohttp'], [m for m in sys.modules if m.startswith('aiohttp.')])"
    )
    code = _MEASURED.split("sys.argv = ")[0] + probe
    env = {**os.environ, "BENCH_ABSENT_MODULES": ",".join(absent)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[0] == "None []", result.stdout  # never loaded
