"""What the ingestion guarantee tests check after runs: the store equals the emulator's truth.

- every line in the blob archive is one version, stored exactly once;
- every current version, and every version that stood still through a completed run
  (``must_have``), is in the archive; nothing the tests never observed in the truth is;
- the table has one row per current incident, whose blob line is the incident's current JSON,
  field for field, and whose summary columns agree with it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient

from shared import bootstrap
from shared.cli import main
from testkit.storage_view import archived_lines, duplicates, incident_key, table_rows
from tests.conftest import LocalCloud

ROOT = Path(__file__).resolve().parents[2]
ENVELOPE = ("_tenantId", "_api", "_ingestedAt")


def truth(cloud: LocalCloud, tenant: str, api: str) -> list[dict[str, Any]]:
    return list(cloud.admin("GET", f"truth/{tenant}/incidents?api={api}")["value"])


def versions(snapshot: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {incident_key(i) for i in snapshot}


def env_for(app_env: dict[str, str], **extra: str) -> dict[str, str]:
    """The CLI's settings for runs over the home tenant alone, with short leases, and ``extra``."""
    home = app_env["DEFENDER_TENANT_ID"]
    return {**app_env, "INGEST_TENANTS": home, "INGEST_LEASE_SECONDS": "15", **extra}


def repeated_runs_env(cloud: LocalCloud, app_env: dict[str, str], api: str) -> dict[str, str]:
    """Settings for many short runs on ``api`` under injected faults; lifts the emulator's
    incident and alert quotas for them."""
    env = env_for(
        app_env,
        DEFENDER_API=api,
        API_MAX_ATTEMPTS="8",
        API_MAX_RETRY_WAIT_SECONDS="120",  # an injected 429 is waited out, not a failure
    )
    # many short runs in a minute would meet the real 50/min quota and wait for minutes: the
    # quotas are not what these tests are about (tests/defender covers them)
    for family in ("incidents", "alerts"):
        cloud.admin("POST", "quotas", {"family": family, "limits": []})
    return env


def ingest_process(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``python -m shared ingest --json`` in its own process, as the timer would run it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DEFENDER_", "INGEST_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "shared", "ingest", "--json", *args],
        cwd=ROOT,
        env={**base, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ingest(env: dict[str, str], *args: str) -> dict[str, Any]:
    """One run to its end, in this process; the tenant's summary entry (the run must not crash).

    ``python -m shared ingest --json`` through the CLI's own ``main`` with exactly ``env`` as
    the process environment and a fresh composition root, which is all a new process would
    start with (the token cache, the rate limiter and the settings live in
    ``bootstrap.services``). A child process costs a second or two of start-up per run; tests
    about the process boundary (a kill, two runs at once) use ``ingest_process``.
    """
    out = io.StringIO()
    with _process_environment(env):
        bootstrap.services.cache_clear()
        try:
            code = main(["ingest", "--json", *args], out=out)
        finally:
            bootstrap.services.cache_clear()
    assert code in (0, 1), out.getvalue()
    summary = json.loads(out.getvalue())
    assert len(summary["tenants"]) == 1, summary
    return dict(summary["tenants"][0])


@contextlib.contextmanager
def _process_environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` as ``ingest_process`` gives a child: the app's settings from ``env``
    alone; restored afterwards."""
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith(("DEFENDER_", "INGEST_"))]:
            del os.environ[name]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _stored_json(conn: str, blob: str, line: int) -> dict[str, Any]:
    container = BlobServiceClient.from_connection_string(conn).get_container_client(
        "defender-incidents"
    )
    data = gzip.decompress(container.download_blob(blob).readall()).decode("utf-8")
    record = json.loads(data.splitlines()[line - 1])
    return {k: v for k, v in record.items() if k not in ENVELOPE}


def _unordered_alerts(incident: dict[str, Any]) -> dict[str, Any]:
    """The incident with its alerts keyed by id: their order within an incident is not part of
    the contract (and differs between ``$expand`` and ``alerts_v2``)."""
    alerts = incident.get("alerts")
    if not isinstance(alerts, list):
        return incident
    keyed = {str(a.get("id", a.get("alertId"))): a for a in alerts}
    return {**incident, "alerts": keyed}


def assert_store_matches(
    cloud: LocalCloud,
    conn: str,
    tenant: str,
    api: str,
    observed: set[tuple[str, str]],
    must_have: set[tuple[str, str]] | None = None,
) -> None:
    """The archive and the table agree with the truth (see the module docstring)."""
    current = truth(cloud, tenant, api)
    lines = archived_lines(conn, tenant)
    stored = [incident_key(line) for line in lines]
    assert duplicates(lines) == [], "a version is stored more than once"
    assert set(stored) >= versions(current), "a current version is missing from the archive"
    assert set(stored) >= (must_have or set()), "a version a completed run could read is missing"
    assert set(stored) <= observed | versions(current), "the archive holds a version never seen"
    rows = table_rows(conn, tenant)
    assert set(rows) == {incident_key(i)[0] for i in current}
    for incident in current:
        key, stamp = incident_key(incident)
        row = rows[key]
        assert row["Version"] == stamp, key
        stored_json = _stored_json(conn, row["BlobName"], row["BlobLine"])
        assert _unordered_alerts(stored_json) == _unordered_alerts(incident), key
        redirect = incident.get("redirectIncidentId")
        assert row["RedirectIncidentId"] == ("" if redirect is None else str(redirect)), key
        status = str(incident["status"])
        assert row["Status"].lower() == status.lower(), key
