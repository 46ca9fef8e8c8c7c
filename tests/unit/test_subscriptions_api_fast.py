"""Push subscriptions through the HTTP API on a backend of in-memory fakes
(``SubscriptionAdmin``): one callback URL is one subscription whatever the repeats, and a caller
limited to some tenants can neither take over nor remove a subscription of other tenants (the
attack tests come first). ``tests/api/test_push*.py`` run the same routes on Azurite."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from shared.api.access import SUBSCRIBE, Principal
from shared.api.http import Headers, Request, Response
from shared.api.routes import handle, options_from
from shared.usecases.push.delivery import Callbacks, PushOptions
from testkit.api_backend import memory_backend
from testkit.fakes import MovableClock
from testkit.port_fakes import MemorySubscriptions

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
A = "aaaaaaaa-1111-1111-1111-111111111111"
B = "bbbbbbbb-1111-1111-1111-111111111111"
URL = "https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual?sig=SECRET"


class Api:
    def __init__(self) -> None:
        self.backend = memory_backend(
            clock=MovableClock(T0),
            registered=lambda: (A, B),
            callbacks=Callbacks(
                PushOptions(allowed=(".logic.azure.com",)), lambda host, port: ["20.50.2.10"]
            ),
        )
        self.store = self.backend.subscriptions
        assert isinstance(self.store, MemorySubscriptions)

    def call(self, method: str, path: str, body: object, *tenants: str) -> Response:
        caller = Principal(frozenset({SUBSCRIBE}), frozenset(tenants), f"{tenants[0]}/caller")
        request = Request(
            method,
            "/api" + path,
            headers=Headers({"Content-Type": "application/json"}),
            body=json.dumps(body).encode(),
        )
        return handle(
            request,
            lambda: self.backend,
            authenticate=lambda r: caller,
            **options_from(self.backend.settings),
        )


def test_a_caller_cannot_take_over_another_tenants_subscription_by_resubscribing() -> None:
    api = Api()
    first = api.call("POST", "/subscriptions", {"callbackUrl": URL, "tenants": [A]}, A)
    assert first.status == 201
    hijack = api.call("POST", "/subscriptions", {"callbackUrl": URL, "minSeverity": "low"}, B)
    assert hijack.status == 403
    [sub] = api.store.all()
    assert sub.tenants == (A,) and sub.filter.min_severity is None  # unchanged
    assert URL not in hijack.body.decode() and "SECRET" not in first.headers.get("Location", "")


def test_a_caller_cannot_remove_another_tenants_subscription() -> None:
    api = Api()
    created = json.loads(api.call("POST", "/subscriptions", {"callbackUrl": URL}, A).body)
    assert api.call("DELETE", f"/subscriptions/{created['id']}", None, B).status == 403
    assert api.call("DELETE", "/subscriptions", {"callbackUrl": URL}, B).status == 403
    assert len(api.store.all()) == 1
    assert api.call("DELETE", f"/subscriptions/{created['id']}", None, A).status == 204
    assert api.store.all() == []
    # already gone is success: Logic Apps repeats an unsubscribe it is not sure of
    assert api.call("DELETE", f"/subscriptions/{created['id']}", None, A).status == 204


def test_resubscribing_one_url_keeps_one_subscription_with_the_last_filter() -> None:
    api = Api()
    first = api.call("POST", "/subscriptions", {"callbackUrl": URL}, A)
    again = api.call("POST", "/subscriptions", {"callbackUrl": URL, "minSeverity": "high"}, A)
    assert (first.status, again.status) == (201, 200)
    assert first.headers.get("Location") == again.headers.get("Location")
    [sub] = api.store.all()
    assert sub.filter.min_severity == "high" and sub.tenants == (A,)  # the caller's tenants
    assert json.loads(again.body)["secret"] == api.store.secret(sub)
    listed = json.loads(api.call("GET", "/subscriptions", None, A).body)["value"]
    assert [s["id"] for s in listed] == [sub.id]
    assert json.loads(api.call("GET", "/subscriptions", None, B).body)["value"] == []
