"""The recipe in docs/local-cloud.md for using the Graph SDK against the local cloud runs as
written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import requests

from emulator.server import Emulator

README = Path(__file__).resolve().parents[2] / "docs" / "local-cloud.md"


def _recipe() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- sdk-recipe:[^>]*-->\n```python\n(.*?)\n```", text, re.DOTALL)
    assert match, "docs/local-cloud.md has no sdk-recipe block"
    return match.group(1)


def test_readme_sdk_recipe_lists_incidents(fresh: Emulator, http: requests.Session) -> None:
    """With the emulator's printed settings in the environment, the block prints three
    incidents of the home tenant (id, status, severity, name) and nothing on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "KEY_VAULT"))}
    env.update(fresh.app_settings())
    result = subprocess.run(
        [sys.executable, "-c", _recipe()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    url = f"{fresh.url}/_emulator/truth/{fresh.home_tenant_id}/incidents?api=graph"
    ids = {i["id"] for i in http.get(url, timeout=30).json()["value"]}
    for line in lines:
        incident_id, status, severity, _name = line.split(" ", 3)
        assert incident_id in ids
        assert status in {"active", "inProgress", "resolved", "redirected", "unknownFutureValue"}
        assert severity in {"informational", "low", "medium", "high"}
    assert fresh.client_secret not in result.stdout
