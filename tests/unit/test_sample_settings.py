"""local.settings.sample.json and the README list exactly the settings the code declares, with
the declared defaults; secrets stay out of ``repr``."""

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
    """Every setting the code knows: the declared ones and those read elsewhere."""
    return {d.name for d in settings.DECLARATIONS} | set(settings.READ_ELSEWHERE)


def _readme_rows() -> dict[str, str]:
    """The README's settings table: setting -> its default cell (the first row of a name)."""
    readme = (ROOT / "README.md").read_text()
    rows: dict[str, str] = {}
    for name, default in re.findall(r"^\| `([A-Za-z_]+)` \| ([^|]*) \|", readme, re.MULTILINE):
        rows.setdefault(name, default.strip())
    return rows


def test_every_setting_name_is_declared_or_read_elsewhere() -> None:
    """A ``*_SETTING`` constant without a declaration (or a declaration without a constant)
    would be a setting the parse forgets, or one the tests below cannot see."""
    constants = {
        value
        for name, value in vars(settings).items()
        if name.endswith("_SETTING") and isinstance(value, str)
    }
    assert constants == _code_settings()
    names = [d.name for d in settings.DECLARATIONS]
    assert len(names) == len(set(names)), "a setting is declared twice"


def test_sample_lists_every_setting_and_nothing_else() -> None:
    """Every setting is in the sample, and every sample key is read somewhere."""
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert set(values) - PLATFORM == _code_settings()


def test_readme_documents_every_setting() -> None:
    """The README's settings table has a row for every setting."""
    missing = (_code_settings() | PLATFORM) - set(_readme_rows())
    assert not missing, f"README settings table lacks: {sorted(missing)}"


def test_readme_defaults_are_the_declared_ones() -> None:
    """A fixed default is shown as written in its declaration; a required setting says so."""
    rows = _readme_rows()
    wrong = {}
    for d in settings.DECLARATIONS:
        if d.required:
            expected = "required"
        elif d.raw_default:
            expected = f"`{d.raw_default}`"
        else:
            continue  # no default, or one derived from other settings: described in words
        if rows[d.name] != expected:
            wrong[d.name] = (rows[d.name], expected)
    assert not wrong, f"README default cells differ from the declarations: {wrong}"


def test_sample_parses_with_storage_choice() -> None:
    """The sample's values are valid (with one storage choice and no emulator CA)."""
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    env = {k: v for k, v in values.items() if v and k != "DATA_STORAGE_ACCOUNT_NAME"}
    parsed = settings.Settings.from_env(env)
    assert parsed.defender.api == "graph"


#: a valid value of each secret setting (a new secret must be added here, and so is checked)
SECRET_VALUES = {
    settings.STORAGE_CONNECTION_STRING_SETTING: "AccountName=a;AccountKey=c2VjcmV0S2V5VmFsdWU=",
    settings.API_SIGNING_KEY_SETTING: "current-signing-key-" + "c" * 24,
    settings.API_SIGNING_KEY_PREVIOUS_SETTING: "previous-signing-key-" + "p" * 24,
}


def test_secrets_stay_out_of_repr() -> None:
    """No secret setting's value appears in ``repr`` of the parsed settings (a traceback or a
    log line of the object shows the rest)."""
    assert {d.name for d in settings.DECLARATIONS if d.secret} == set(SECRET_VALUES)
    env = {
        settings.TENANT_ID_SETTING: "11111111-1111-1111-1111-111111111111",
        settings.CLIENT_ID_SETTING: "22222222-2222-2222-2222-222222222222",
        settings.KEY_VAULT_URL_SETTING: "https://v.vault.azure.net",
        **SECRET_VALUES,
    }
    parsed = settings.Settings.from_env(env)
    assert (
        parsed.storage.connection_string
        == SECRET_VALUES[settings.STORAGE_CONNECTION_STRING_SETTING]
    )
    assert (
        parsed.http.signing_key_previous == SECRET_VALUES[settings.API_SIGNING_KEY_PREVIOUS_SETTING]
    )
    text = repr(parsed)
    assert "vault.azure.net" in text  # the rest is shown
    for value in SECRET_VALUES.values():
        assert value not in text
    assert "c2VjcmV0" not in text
