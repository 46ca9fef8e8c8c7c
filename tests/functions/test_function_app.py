"""The Function app's indexing and bindings, as the host sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_imports_and_indexes_with_no_settings_at_all() -> None:
    """With an empty environment, importing function_app succeeds and lists every function."""
    code = (
        "import json, function_app; "
        "print(json.dumps([json.loads(f.get_raw_bindings()[0]) | {'name': f.get_function_name()} "
        "for f in function_app.app.get_functions()]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    bindings = {b["name"]: b for b in json.loads(result.stdout.strip().splitlines()[-1])}
    timer = bindings["ingest_timer"]
    assert timer["type"] == "timerTrigger"
    assert timer["schedule"] == "%INGEST_SCHEDULE%"
    assert timer["useMonitor"] is True


def test_import_does_not_build_clients() -> None:
    """A fresh import builds nothing and loads no heavy SDK: the composition root stays empty
    and msal / azure-identity / storage / Key Vault are imported only on first use."""
    code = (
        "import sys, function_app; from shared import bootstrap; "
        "heavy = [m for m in ('msal', 'azure.identity', 'azure.storage.blob', "
        "'azure.data.tables', 'azure.keyvault.secrets', 'requests') if m in sys.modules]; "
        "print(int(bootstrap.services.built), ','.join(heavy) or '-')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "-"]
