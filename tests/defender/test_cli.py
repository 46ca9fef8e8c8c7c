"""``python -m shared incidents ...`` and ``hunt`` against the emulator, through ``main``."""

from __future__ import annotations

import csv
import io
import json

import pytest

from shared.cli import main
from tests.conftest import LocalCloud
from tests.defender.conftest import truth

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli_env(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, surface: str) -> str:
    monkeypatch.setenv("DEFENDER_API", surface)
    return surface


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(argv), out=out)
    return status, out.getvalue()


def test_list_in_three_formats(cli_env: str, cloud: LocalCloud) -> None:
    """Table by default, JSON and CSV with the same incidents."""
    status, table = run("incidents", "list", "--limit", "5", "--severity", "High,medium")
    assert status == 0 and table.splitlines()[0].split()[:4] == [
        "id",
        "lastUpdate",
        "status",
        "severity",
    ]
    status, text = run("incidents", "list", "--limit", "5", "--format", "json")
    rows = json.loads(text)
    assert status == 0 and len(rows) == 5 and rows[0]["api"] == cli_env
    expected = [
        str(r["incidentId"] if cli_env == "legacy" else r["id"]) for r in truth(cloud, cli_env)
    ]
    assert [r["id"] for r in rows] == expected[:5]
    status, text = run("incidents", "list", "--limit", "5", "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert status == 0 and [r["id"] for r in parsed] == expected[:5]


def test_get_update_and_errors(
    cli_env: str, cloud: LocalCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    """get/update print the incident; bad input is one line and exit 2; not found exit 1."""
    raw = truth(cloud, cli_env)[0]
    ident = str(raw["incidentId"] if cli_env == "legacy" else raw["id"])
    status, text = run("incidents", "get", ident, "--format", "json")
    assert status == 0 and json.loads(text)["id"] == ident
    status, text = run(
        "incidents", "update", ident, "--status", "InProgress", "--tag", "a,b", "--format", "json"
    )
    assert status == 0 and json.loads(text)["status"] == "inProgress"
    assert json.loads(text)["tags"] == ["a", "b"]
    capsys.readouterr()
    status, _ = run("incidents", "update", ident, "--status", "closed")
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "active, inProgress" in err
    assert err.startswith("error: python -m shared incidents update: status 'closed'")
    status, _ = run("incidents", "get", "999999999")
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("error: not found") and err.count("\n") == 1


def test_hunt_formats(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    """hunt prints columns and rows; a bad query is one line with the API's message."""
    query = "AlertInfo | summarize count() by Severity"
    status, text = run("hunt", query, "--format", "json")
    data = json.loads(text)
    assert status == 0 and [c["name"] for c in data["columns"]] == ["Severity", "count_"]
    status, text = run("hunt", query, "--format", "csv")
    assert status == 0 and text.splitlines()[0] == "Severity,count_"
    capsys.readouterr()
    if cli_env == "legacy":
        status, _ = run("hunt", query, "--timespan", "P7D")
        err = capsys.readouterr().err
        assert status == 2 and "no time span" in err and err.count("\n") == 1
    status, _ = run("hunt", "AlertInfo | join (AlertEvidence) on AlertId")
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("error: the API refused the request")


def test_hunt_csv_is_the_http_apis_csv(cli_env: str) -> None:
    """``hunt --format csv`` writes what ``POST /hunting`` answers with ``format=csv``: the one
    writer (``hunting_csv``), RFC 4180 lines ending in CRLF, lists and objects as JSON."""
    from shared.usecases.incidents import hunting_csv

    query = "AlertInfo | summarize count() by Severity, Category"
    status, text = run("hunt", query, "--format", "json")
    data = json.loads(text)
    assert status == 0 and data["rows"]
    status, written = run("hunt", query, "--format", "csv")
    assert status == 0
    assert written == hunting_csv([c["name"] for c in data["columns"]], data["rows"])
    lines = written.split("\r\n")
    assert lines[0] == "Severity,Category,count_" and lines[-1] == ""
    assert all("\n" not in line for line in lines)
