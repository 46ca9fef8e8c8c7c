"""A Logic-Apps-like client against both faces, following the documented HTTP Webhook contract
(https://learn.microsoft.com/azure/connectors/connectors-native-webhook): it subscribes on every
save of the workflow (retrying on 408, 429 and 5xx), receives one run per delivery, and on
deletion unsubscribes with the callback URL in a body it sends without ``Content-Type``,
possibly twice. One callback is one subscription; one incident version is one delivery.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.conftest import Answer, Face, tenants, truth
from tests.api.pushkit import Hook, deliver_until_idle, ingest
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e

RANK = {"unknown": 0, "informational": 1, "low": 2, "medium": 3, "high": 4}
CALLBACK_PATH = (
    "/workflows/4f1c/triggers/When_an_incident_arrives/paths/invoke?api-version=2016-06-01"
    "&sp=%2Ftriggers%2FWhen_an_incident_arrives%2Frun&sv=1.0&sig=LogicAppsSasSignature0123"
)


class LogicAppsClient:
    """What a workflow with an HTTP Webhook trigger does to the API."""

    def __init__(self, face: Face, callback: str) -> None:
        self.face = face
        self.callback = callback

    def save(self, **inputs: Any) -> Answer:
        """The workflow is saved: subscribe, retrying as Logic Apps does."""
        for _ in range(4):
            answer = self.face.request(
                "POST", "/subscriptions", json_body={"callbackUrl": self.callback, **inputs}
            )
            if answer.status not in (408, 429) and answer.status < 500:
                return answer
        return answer

    def delete_trigger(self) -> Answer:
        """The trigger is deleted: unsubscribe, body without Content-Type."""
        body = json.dumps({"callbackUrl": self.callback}).encode()
        return self.face.request("DELETE", "/subscriptions", body=body)


@pytest.fixture
def hook(push_hook: Hook) -> Hook:
    return push_hook


def _matching(cloud: LocalCloud, tenant: str, minimum: str) -> set[tuple[str, str]]:
    return {
        (str(i["id"]), str(i["lastUpdateDateTime"]))
        for i in truth(cloud, tenant)
        if RANK.get(str(i.get("severity")), 0) >= RANK[minimum]
    }


def _versions(hook: Hook) -> list[tuple[str, str]]:
    """(incident id, delivery id) of every accepted delivery, in order."""
    return [
        (json.loads(body)["incident"]["id"], headers["X-Defender-Delivery"])
        for headers, body in hook.accepted
    ]


def test_a_logic_app_subscribes_on_every_save_gets_one_run_per_version_and_unsubscribes(
    face: Face, cloud: LocalCloud, hook: Hook, api_env: dict[str, str]
) -> None:
    conn = api_env["DATA_STORAGE_CONNECTION_STRING"]
    app = LogicAppsClient(face, hook.url(CALLBACK_PATH))
    first = app.save(minSeverity="high")
    assert first.status == 201, first.body
    # the workflow is edited and saved again: same subscription, same Location, new filter
    second = app.save(minSeverity="medium")
    assert second.status == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.header("Location") == first.header("Location")
    assert second.json()["minSeverity"] == "medium"
    assert len(face.get("/subscriptions").json()["value"]) == 1

    home, _ = tenants(cloud)
    ingest(home)
    deliver_until_idle(conn)
    seen = _matching(cloud, home, "medium")
    got = _versions(hook)
    assert len(got) == len(seen) and len({d for _, d in got}) == len(got)
    assert sorted(i for i, _ in got) == sorted(i for i, _ in seen)

    # the SOC works: one run per new version, none for versions already delivered
    cloud.admin("POST", "activity", {"tenant": home, "create": 3, "update": 30})
    ingest(home)
    deliver_until_idle(conn)
    now = _matching(cloud, home, "medium")
    fresh = _versions(hook)[len(got) :]
    assert sorted(i for i, _ in fresh) == sorted(i for i, _ in now - seen)
    assert len({d for _, d in _versions(hook)}) == len(hook.accepted)  # no delivery id twice

    # the trigger is deleted: unsubscribe without Content-Type; Logic Apps may repeat it
    assert app.delete_trigger().json() == {"deleted": 1}
    assert app.delete_trigger().json() == {"deleted": 0}
    location = (first.header("Location") or "").removeprefix(face.base + "/api")
    assert face.request("DELETE", location).status == 204  # already gone: still success
    assert face.get("/subscriptions").json()["value"] == []
    before = len(hook.requests)
    cloud.admin("POST", "activity", {"tenant": home, "create": 2, "update": 10})
    ingest(home)
    deliver_until_idle(conn)
    assert len(hook.requests) == before
