"""A Logic-Apps-like client for the tests: what a workflow's HTTP action does to the API.

It follows Microsoft's documented contract for the HTTP action
(https://learn.microsoft.com/azure/connectors/connectors-native-http#asynchronous-request-response-behavior,
https://learn.microsoft.com/azure/logic-apps/logic-apps-create-api-app#perform-long-running-tasks-with-the-polling-action-pattern):

- the request carries the action's ``authentication`` (here the workflow's managed identity:
  a fresh token for the API's audience from the managed-identity endpoint, as Logic Apps gets
  one); its custom headers go with the first request only;
- a ``202 Accepted`` with ``Location`` is polled with ``GET`` on that URL after ``Retry-After``
  seconds (20 when absent) until an answer that is not 202, which becomes the action's result;
  polls re-send only the action's authentication (``reauthenticate_polls=False`` models a
  caller that re-sends nothing, such as a connector whose platform follows the link itself);
- multitenant Logic Apps gives up on an outbound request after 120 seconds and its retry policy
  sends it again (https://learn.microsoft.com/azure/logic-apps/logic-apps-limits-and-config),
  so the first answer must come sooner: ``run`` fails the test otherwise.

Under ``serve`` the authenticated requests also carry serve's run key: serve's local guard asks
for it on the routes that need a caller's token, where the Functions host in Azure asks for
nothing (the routes are anonymous at the host with ``API_AUTH_MODE=entra``). It stands for
nothing a Logic App sends. Under Functions no key is sent at all, and polls that re-send no
authentication send no key under ``serve`` either.

The webhook half of a workflow (the HTTP Webhook trigger subscribing on every save and
unsubscribing with a body it may send without ``Content-Type``) is the push suite's
``LogicAppsClient`` (``tests/api/test_push_logicapps.py`` on the push branch); it uses the same
``Authentication`` seam as the action here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from tests.api.conftest import Answer, Face
from tests.conftest import LocalCloud

#: what multitenant Logic Apps waits for an outbound answer before it gives up and retries
OUTBOUND_TIMEOUT = 120.0
#: the poll interval Logic Apps uses when a 202 names none
DEFAULT_RETRY_AFTER = 20


class Authentication(Protocol):
    """An action's ``authentication`` setting: the headers it adds to each request."""

    def headers(self) -> dict[str, str]: ...


@dataclass
class ManagedIdentity:
    """``"authentication": {"type": "ManagedServiceIdentity", "identity": <id>, "audience":
    <the API>}``: a token from the managed-identity endpoint for every request."""

    cloud: LocalCloud
    client_id: str
    audience: str

    def headers(self) -> dict[str, str]:
        emu = self.cloud.emulator
        answer = requests.get(
            emu.mi_url,
            params={
                "api-version": "2019-08-01",
                "resource": self.audience,
                "client_id": self.client_id,
            },
            headers={"X-IDENTITY-HEADER": emu.identity_header},
            timeout=10,
        )
        answer.raise_for_status()
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def push_body(tenant: str, incident: Any) -> dict[str, Any]:
    """What push POSTs to a subscription's callback for ``incident`` (an ``Incident``): the
    body a workflow's HTTP Webhook trigger receives. The one seam to the push subsystem in
    these tests (the connector's trigger outputs and the sample's loop test read it)."""
    from shared.usecases.incidents import incident_row
    from shared.usecases.push.delivery import body_of

    # the outbox records ``incident_row`` of each version; the worker POSTs ``body_of`` it
    body = body_of("updated", tenant, incident_row(incident), "0" * 32)
    return dict(json.loads(body))


def logic_app_identity(cloud: LocalCloud) -> ManagedIdentity:
    """The emulator's Logic App identity (``id-logic-app``), for the API's audience."""
    emu = cloud.emulator
    return ManagedIdentity(cloud, emu.logic_app_identity_client_id, emu.app_id_uri)


@dataclass
class HttpAction:
    """One HTTP action of a workflow with the asynchronous pattern on (the default)."""

    face: Face
    authentication: Authentication
    #: False: polls carry no authentication at all (only the Location)
    reauthenticate_polls: bool = True
    sleep: Callable[[float], None] = time.sleep
    #: what the action saw: every answer, the first one included
    answers: list[Answer] = field(default_factory=list)

    def run(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        between_polls: Callable[[], None] | None = None,
        limit: float = 120.0,
    ) -> Answer:
        """Send the request and follow the 202s; the final answer. ``between_polls`` runs
        while the action waits (the queue workers of the Functions host)."""
        started = time.monotonic()
        answer = self.face.request(
            method,
            path,
            params=params,
            headers={**(headers or {}), **self.authentication.headers()},
            json_body=json_body,
            token=None,
            key=self._key(),
        )
        assert time.monotonic() - started < OUTBOUND_TIMEOUT, "Logic Apps would have re-sent it"
        self.answers.append(answer)
        deadline = started + limit
        while answer.status == 202:
            location = answer.header("Location")
            assert location, "a 202 without Location cannot be followed"
            parts = urlsplit(location)
            assert f"{parts.scheme}://{parts.netloc}" == self.face.base, location
            retry = answer.header("Retry-After")
            wait = int(retry) if retry is not None else DEFAULT_RETRY_AFTER
            if between_polls is not None:
                between_polls()
            self.sleep(wait)
            assert time.monotonic() < deadline, "the operation never finished"
            polled = self.authentication.headers() if self.reauthenticate_polls else {}
            key = self._key() if self.reauthenticate_polls else None
            answer = self.face.follow(location, headers=polled, token=None, key=key)
            self.answers.append(answer)
        return answer

    def _key(self) -> str | None:
        return self.face.key if self.face.name == "serve" else None
