"""The legacy API retires on 2027-02-01 (MC1220762): every legacy run warns naming the date,
``check`` shows it, and after the date (injected clock) ``check`` fails with the migration step
(docs/defender-service.md#legacy-retirement)."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import pytest

from shared import bootstrap
from shared.cli import main
from shared.core.retirement import LEGACY_RETIREMENT, api_notice
from shared.core.settings import Settings
from tests.credentials.conftest import MovableClock

BEFORE = datetime(2026, 12, 1, tzinfo=UTC)
AFTER = datetime(2027, 2, 1, 0, 0, 1, tzinfo=UTC)


def test_notice_by_date() -> None:
    """Graph is fine; legacy warns before the date (with the days left) and fails from it."""
    assert api_notice("graph", AFTER).status == "ok"
    warn = api_notice("legacy", BEFORE)
    assert warn.status == "warn" and "2027-02-01" in warn.detail and "MC1220762" in warn.detail
    assert "in 62 days" in warn.detail
    assert warn.fix is not None and "DEFENDER_API=graph" in warn.fix
    assert api_notice("legacy", LEGACY_RETIREMENT).status == "fail"


def _check(
    env: dict[str, str], now: datetime, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, dict[str, object]]:
    svc = bootstrap.build(Settings.from_env(env), clock=MovableClock(now))
    out = io.StringIO()
    with monkeypatch.context() as patch:  # undone before app_env clears the real cache
        patch.setattr(bootstrap, "services", lambda: svc)
        status = main(["check", "--json"], out=out)
    return status, json.loads(out.getvalue())


@pytest.mark.e2e
def test_check_warns_then_fails_after_the_date(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Legacy before the date: a warning logged at start and on every ingestion run, check ok
    with a warn row; after it: check exits 1 with the migration step. Graph: no notice."""
    env = {**app_env, "DEFENDER_API": "legacy"}
    caplog.set_level(logging.WARNING, logger="shared.bootstrap")
    svc = bootstrap.build(Settings.from_env(env), clock=MovableClock(BEFORE))
    warned = [r for r in caplog.records if "2027-02-01" in r.getMessage()]
    assert warned and warned[0].levelno == logging.WARNING  # at start
    caplog.clear()
    svc.ingestor()  # the first run after start: build already warned
    svc.ingestor()  # the next timer run in the same worker warns again
    assert sum("2027-02-01" in r.getMessage() for r in caplog.records) == 1

    status, report = _check(env, BEFORE, monkeypatch)
    assert status == 0, report
    api = report["api"]
    assert isinstance(api, dict) and api["status"] == "warn"
    assert "2027-02-01" in api["detail"] and "MC1220762" in api["detail"]
    assert "DEFENDER_API=graph" in api["fix"]

    status, report = _check(env, AFTER, monkeypatch)
    assert status == 1
    api = report["api"]
    assert isinstance(api, dict) and api["status"] == "fail"
    assert "was retired on 2027-02-01" in api["detail"] and "DEFENDER_API=graph" in api["fix"]
    assert report["ok"] is False

    status, report = _check({**app_env, "DEFENDER_API": "graph"}, AFTER, monkeypatch)
    assert status == 0 and report["api"] == {
        "status": "ok",
        "detail": "Microsoft Graph security API",
        "fix": None,
    }


@pytest.mark.e2e
def test_check_table_shows_the_notice(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = bootstrap.build(
        Settings.from_env({**app_env, "DEFENDER_API": "legacy"}), clock=MovableClock(BEFORE)
    )
    out = io.StringIO()
    with monkeypatch.context() as patch:
        patch.setattr(bootstrap, "services", lambda: svc)
        assert main(["check"], out=out) == 0
    lines = out.getvalue().splitlines()
    api = next(line for line in lines if line.startswith("api: "))
    assert api.startswith("api: WARN the legacy Defender XDR API (DEFENDER_API=legacy) retires")
    assert lines[lines.index(api) + 1].startswith("  fix: switch to Microsoft Graph")
