"""A receiver that never answers, then recovers; a worker that dies mid-message.

Ingestion does not wait for receivers at all (it only records changes), so a receiver that
accepts connections and never answers sees nothing during ingestion; the worker's rounds against
it time out, back off and open the subscription's breaker; once the receiver recovers, every
matching incident is delivered exactly once per delivery id (or dead-lettered, never both, never
neither). A worker that dies after sending part of a message loses nothing: the message comes
back and the repeats carry the same delivery ids. (How long ingestion takes with and without a
dead receiver is a benchmark, ``bench/push.py``, not a timed test.)
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.api.conftest import Face, setenv, tenants, truth
from tests.api.pushkit import (
    Hook,
    deliver,
    deliver_until_idle,
    ingest,
    pending,
    push_queue,
)
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e


@pytest.fixture
def hook(push_hook: Hook, monkeypatch: pytest.MonkeyPatch) -> Hook:
    setenv(monkeypatch, API_PUSH_TIMEOUT_SECONDS="1", API_PUSH_MAX_ATTEMPTS="30")
    return push_hook


def _expected(cloud: LocalCloud, sub: str, tenant: str) -> set[str]:
    from shared.push.messages import delivery_id

    return {
        delivery_id(sub, tenant, str(i["id"]), str(i["lastUpdateDateTime"]))
        for i in truth(cloud, tenant)
        if i.get("severity") == "high"
    }


def _dead_letters(conn: str) -> set[str]:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(conn).get_container_client(
        "defender-push-deadletter"
    )
    try:
        return {
            json.loads(container.download_blob(b.name).readall())["delivery"]
            for b in container.list_blobs()
        }
    except ResourceNotFoundError:
        return set()


def test_a_receiver_that_never_answers_then_recovers_gets_each_delivery_once(
    face: Face, cloud: LocalCloud, hook: Hook, api_env: dict[str, str]
) -> None:
    conn = api_env["DATA_STORAGE_CONNECTION_STRING"]
    sub = face.request(
        "POST", "/subscriptions", json_body={"callbackUrl": hook.url(), "minSeverity": "high"}
    ).json()["id"]
    hook.default = "hang"
    home, _ = tenants(cloud)
    result = ingest(home)
    assert result.incidents > 0 and hook.requests == []  # ingestion never waits on a receiver

    down = deliver(conn)  # each message's first delivery times out; the rest is put back
    assert down.delivered == 0 and down.requeued > 0
    time.sleep(1.5)
    deliver(conn)
    health = face.get("/subscriptions").json()["value"][0]
    assert health["lastError"] == "timeout" and health["consecutiveFailures"] >= 1

    hook.default = 200
    hook.release.set()  # the hung requests end without an answer
    deliver_until_idle(conn, timeout=120)
    accepted = hook.delivery_ids()
    dead = _dead_letters(conn)
    expected = _expected(cloud, sub, home)
    assert len(accepted) == len(set(accepted))  # exactly once per delivery id
    assert set(accepted) | dead == expected and not set(accepted) & dead
    health = face.get("/subscriptions").json()["value"][0]
    assert health["breaker"] == "closed" and health["lastError"] is None


def test_a_worker_dying_mid_message_loses_nothing_and_repeats_carry_the_same_id(
    face: Face, cloud: LocalCloud, hook: Hook, api_env: dict[str, str]
) -> None:
    from shared import bootstrap

    conn = api_env["DATA_STORAGE_CONNECTION_STRING"]
    sub = face.request(
        "POST", "/subscriptions", json_body={"callbackUrl": hook.url(), "minSeverity": "high"}
    ).json()["id"]
    home, _ = tenants(cloud)
    ingest(home)
    queue = push_queue(conn)
    svc = bootstrap.services()
    worker = svc.push_worker()
    # the TLS context (a CA bundle loaded from disk) is built once per process, not per message
    assert svc.push_worker()._sender._context is worker._sender._context
    chosen = None
    while chosen is None:  # fan every change out, then pick a delivery of 3 or more
        for message in queue.receive_messages(max_messages=32, visibility_timeout=60):
            data = json.loads(message.content)
            if data["kind"] == "changes":
                worker.handle(message.content)
                queue.delete_message(message)
            elif chosen is None and len(data["items"]) >= 3:
                chosen = message
            else:
                queue.update_message(message, visibility_timeout=0)
    queue.update_message(chosen, visibility_timeout=0)

    connects = [0]

    def dying(address: tuple[str, int], timeout: float) -> socket.socket:
        connects[0] += 1
        if connects[0] > 2:
            raise SystemExit("the instance died")  # not an OSError: nothing catches it
        return socket.create_connection(address, timeout=timeout)

    svc.push_connect = dying
    message = None
    while message is None:
        for received in queue.receive_messages(max_messages=32, visibility_timeout=2):
            if received.id == chosen.id:
                message = received
            else:
                queue.update_message(received, visibility_timeout=0)
    with pytest.raises(SystemExit):
        svc.push_worker().handle(message.content)  # died after two deliveries, not completed
    assert len(hook.accepted) == 2
    svc.push_connect = None
    assert pending(conn) > 0  # hidden until its visibility timeout, then delivered again
    deliver_until_idle(conn, timeout=60)
    accepted = hook.delivery_ids()
    assert set(accepted) == _expected(cloud, sub, home)  # nothing lost
    repeats = [d for d in set(accepted) if accepted.count(d) > 1]
    assert sorted(repeats) == sorted(set(accepted[:2]))  # only the two sent before the death
