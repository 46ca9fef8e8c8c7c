"""local.settings.sample.json and the README list exactly the settings the code reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.core import settings

ROOT = Path(__file__).resolve().parents[2]
#: read by the platform or SDKs rather than by Settings, but documented for users
PLATFORM = {
    "FUNCTIONS_WORKER_RUNTIME",
    "AzureWebJobsStorage",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
}


def _code_settings() -> set[str]:
    return {
        value
        for name, value in vars(settings).items()
        if name.endswith("_SETTING") and isinstance(value, str)
    }


def test_sample_lists_every_setting_and_nothing_else() -> None:
    """Every *_SETTING constant is in the sample, and every sample key is read somewhere."""
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert set(values) - PLATFORM == _code_settings()


def test_readme_documents_every_setting() -> None:
    """The README's settings table has a row for every setting."""
    readme = (ROOT / "README.md").read_text()
    rows = set(re.findall(r"^\| `([A-Za-z_]+)` \|", readme, flags=re.MULTILINE))
    missing = (_code_settings() | PLATFORM) - rows
    assert not missing, f"README settings table lacks: {sorted(missing)}"


def test_sample_parses_with_storage_choice() -> None:
    """The sample's values are valid (with one storage choice and no emulator CA)."""
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    env = {k: v for k, v in values.items() if v and k != "DATA_STORAGE_ACCOUNT_NAME"}
    parsed = settings.Settings.from_env(env)
    assert parsed.defender.api == "graph"
