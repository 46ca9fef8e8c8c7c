"""`python -m emulator`: settings on stdout, a ready line on stderr, clean exit on SIGTERM."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.subprocess
def test_cli_prints_settings_and_stops_cleanly(tmp_path: Path) -> None:
    """The export lines point at a live emulator; SIGTERM ends it with status 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--seed", "3", "--state-dir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stderr is not None and process.stdout is not None
        ready = process.stderr.readline()
        assert "ready" in ready
        settings: dict[str, str] = {}
        while len(settings) < 11:
            line = process.stdout.readline()
            assert line.startswith("export ")
            name, _, value = line.removeprefix("export ").strip().partition("=")
            settings[name] = shlex.split(value)[0]
        assert settings["EMULATOR_CA_CERT"] == str(tmp_path / "emulator-ca.pem")
        session = requests.Session()
        session.trust_env = False
        session.verify = settings["EMULATOR_CA_CERT"]
        tenant = settings["DEFENDER_TENANT_ID"]
        response = session.get(
            f"{settings['DEFENDER_AUTHORITY_URL']}/{tenant}/v2.0/.well-known/openid-configuration",
            timeout=10,
        )
        assert response.status_code == 200
        assert settings["INGEST_TENANTS"].split(",")[0] == tenant
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.subprocess
def test_cli_sets_behaviours(tmp_path: Path) -> None:
    """`--order`, `--order-seed`, `--count-pages`, `--late-arrival-seconds`,
    `--expand-failure-tenant` become the behaviours in force; a bad value stops the start with
    status 1."""
    args = ["--seed", "3", "--state-dir", str(tmp_path), "--customer-tenants", "0"]
    flags = ["--order", "arbitrary", "--order-seed", "9", "--late-arrival-seconds", "2.5"]
    flags += ["--count-pages", "none"]
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", *args, *flags, "--expand-failure-tenant", "*"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stderr is not None and process.stdout is not None
        assert "ready" in process.stderr.readline()
        settings: dict[str, str] = {}
        while len(settings) < 11:
            line = process.stdout.readline()
            name, _, value = line.removeprefix("export ").strip().partition("=")
            settings[name] = value
        url = shlex.split(settings["DEFENDER_AUTHORITY_URL"])[0]
        session = requests.Session()
        session.trust_env = False
        session.verify = str(tmp_path / "emulator-ca.pem")
        shown = session.get(f"{url}/_emulator/behaviour", timeout=10).json()
        assert shown["order"] == "arbitrary" and shown["order_seed"] == 9
        assert shown["count_pages"] == "none"
        assert shown["late_arrival_seconds"] == 2.5
        assert shown["expand_failure_tenants"] == ["*"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    bad = subprocess.run(
        [sys.executable, "-m", "emulator", *args, "--late-arrival-seconds", "-1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert "late_arrival_seconds" in bad.stderr
