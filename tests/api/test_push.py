"""Push end to end, through both faces, ingestion and the push worker, against the emulator,
Azurite and a local https receiver: signed deliveries of matching incidents only, ``created``
meaning new to the store, retries that honour ``Retry-After``, a receiver gone past its grace
period dropped and visible, dead letters re-driven, the bridge's own updates not delivered back,
callback URLs sealed at rest (and key rotation), and no credential in any log or answer.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from tests.api.conftest import SIGNING_KEY, Face, setenv, tenants, truth
from tests.api.pushkit import Hook, deliver, deliver_until_idle, ingest, pending
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e

RANK = {"unknown": 0, "informational": 1, "low": 2, "medium": 3, "high": 4}


@pytest.fixture
def hook(push_hook: Hook) -> Hook:
    return push_hook


def _conn(api_env: dict[str, str]) -> str:
    return api_env["DATA_STORAGE_CONNECTION_STRING"]


def _high(cloud: LocalCloud, tenant: str) -> dict[str, str]:
    """(id -> lastUpdate) of the tenant's high-severity incidents, per the emulator."""
    return {
        str(i["id"]): str(i["lastUpdateDateTime"])
        for i in truth(cloud, tenant)
        if i.get("severity") == "high"
    }


def _delivered(hook: Hook) -> list[dict[str, Any]]:
    return [json.loads(body) for _, body in hook.accepted]


def test_signed_deliveries_of_matching_incidents_created_then_updated(
    face: Face,
    cloud: LocalCloud,
    hook: Hook,
    api_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from shared.cli import main
    from shared.push.keys import verify
    from shared.push.messages import delivery_id

    caplog.set_level(logging.DEBUG)
    created = face.request(
        "POST", "/subscriptions", json_body={"callbackUrl": hook.url(), "minSeverity": "high"}
    )
    assert created.status == 201, created.body
    sub = created.json()
    assert created.header("Location") == f"{face.base}/api/subscriptions/{sub['id']}"
    assert "receiver-sig-secret" not in created.body.decode() and sub["host"] == "localhost"
    home, _ = tenants(cloud)
    result = ingest(home)
    assert hook.requests == []  # ingestion only recorded the changes: nothing was sent
    out = _Out()
    assert main(["subscriptions", "deliver", "--json"], out=out) == 0  # the queue trigger's job
    report = json.loads(out.text)
    high = _high(cloud, home)
    got = _delivered(hook)
    assert sorted(d["incident"]["id"] for d in got) == sorted(high)
    assert report["delivered"] == len(high) and result.incidents > len(high)
    assert {d["event"] for d in got} == {"created"}  # new to the store
    for headers, body in hook.accepted:
        data = json.loads(body)
        ident = data["incident"]["id"]
        assert headers["X-Defender-Delivery"] == data["delivery"]
        assert data["delivery"] == delivery_id(sub["id"], home, ident, high[ident])
        assert verify(
            sub["secret"],
            headers["X-Defender-Signature"],
            headers["X-Defender-Delivery"],
            body,
            now=int(time.time()),
        )
        # the signature covers the delivery id and the time: another id does not verify
        assert not verify(
            sub["secret"], headers["X-Defender-Signature"], "x" * 32, body, now=int(time.time())
        )

    # SOC activity updates incidents: the matching new versions arrive as "updated"
    cloud.admin("POST", "activity", {"tenant": home, "create": 0, "update": 40})
    before = set(hook.delivery_ids())
    ingest(home)
    deliver(_conn(api_env))
    now_high = _high(cloud, home)
    fresh = [d for d in _delivered(hook) if d["delivery"] not in before]
    expected = {i for i, lu in now_high.items() if high.get(i) != lu}
    assert expected, "the emulator's activity updated no high-severity incident"
    assert sorted(d["incident"]["id"] for d in fresh) == sorted(expected)
    assert {d["event"] for d in fresh} == {"updated"}
    assert len(hook.delivery_ids()) == len(set(hook.delivery_ids()))

    # nothing new: nothing sent
    count = len(hook.requests)
    ingest(home)
    deliver(_conn(api_env))
    assert len(hook.requests) == count
    logged = caplog.text
    assert "receiver-sig-secret" not in logged and sub["secret"] not in logged
    assert SIGNING_KEY not in logged


def test_callback_urls_are_sealed_at_rest_and_never_taken_from_a_query(
    face: Face, hook: Hook, api_env: dict[str, str]
) -> None:
    from azure.data.tables import TableServiceClient

    assert face.request("POST", "/subscriptions", json_body=hook.url()).status == 201
    table = TableServiceClient.from_connection_string(_conn(api_env)).get_table_client(
        "DefenderSubscriptions"
    )
    rows = [dict(e) for e in table.query_entities("PartitionKey eq 'subscription'")]
    assert len(rows) == 1
    text = json.dumps(rows, default=str)
    assert "receiver-sig-secret" not in text and "/hook" not in text
    assert rows[0]["Callback"].startswith("v1.")
    by_query = face.request(
        "DELETE", "/subscriptions", params={"callbackUrl": hook.url()}, json_body=hook.url()
    )
    assert by_query.status == 400 and by_query.json()["error"]["code"] == "unknown_parameter"
    assert "receiver-sig-secret" not in by_query.body.decode()


def test_subscribe_and_unsubscribe_forms(face: Face, hook: Hook) -> None:
    url = hook.url()
    first = face.request("POST", "/subscriptions", json_body=url)
    assert first.status == 201
    again = face.request(
        "POST", "/subscriptions", body=url.encode(), headers={"Content-Type": "text/plain"}
    )
    if face.name == "serve":
        # serve refuses a text body (what a web page can POST without a preflight): the
        # subscribe again goes as JSON there
        assert again.status == 415
        again = face.request("POST", "/subscriptions", json_body=url)
    assert again.status == 200 and again.json()["id"] == first.json()["id"]
    listed = face.get("/subscriptions").json()["value"]
    assert [s["id"] for s in listed] == [first.json()["id"]]
    assert listed[0]["status"] == "active" and "receiver-sig-secret" not in json.dumps(listed)
    # unsubscribe by the callback without Content-Type, as Logic Apps may send it
    gone = face.request("DELETE", "/subscriptions", body=json.dumps({"callbackUrl": url}).encode())
    assert gone.status == 200 and gone.json() == {"deleted": 1}
    assert face.request("DELETE", "/subscriptions", json_body=url).json() == {"deleted": 0}
    # the subscribe body repeated as the unsubscribe body (filter and all) works too
    face.request("POST", "/subscriptions", json_body={"callbackUrl": url, "minSeverity": "high"})
    same = face.request(
        "DELETE", "/subscriptions", json_body={"callbackUrl": url, "minSeverity": "high"}
    )
    assert same.json() == {"deleted": 1}
    location = first.header("Location") or ""
    assert face.request("DELETE", location.removeprefix(face.base + "/api")).status == 204
    for bad, reason in (
        ("http://localhost/hook", "https"),
        ("https://evil.example.com/hook", "not allowed"),
        ("https://user:pw@localhost/hook", "credentials"),
        ("https://localhost.evil.example/hook", "not allowed"),
    ):
        answer = face.request("POST", "/subscriptions", json_body={"callbackUrl": bad})
        assert answer.status == 400 and reason in answer.json()["error"]["message"], bad
    extra = face.request("POST", "/subscriptions", json_body={"callbackUrl": url, "filter": {}})
    assert extra.status == 400 and "'filter'" in extra.json()["error"]["message"]


def test_retry_after_is_honoured_and_each_delivery_arrives_once(
    face: Face, cloud: LocalCloud, hook: Hook, api_env: dict[str, str]
) -> None:
    face.request(
        "POST", "/subscriptions", json_body={"callbackUrl": hook.url(), "minSeverity": "high"}
    )
    home, _ = tenants(cloud)
    hook.script = [(429, {"Retry-After": "3"})]
    ingest(home)
    first = deliver(_conn(api_env))
    assert first.requeued > 0 and first.delivered >= 0
    waiting = pending(_conn(api_env))
    assert waiting > 0
    assert deliver(_conn(api_env)).delivered == 0  # still inside the Retry-After
    deliver_until_idle(_conn(api_env), timeout=30)  # polls until the Retry-After has passed
    ids = hook.delivery_ids()
    assert len(ids) == len(set(ids)) == len(_high(cloud, home))


def test_the_circuit_breaker_stops_sending_to_a_failing_receiver(
    face: Face,
    cloud: LocalCloud,
    hook: Hook,
    api_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.push.messages import BREAKER_FAILURES

    setenv(monkeypatch, API_PUSH_RETRY_SECONDS="60")  # retries and the breaker wait a minute
    face.request("POST", "/subscriptions", json_body={"callbackUrl": hook.url()})
    home, _ = tenants(cloud)
    hook.default = 500
    ingest(home)
    # answers on new ground are stored (and announced) together, so one backfill may leave
    # fewer delivery messages than the breaker needs: updates add one message per answer
    for _ in range(10):
        if pending(_conn(api_env)) > BREAKER_FAILURES:
            break
        cloud.admin("POST", "activity", {"tenant": home, "update": 5})
        ingest(home)
    assert pending(_conn(api_env)) > BREAKER_FAILURES
    first = deliver(_conn(api_env))
    # each delivery message fails one round until the breaker opens; the rest wait untouched
    assert len(hook.requests) == BREAKER_FAILURES and first.deferred > 0
    health = face.get("/subscriptions").json()["value"][0]
    assert health["breaker"] == "open" and health["lastError"] == "HTTP 500"
    cloud.admin("POST", "activity", {"tenant": home, "create": 2, "update": 5})
    ingest(home)
    later = deliver(_conn(api_env))
    assert later.deferred > 0 and len(hook.requests) == BREAKER_FAILURES


def test_a_gone_receiver_is_dropped_after_its_grace_visible_and_redriven(
    face: Face,
    cloud: LocalCloud,
    hook: Hook,
    api_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from shared.cli import main

    created = face.request(
        "POST", "/subscriptions", json_body={"callbackUrl": hook.url(), "minSeverity": "high"}
    ).json()
    home, _ = tenants(cloud)
    hook.default = 404
    ingest(home)
    first = deliver(_conn(api_env))  # within the grace period: retried, not dropped
    assert first.dropped == [] and first.requeued > 0
    health = face.get("/subscriptions").json()["value"][0]
    assert health["status"] == "active" and health["receiverGoneSince"] is not None
    assert health["lastError"] == "HTTP 404"

    setenv(monkeypatch, API_PUSH_GONE_GRACE_MINUTES="0")
    caplog.set_level(logging.WARNING)
    time.sleep(1.2)
    dropped = deliver_until_idle(_conn(api_env), timeout=30)
    assert dropped.dropped == [created["id"]] and dropped.dead_lettered == len(_high(cloud, home))
    assert "dropped" in caplog.text and "receiver-sig-secret" not in caplog.text
    health = face.get("/subscriptions").json()["value"][0]
    assert health["status"] == "dropped" and "HTTP 404" in health["dropReason"]

    out = _Out()
    assert main(["subscriptions", "list", "--json"], out=out) == 1  # a dropped one: exit 1
    listed = json.loads(out.text)["subscriptions"]
    assert listed[0]["status"] == "dropped" and "receiver-sig-secret" not in out.text
    table = _Out()
    assert main(["subscriptions", "list"], out=table) == 1
    assert created["id"] in table.text and "dropped" in table.text and "HTTP 404" in table.text

    # the workflow is back: re-drive the dead letters (reviving the subscription)
    hook.default = 200
    out = _Out()
    assert main(["subscriptions", "redrive", "--json"], out=out) == 0
    assert json.loads(out.text)["requeued"] == len(_high(cloud, home))
    deliver_until_idle(_conn(api_env), timeout=30)
    assert sorted(d["incident"]["id"] for d in _delivered(hook)) == sorted(_high(cloud, home))
    assert face.get("/subscriptions").json()["value"][0]["status"] == "active"


def test_the_bridges_own_updates_are_not_delivered_back(
    face: Face,
    cloud: LocalCloud,
    hook: Hook,
    api_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    face.request(
        "POST", "/subscriptions", json_body={"callbackUrl": hook.url(), "minSeverity": "high"}
    )
    home, _ = tenants(cloud)
    ingest(home)
    deliver(_conn(api_env))
    target = sorted(_high(cloud, home))[0]
    patched = face.request(
        "PATCH", f"/incidents/{target}", params={"tenant": home}, json_body={"tags": ["triaged"]}
    )
    assert patched.status == 200
    before = len(hook.accepted)
    ingest(home)
    report = deliver(_conn(api_env))
    assert report.suppressed == 1 and len(hook.accepted) == before  # no loop

    setenv(monkeypatch, API_PUSH_DELIVER_OWN_UPDATES="true")
    face.request(
        "PATCH", f"/incidents/{target}", params={"tenant": home}, json_body={"tags": ["again"]}
    )
    ingest(home)
    deliver(_conn(api_env))
    assert [d["incident"]["tags"] for d in _delivered(hook)[before:]] == [["again"]]


def test_key_rotation_and_rows_stored_before_sealing(
    face: Face,
    cloud: LocalCloud,
    hook: Hook,
    api_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azure.data.tables import TableServiceClient

    from shared.cli import main
    from shared.storage.subscriptions import legacy_key

    table = TableServiceClient.from_connection_string(_conn(api_env)).get_table_client(
        "DefenderSubscriptions"
    )
    first = face.request(
        "POST", "/subscriptions", json_body={"callbackUrl": hook.url(), "minSeverity": "high"}
    )
    other = hook.url("/other?sig=receiver-sig-secret")
    assert (
        face.request(
            "POST", "/subscriptions", json_body={"callbackUrl": other, "minSeverity": "high"}
        ).status
        == 201
    )
    # a row as the previous version stored it: the URL in clear, found by an unkeyed hash
    legacy_url = hook.url("/legacy?sig=receiver-sig-secret")
    table.create_entity(
        {
            "PartitionKey": "subscription",
            "RowKey": "0" * 32,
            "CallbackUrl": legacy_url,
            "CallbackKey": legacy_key(legacy_url),
            "Filter": json.dumps(
                {"minSeverity": "high", "statuses": [], "tags": [], "tenants": None}
            ),
            "Created": "2026-11-01T00:00:00Z",
        }
    )
    new_key = "another-signing-key-0123456789abcdef-0123"
    setenv(monkeypatch, API_SIGNING_KEY=new_key, API_SIGNING_KEY_PREVIOUS=SIGNING_KEY)
    # the same URL under the new key is still the same subscription
    again = face.request(
        "POST", "/subscriptions", json_body={"callbackUrl": hook.url(), "minSeverity": "high"}
    )
    assert again.status == 200 and again.json()["id"] == first.json()["id"]
    out = _Out()
    assert main(["subscriptions", "rekey"], out=out) == 0
    assert out.text.startswith("2 subscription")  # the one not subscribed again, and the legacy row
    setenv(monkeypatch, API_SIGNING_KEY=new_key, API_SIGNING_KEY_PREVIOUS="")
    rows = {e["RowKey"]: dict(e) for e in table.query_entities("PartitionKey eq 'subscription'")}
    assert "receiver-sig-secret" not in json.dumps(rows, default=str)
    home, _ = tenants(cloud)
    ingest(home)
    deliver(_conn(api_env))
    assert len(hook.accepted) == 3 * len(_high(cloud, home))  # every row still opens


class _Out:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_the_local_receiver_is_announced_at_start(
    api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from shared import bootstrap

    caplog.set_level(logging.WARNING)
    setenv(monkeypatch)
    bootstrap.services()
    assert "API_PUSH_ALLOW_LOCAL_RECEIVER is on" in caplog.text
    caplog.clear()
    setenv(monkeypatch, API_PUSH_ALLOW_LOCAL_RECEIVER="false")
    bootstrap.services()
    assert "API_PUSH_ALLOW_LOCAL_RECEIVER" not in caplog.text


def test_subscriptions_add_reads_the_url_from_stdin_and_checks_it_like_the_api(
    hook: Hook,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    from shared.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO(hook.url() + "\n"))
    out = _Out()
    assert main(["subscriptions", "add", "-", "--min-severity", "high"], out=out) == 0
    made = json.loads(out.text)
    assert made["new"] is True and made["minSeverity"] == "high" and len(made["secret"]) == 64
    assert "receiver-sig-secret" not in out.text
    refused = "https://127.0.0.1/hook?sig=receiver-sig-secret"
    monkeypatch.setattr("sys.stdin", io.StringIO(refused))
    assert main(["subscriptions", "add", "-"], out=_Out()) == 2
    error = capsys.readouterr().err
    assert "IP address" in error and "receiver-sig-secret" not in error
