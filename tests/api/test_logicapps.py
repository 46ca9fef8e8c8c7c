"""The asynchronous pattern as Logic Apps runs it (``tests/api/logicapps.py``), through both faces:
a hunt polled with the workflow's managed identity, or with nothing but the ``Location`` (the
poll link's signed capability); a job that says ``running`` while it runs; ``POST /ingest``
followed to the end of the run; ``Retry-After`` on every 202."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest

from tests.api.conftest import (
    PUBLIC,
    Answer,
    Face,
    FunctionsFace,
    drain_queue,
    indexed_functions,
    setenv,
    tenants,
    truth,
)
from tests.api.logicapps import HttpAction, logic_app_identity, push_body
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e

ALERTS = {"template": "alerts-by-severity", "parameters": {"lookback": "30d", "limit": 500}}


@pytest.fixture
def quick(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    setenv(monkeypatch, API_RETRY_AFTER_SECONDS="1")
    return api_env


def _hunting_worker(face: Face, connection: str) -> Any:
    """Under Functions the ``defender-hunting`` queue trigger runs jobs: hand it the queue's
    messages as the host would (under serve jobs run on the server's threads)."""
    worker = indexed_functions()["hunting_worker"].get_user_function()

    def work() -> None:
        if face.name == "functions":
            for text in drain_queue(connection, "defender-hunting"):
                worker(func.QueueMessage(body=text.encode()))

    return work


def _ingest_worker(connection: str) -> Any:
    """The ``defender-ingest`` queue trigger, fed the queue's messages (both faces queue)."""
    worker = indexed_functions()["ingest_worker"].get_user_function()

    def work() -> None:
        for text in drain_queue(connection, "defender-ingest"):
            worker(func.QueueMessage(body=text.encode()))

    return work


def _each_202_says_when_and_where(answers: list[Answer]) -> None:
    accepted = [a for a in answers if a.status == 202]
    assert accepted, "the pattern was not exercised"
    for answer in accepted:
        assert answer.header("Retry-After") == "1"
        assert answer.header("Location")


@pytest.mark.parametrize("polls", ["identity", "nothing"])
def test_a_hunt_through_the_async_pattern_gives_the_rows_of_the_synchronous_call(
    face: Face, cloud: LocalCloud, quick: dict[str, str], polls: str
) -> None:
    """The workflow's identity starts the hunt; Logic Apps polls with that identity, a caller
    that re-sends nothing polls with the Location alone: both get the synchronous rows."""
    sync = face.request("POST", "/hunting", json_body=ALERTS)
    assert sync.status == 200, sync.body[:300]
    action = HttpAction(face, logic_app_identity(cloud), reauthenticate_polls=polls == "identity")
    final = action.run(
        "POST",
        "/hunting",
        json_body=ALERTS,
        headers={"Prefer": "respond-async"},
        between_polls=_hunting_worker(face, quick["DATA_STORAGE_CONNECTION_STRING"]),
    )
    assert final.status == 200, final.body[:300]
    assert final.json()["rows"] == sync.json()["rows"]
    assert final.json()["columns"] == sync.json()["columns"]
    _each_202_says_when_and_where(action.answers)
    link = urlsplit(action.answers[0].header("Location") or "")
    assert link.path == "/api/hunting/status"
    assert set(parse_qs(link.query)) == {"job", "tenant", "exp", "sig"}
    # the same link on every 202, so a caller that keeps the first one is right too
    assert {a.header("Location") for a in action.answers if a.status == 202} == {
        action.answers[0].header("Location")
    }


def test_a_job_says_running_while_it_runs(cloud: LocalCloud, quick: dict[str, str]) -> None:
    """Queued until a worker takes it, ``running`` while the hunt is in flight (Defender slowed
    down here), then the answer. Through the Functions triggers: the queue and its worker are
    the host's (serve runs jobs at once on its own threads)."""
    face = FunctionsFace("functions", PUBLIC, token=cloud.emulator.api_token("analyst"))
    connection = quick["DATA_STORAGE_CONNECTION_STRING"]
    accepted = face.request(
        "POST", "/hunting", json_body=ALERTS, headers={"Prefer": "respond-async"}
    )
    assert accepted.status == 202 and accepted.json()["state"] == "queued"
    location = accepted.header("Location") or ""
    assert face.follow(location, token=None, key=None).json()["state"] == "queued"
    cloud.admin("POST", "faults", {"rate": 1.0, "kinds": ["slow"], "slow_seconds": 4, "seed": 1})
    worker = threading.Thread(target=_hunting_worker(face, connection))
    worker.start()
    try:
        seen = set()
        deadline = time.monotonic() + 30
        while worker.is_alive() and time.monotonic() < deadline:
            answer = face.follow(location, token=None, key=None)
            if answer.status != 202:
                break
            seen.add(answer.json()["state"])
            time.sleep(0.3)
    finally:
        worker.join(60)
        cloud.admin("POST", "faults", {"rate": 0})
    assert "running" in seen, seen
    final = face.follow(location, token=None, key=None)
    assert final.status == 200 and final.json()["rowCount"] > 0


def test_post_ingest_gives_a_location_to_follow_to_the_end_of_the_run(
    face: Face, cloud: LocalCloud, quick: dict[str, str]
) -> None:
    """``POST /ingest`` answers 202 with ``Location`` (the tenant's ingestion status) and
    ``Retry-After``; the status answers 202 while the tenant is queued or running and 200 with
    the run's outcome once it ended."""
    home, _ = tenants(cloud)
    cloud.admin(
        "POST",
        "api/roles",
        {"principal": "id-logic-app", "roles": ["Ingest.Run", "Tenants.All"]},
    )
    action = HttpAction(face, logic_app_identity(cloud))
    worker = _ingest_worker(quick["DATA_STORAGE_CONNECTION_STRING"])
    waits: list[int] = []

    def between_polls() -> None:
        waits.append(1)
        if len(waits) > 1:  # the first poll finds the tenant still queued
            worker()

    final = action.run("POST", "/ingest", params={"tenant": home}, between_polls=between_polls)
    assert final.status == 200, final.body[:300]
    body = final.json()
    assert body["tenant"] == home and body["state"] == "idle"
    assert body["lastResult"] == "ok" and body["lastSuccess"] is not None
    assert body["watermark"] is not None and body["health"] == "ok"
    assert [a.status for a in action.answers] == [202, 202, 200]
    assert action.answers[1].json()["state"] == "queued"
    _each_202_says_when_and_where(action.answers)
    first = action.answers[0]
    assert first.status == 202 and first.json()["tenant"] == home
    assert urlsplit(first.header("Location") or "").path == "/api/ingest/status"
    # the status route is authenticated like the rest: nothing gets nothing
    refused = face.follow(first.header("Location") or "", token=None, key=face.key)
    assert refused.status == 401


def test_the_sync_budget_is_capped_below_the_logic_apps_timeout() -> None:
    from shared.core.errors import ConfigError
    from shared.core.settings import Settings

    base = {
        "DEFENDER_TENANT_ID": "11111111-2222-3333-4444-555555555555",
        "DEFENDER_CLIENT_ID": "66666666-7777-8888-9999-000000000000",
        "KEY_VAULT_URL": "https://kv.vault.azure.net",
        "DATA_STORAGE_ACCOUNT_NAME": "stdata",
    }
    assert Settings.from_env(base).http.sync_budget == 20.0
    assert Settings.from_env({**base, "API_SYNC_BUDGET_SECONDS": "90"}).http.sync_budget == 90.0
    with pytest.raises(ConfigError, match="120") as raised:
        Settings.from_env({**base, "API_SYNC_BUDGET_SECONDS": "100"})
    assert "API_SYNC_BUDGET_SECONDS" in str(raised.value)


def _split(url: str) -> tuple[str, dict[str, str]]:
    """An absolute URL of the API as (path below /api, query parameters)."""
    parts = urlsplit(url)
    return parts.path.removeprefix("/api"), {k: v[0] for k, v in parse_qs(parts.query).items()}


def test_the_sample_workflow_cannot_trigger_itself(
    face: Face, cloud: LocalCloud, quick: dict[str, str]
) -> None:
    """The sample's steps (infra/logicapp/workflow.json), run as Logic Apps would against the
    API with the workflow's identity: a high-severity incident without the triage tag fires the
    trigger and is hunted, tagged and commented; every version the workflow made fails the
    trigger's condition and the run's own check, so push delivering it (loop protection or
    not) starts no run that changes anything."""
    import json
    from pathlib import Path

    from shared.defender.model import normalize
    from tests.infra.wdl import Run

    workflow = json.loads(
        (Path(__file__).parents[2] / "infra" / "logicapp" / "workflow.json").read_text()
    )
    trigger = workflow["triggers"]["When_a_high_severity_incident_is_created_or_updated"]
    fires = trigger["conditions"][0]["expression"]
    steps = workflow["actions"]
    branch = steps["Unless_already_triaged"]
    home, _ = tenants(cloud)
    raw = next(i for i in truth(cloud, home) if i.get("severity") == "high")
    run = Run(
        parameters={"bridgeUrl": face.base, "tenantId": home, "triageTag": "bridge-triaged"},
        trigger_body=push_body(home, normalize(raw, "graph")),
    )
    assert run.value(fires) is True
    action = HttpAction(face, logic_app_identity(cloud))

    def step(name: str, inputs: dict[str, Any], **kw: Any) -> Answer:
        path, params = _split(run.value(inputs["uri"]))
        body = run.value(inputs["body"]) if "body" in inputs else None
        answer = action.run(
            inputs["method"],
            path,
            params=params,
            json_body=body,
            headers=inputs.get("headers"),
            **kw,
        )
        assert answer.status == 200, (name, answer.body[:300])
        run.bodies = {**run.bodies, name: answer.json()}
        return answer

    def pushed_now() -> dict[str, Any]:
        """What push delivers for the incident's current version."""
        current = next(i for i in truth(cloud, home) if i["id"] == raw["id"])
        return push_body(home, normalize(current, "graph"))

    step("Get_the_incident_as_it_is_now", steps["Get_the_incident_as_it_is_now"]["inputs"])
    assert run.condition(branch["expression"]) is True
    inner = branch["actions"]
    step(
        "Hunt_recent_high_severity_alerts",
        inner["Hunt_recent_high_severity_alerts"]["inputs"],
        between_polls=_hunting_worker(face, quick["DATA_STORAGE_CONNECTION_STRING"]),
    )
    step("Tag_the_incident", inner["Tag_the_incident"]["inputs"])
    after_tag = pushed_now()
    step("Comment_on_the_incident", inner["Comment_on_the_incident"]["inputs"])
    after_comment = pushed_now()
    for version in (after_tag, after_comment):
        assert "bridge-triaged" in version["incident"]["tags"]
        assert set(raw.get("customTags") or []) <= set(version["incident"]["tags"])
        again = Run(parameters=run.parameters, trigger_body=version)
        assert again.value(fires) is False  # no run at all
    # and were a run started anyway (a stale delivery), its own check stops it
    step("Get_the_incident_as_it_is_now", steps["Get_the_incident_as_it_is_now"]["inputs"])
    assert run.condition(branch["expression"]) is False
