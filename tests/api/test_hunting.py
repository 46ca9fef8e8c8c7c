"""Hunting through both faces: templates with typed parameters as KQL literals (the emulator's
KQL engine receives each value as one literal), free-form KQL behind a setting, CSV, and the
asynchronous 202 pattern followed as Logic Apps follows it."""

from __future__ import annotations

import time
from typing import Any

import azure.functions as func
import pytest

from emulator.kql import _tokenize
from shared.api.app import backend
from shared.usecases.hunting import templates
from tests.api.conftest import Answer, Face, drain_queue, indexed_functions, setenv
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e

INJECTIONS = (
    '"; DeviceInfo | take 100000 //',
    "'; DeviceInfo | take 100000 //",
    '\\"; DeviceProcessEvents | take 100000 //',
    '" or 1==1 or "',
    "x\n| take 100000",
    "x\r\n| project Secret",
    '@"verbatim" | count',
    "} | union * {",
    "tab\tand\\backslash\\",
)
ALERTS = {"template": "alerts-by-severity", "parameters": {"lookback": "30d", "limit": 500}}


def _hunt(face: Face, body: dict[str, Any], **headers: str) -> Answer:
    return face.request("POST", "/hunting", json_body=body, headers=headers)


def _kinds(query: str) -> list[tuple[str, str]]:
    """The query's token structure: kinds, with non-string token texts."""
    return [(t.kind, "" if t.kind == "string" else t.text) for t in _tokenize(query)]


@pytest.mark.parametrize("value", INJECTIONS)
def test_template_values_are_single_literals(value: str) -> None:
    """Pure: whatever the value, the rendered query has the template's token structure, and the
    value comes back out of the emulator's tokenizer as exactly one string token."""
    template = templates()["device-processes"]
    benign = _kinds(template.render({"device": "host1"}))
    rendered = template.render({"device": value})
    assert _kinds(rendered) == benign
    strings = [t.value for t in _tokenize(rendered) if t.kind == "string"]
    assert value in strings


def test_injection_attempts_reach_the_emulator_as_literals(face: Face, cloud: LocalCloud) -> None:
    """The emulator runs each query (200, no rows): a value that had changed the structure
    would have been a KQL error (400) or returned the whole table."""
    before = cloud.request_count("graph.hunting.run")
    sent = 0
    for value in INJECTIONS:
        answer = _hunt(face, {"template": "device-processes", "parameters": {"device": value}})
        sent += 1
        assert answer.status == 200, answer.body
        body = answer.json()
        assert body["rows"] == [] and body["rowCount"] == 0
        assert [c["name"] for c in body["columns"]][:2] == ["Timestamp", "DeviceName"]
    assert cloud.request_count("graph.hunting.run") - before == sent
    statuses = {
        row["status"]
        for row in cloud.stats()["requests"]
        if row["endpoint"] == "graph.hunting.run" and row["count"]
    }
    assert statuses == {200}


def test_parameters_are_checked_and_named(face: Face) -> None:
    cases = {
        "unknown parameter 'devise'": {"device": "a", "devise": "b"},
        "missing parameter 'device'": {},
        "parameter 'limit' (int)": {"device": "a", "limit": "10"},
        "parameter 'lookback' (duration)": {"device": "a", "lookback": "1 week"},
    }
    for expected, parameters in cases.items():
        answer = _hunt(face, {"template": "device-processes", "parameters": parameters})
        assert answer.status == 400, answer.body
        assert answer.json()["error"]["code"] == "invalid_parameters"
        assert expected in answer.json()["error"]["message"]
    unknown = _hunt(face, {"template": "no-such", "parameters": {}})
    assert unknown.status == 400 and "alerts-by-severity" in unknown.json()["error"]["message"]
    both = _hunt(face, {"template": "device-processes", "query": "AlertInfo"})
    assert both.status == 400
    extra = _hunt(face, {"template": "device-processes", "parametres": {}})
    assert extra.status == 400 and "'parametres'" in extra.json()["error"]["message"]
    listed = face.get("/hunting/templates").json()["value"]
    assert {t["name"] for t in listed} == set(templates())


def test_free_form_kql_only_when_allowed(face: Face, monkeypatch: pytest.MonkeyPatch) -> None:
    refused = _hunt(face, {"query": "AlertInfo | take 3"})
    assert refused.status == 403 and refused.json()["error"]["code"] == "free_kql_disabled"
    setenv(monkeypatch, API_ALLOW_FREE_KQL="true")
    allowed = _hunt(face, {"query": "AlertInfo | take 3", "timespan": "P30D"})
    assert allowed.status == 200 and allowed.json()["rowCount"] == 3
    bad = _hunt(face, {"query": "AlertInfo | take 3", "timespan": "a week"})
    assert bad.status == 400
    upstream = _hunt(face, {"query": "NoSuchTable | take 1"})
    assert upstream.status == 400 and upstream.json()["error"]["code"] == "upstream_bad_request"


def test_csv_and_the_row_limit_flag(face: Face) -> None:
    full = _hunt(face, ALERTS).json()
    assert full["rowCount"] > 2 and full["truncated"] is False
    cut = _hunt(face, {**ALERTS, "maxRows": 2}).json()
    assert cut["rowCount"] == 2 and cut["truncated"] is True
    assert cut["rows"] == full["rows"][:2]
    csv_answer = _hunt(face, {**ALERTS, "format": "csv", "maxRows": 2})
    assert csv_answer.status == 200
    assert csv_answer.header(
        "Content-Type",
    ).startswith("text/csv")  # type: ignore[union-attr]
    assert csv_answer.header("X-Row-Limit-Reached") == "true"
    lines = csv_answer.body.decode().splitlines()
    assert lines[0].split(",")[:2] == ["Timestamp", "AlertId"] and len(lines) == 3


def _follow(face: Face, answer: Answer, work: Any = None, limit: float = 60.0) -> Answer:
    """Poll as Logic Apps does: GET the absolute Location after Retry-After, until not 202."""
    deadline = time.monotonic() + limit
    location = answer.header("Location")
    while answer.status == 202:
        # the job's poll link (tests/api/test_poll_links.py), or its token-only status route
        assert location and location.startswith(
            (face.base + "/api/hunting/status?", face.base + "/api/hunting/jobs/")
        )
        assert answer.header("Location") == location  # the same headers on every poll
        retry = answer.header("Retry-After")
        assert retry is not None and int(retry) >= 1
        if work is not None:
            work()
        time.sleep(int(retry))
        assert time.monotonic() < deadline, "the job never finished"
        answer = face.follow(location)
    return answer


def _queue_worker(face: Face, connection: str) -> Any:
    """Under Functions the ``defender-hunting`` queue trigger runs the job: deliver its
    messages to the real trigger function, as the host would."""
    if face.name != "functions":
        return None
    worker = indexed_functions()["hunting_worker"].get_user_function()

    def work() -> None:
        for text in drain_queue(connection, "defender-hunting"):
            worker(func.QueueMessage(body=text.encode()))

    return work


def test_async_pattern_gives_the_same_rows_as_sync(
    face: Face, monkeypatch: pytest.MonkeyPatch, api_env: dict[str, str]
) -> None:
    setenv(monkeypatch, API_RETRY_AFTER_SECONDS="1")
    sync = _hunt(face, ALERTS)
    assert sync.status == 200
    accepted = _hunt(face, ALERTS, Prefer="respond-async")
    assert accepted.status == 202 and accepted.json()["state"] in ("queued", "running")
    work = _queue_worker(face, api_env["DATA_STORAGE_CONNECTION_STRING"])
    final = _follow(face, accepted, work)
    assert final.status == 200
    assert final.json()["rows"] == sync.json()["rows"]
    assert final.json()["columns"] == sync.json()["columns"]


def test_budget_exceeded_answers_202(
    face: Face, monkeypatch: pytest.MonkeyPatch, api_env: dict[str, str]
) -> None:
    setenv(monkeypatch, API_RETRY_AFTER_SECONDS="1", API_SYNC_BUDGET_SECONDS="0")
    accepted = _hunt(face, ALERTS)
    assert accepted.status == 202
    final = _follow(face, accepted)  # the in-flight hunt finishes and saves its answer
    assert final.status == 200 and final.json()["rowCount"] > 0


def test_a_failed_job_answers_its_error(
    face: Face, monkeypatch: pytest.MonkeyPatch, api_env: dict[str, str]
) -> None:
    setenv(monkeypatch, API_RETRY_AFTER_SECONDS="1", API_ALLOW_FREE_KQL="true")
    accepted = _hunt(face, {"query": "NoSuchTable | take 1"}, Prefer="respond-async")
    assert accepted.status == 202
    final = _follow(face, accepted, _queue_worker(face, api_env["DATA_STORAGE_CONNECTION_STRING"]))
    assert final.status == 400 and final.json()["error"]["code"] == "upstream_bad_request"
    assert face.get("/hunting/jobs/" + "0" * 32).status == 404
    assert face.get("/hunting/jobs/nope").status == 400


def test_other_control_characters_are_refused() -> None:
    template = templates()["device-processes"]
    for value in ("a\x00b", "a\x1bb", "a\u2028b"):
        with pytest.raises(ValueError, match="control characters"):
            template.render({"device": value})


def test_out_of_range_times_are_400_not_500(face: Face) -> None:
    far = "0001-01-01T00:00:00+01:00"  # valid ISO-8601, but before the first representable UTC
    answer = _hunt(
        face,
        {"template": "emails-from-sender", "parameters": {"sender": "a@b.c", "since": far}},
    )
    assert answer.status == 400 and "since" in answer.json()["error"]["message"]
    assert face.get("/incidents", params={"createdFrom": far}).status == 400
    assert face.request("POST", "/ingest", json_body={"since": far}).status == 400


def test_user_context_hunt_runs_in_process_and_is_never_queued(
    face: Face, cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch, api_env: dict[str, str]
) -> None:
    """The caller's token is never stored, so a user-context job runs on this process's threads
    and nothing reaches the queue; the poll still follows the 202 pattern."""
    setenv(monkeypatch, API_RETRY_AFTER_SECONDS="1")
    connection = api_env["DATA_STORAGE_CONNECTION_STRING"]
    drain_queue(connection, "defender-hunting")
    token = cloud.emulator.caller_token("analyst")
    accepted = face.request(
        "POST",
        "/hunting",
        params={"context": "user"},
        json_body=ALERTS,
        headers={"Authorization": f"Bearer {token}", "Prefer": "respond-async"},
    )
    assert accepted.status == 202, accepted.body
    final = _follow(face, accepted)
    assert final.status == 200 and final.json()["rowCount"] > 0
    assert drain_queue(connection, "defender-hunting") == []
    from shared import bootstrap

    stored = backend(bootstrap.services()).jobs.load(accepted.json()["id"])
    assert stored is not None and token not in repr(stored)
