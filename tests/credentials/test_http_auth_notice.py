"""Who the HTTP API admits is said at start-up and by ``check``: a warning when a function key
grants every tenant (``API_AUTH_MODE=key``) and when a retired setting is still set (it is not
obeyed: ``API_REQUIRE_CLIENT_PRINCIPAL``)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from shared import bootstrap
from shared.cli import main
from shared.core.settings import Settings
from tests.credentials.conftest import MovableClock


def _check(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    svc = bootstrap.build(Settings.from_env(env), clock=MovableClock())
    out = io.StringIO()
    with monkeypatch.context() as patch:  # undone before app_env clears the real cache
        patch.setattr(bootstrap, "services", lambda: svc)
        status = main(["check", *args], out=out)
    return status, out.getvalue()


@pytest.mark.e2e
def test_key_mode_and_the_retired_setting_are_warned_about(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env = {**app_env, "API_AUTH_MODE": "key", "API_REQUIRE_CLIENT_PRINCIPAL": "true"}
    caplog.set_level(logging.WARNING, logger="shared.bootstrap")
    bootstrap.build(Settings.from_env(env), clock=MovableClock())
    logged = " | ".join(r.getMessage() for r in caplog.records)
    assert "API_AUTH_MODE=key" in logged and "every registered tenant" in logged
    assert "API_REQUIRE_CLIENT_PRINCIPAL is set but no longer read" in logged

    status, text = _check(env, monkeypatch, "--json")
    report = json.loads(text)
    assert status == 0, report  # a warning, not a failure
    http = report["http_auth"]
    assert http["status"] == "warn" and "every registered tenant" in http["detail"]
    assert "API_REQUIRE_CLIENT_PRINCIPAL" in http["detail"] and "API_AUTH_MODE=entra" in http["fix"]

    status, table = _check(env, monkeypatch)
    lines = table.splitlines()
    line = next(x for x in lines if x.startswith("http api: "))
    assert line.startswith("http api: WARN API_AUTH_MODE=key")
    assert lines[lines.index(line) + 1].startswith("  fix: ")


@pytest.mark.e2e
def test_the_default_needs_no_warning(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shared.bootstrap")
    bootstrap.build(Settings.from_env(app_env), clock=MovableClock())
    assert not any("API_AUTH_MODE" in r.getMessage() for r in caplog.records)
    status, text = _check(app_env, monkeypatch, "--json")
    http = json.loads(text)["http_auth"]
    assert status == 0 and http["status"] == "ok"
    assert http["detail"] == f"Entra ID tokens for api://{app_env['DEFENDER_CLIENT_ID']}"
    _, table = _check(app_env, monkeypatch)
    assert "http api:" not in table
