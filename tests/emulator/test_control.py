"""The control plane driven in process, with no port bound: the admin API's operations as typed
methods, and the service handlers answering `Request` values over the live state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlencode

import jwt
import pytest
import requests

from emulator import faults
from emulator.config import EmulatorConfig
from emulator.control import ControlPlane
from emulator.http import Request
from emulator.ratelimit import Limit
from emulator.server import Emulator
from tests.emulator.conftest import admin

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LEGACY = "https://api.security.microsoft.com"


@pytest.fixture(scope="module")
def cloud() -> ControlPlane:
    """A small seeded control plane on a fixed clock (no server)."""
    plane = ControlPlane(
        EmulatorConfig(seed=3, home_incidents=20, customer_tenants=1, customer_incidents=5),
        clock=lambda: NOW,
    )
    plane.seed()
    return plane


@pytest.fixture
def clean(cloud: ControlPlane) -> Iterator[ControlPlane]:
    cloud.reset()
    yield cloud
    cloud.reset()


def _token_request(cloud: ControlPlane, tenant: str) -> Request:
    form = {
        "grant_type": "client_credentials",
        "client_id": cloud.client_id,
        "client_secret": cloud.client_secret,
        "scope": f"{LEGACY}/.default",
    }
    return Request(
        "POST",
        f"/{tenant}/oauth2/v2.0/token",
        {},
        {"content-type": "application/x-www-form-urlencoded"},
        urlencode(form).encode(),
        "https://emulator.test",
    )


def _app_token(cloud: ControlPlane, tenant: str) -> str:
    answer = cloud.entra_service().token(_token_request(cloud, tenant), tenant)
    assert answer.status == 200, answer.body
    return str(json.loads(answer.body)["access_token"])


def _legacy_list(cloud: ControlPlane, token: str) -> list[dict[str, object]]:
    request = Request(
        "GET",
        "/api/incidents",
        {},
        {"authorization": f"Bearer {token}"},
        b"",
        "https://emulator.test",
    )
    answer = cloud.defender_service().legacy_list(request)
    assert answer.status == 200, answer.body
    return list(json.loads(answer.body)["value"])


def test_the_state_exists_only_once_seeded() -> None:
    plane = ControlPlane(EmulatorConfig(home_incidents=1, customer_tenants=0))
    with pytest.raises(RuntimeError, match="not seeded"):
        plane.truth(plane.home_tenant_id, "legacy")
    plane.seed()
    assert len(plane.truth(plane.home_tenant_id, "legacy")) == 1


def test_the_services_answer_requests_over_the_live_state(clean: ControlPlane) -> None:
    tid = clean.home_tenant_id
    listed = _legacy_list(clean, _app_token(clean, tid))
    assert listed == clean.truth(tid, "legacy")  # same versions, same order
    result = clean.simulate_activity(tid, create=2, update=1)
    assert len(result.created) == 2 and len(result.updated) == 1
    again = {i["incidentId"] for i in _legacy_list(clean, _app_token(clean, tid))}
    assert set(result.created) <= again and len(again) == len(listed) + 2


def test_reset_undoes_every_change(clean: ControlPlane) -> None:
    tid, customer = clean.tenant_ids
    seeded = clean.truth(tid, "graph")
    secret = clean.client_secret
    clean.simulate_activity(tid, create=3)
    clean.configure_faults(faults.FaultConfig(rate=1.0, kinds=("500",)))
    clean.set_quota("incidents", (Limit(1, 60),))
    clean.set_behaviour(order="arbitrary")
    clean.set_consent(customer, consent=False)
    clean.set_token_lifetimes(lifetime=60)
    clean.rotate_client_secret(revoke_old=True, expire_old=False)
    clean.auto_approve_device_codes("analyst")
    assert clean.client_secret != secret and clean.auto_approvals()
    clean.reset()
    assert clean.truth(tid, "graph") == seeded
    assert clean.faults.config == faults.FaultConfig()
    assert clean.quotas()["incidents"] == [
        {"calls": 50, "seconds": 60.0},
        {"calls": 1500, "seconds": 3600.0},
    ]
    assert clean.behaviour.settings.order == "newest"
    assert clean.token_lifetimes()["lifetime"] == 3599
    assert clean.client_secret == secret and clean.auto_approvals() == []
    assert clean.set_consent(customer).consented  # granting again is a no-op after reset


def test_consent_is_what_the_token_endpoint_sees(clean: ControlPlane) -> None:
    customer = clean.tenant_ids[1]
    revoked = clean.set_consent(customer, consent=False)
    assert revoked.to_json() == {"tenant": customer, "consent": False, "roles": {}}
    answer = clean.entra_service().token(_token_request(clean, customer), customer)
    assert answer.status in (400, 401) and b"AADSTS7000229" in answer.body
    granted = clean.set_consent(customer, roles={"legacy": ["Incident.Read.All"]})
    assert granted.consented and granted.roles["legacy"] == ("Incident.Read.All",)
    claims = jwt.decode(_app_token(clean, customer), options={"verify_signature": False})
    assert claims["roles"] == ["Incident.Read.All"]


def test_unknown_things_are_key_errors_and_bad_values_value_errors(clean: ControlPlane) -> None:
    with pytest.raises(KeyError, match="unknown tenant"):
        clean.truth("no-such-tenant", "legacy")
    with pytest.raises(KeyError, match="unknown tenant"):
        clean.simulate_activity("no-such-tenant", create=1)
    with pytest.raises(KeyError):
        clean.set_consent("no-such-tenant")
    with pytest.raises(ValueError, match="'roles'"):
        clean.set_consent(clean.home_tenant_id, roles={"mail": ["Mail.Read"]})
    with pytest.raises(KeyError):
        clean.user("nobody")
    with pytest.raises(KeyError, match="no device code"):
        clean.decide_device_code("NOPE-NOPE", "analyst")
    with pytest.raises(ValueError, match="unknown lifetime"):
        clean.set_token_lifetimes(forever=1)
    with pytest.raises(ValueError, match="order"):
        clean.set_behaviour(order="random")


def test_tokens_minted_in_process(clean: ControlPlane) -> None:
    reader = clean.user("reader")
    issued = clean.issue_caller_token(reader, audience=LEGACY + "/")
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert issued.audience == LEGACY == claims["aud"] and issued.expires_on == claims["exp"]
    assert claims["upn"] == reader.upn
    assigned = clean.set_api_roles("reader", ["Incidents.Write"])
    assert assigned["roles"] == ["Incidents.Write"]
    principal = clean.api_principal("reader")
    assert clean.api_roles_of(principal) == ("Incidents.Write",)
    api = clean.issue_api_token(principal)
    claims = jwt.decode(api.access_token, options={"verify_signature": False})
    assert api.audience == clean.app_id_uri == claims["aud"]
    assert claims["roles"] == ["Incidents.Write"]
    listed = {a["name"]: a["roles"] for a in clean.api_assignments()["assignments"]}
    assert listed[reader.upn] == ["Incidents.Write"]


def test_the_admin_api_answers_what_the_control_plane_holds(
    fresh: Emulator, http: requests.Session
) -> None:
    tid = fresh.tenant_ids[1]
    fresh.simulate_activity(tid, create=1, merge=1)
    over_http = admin(http, fresh, "GET", f"truth/{tid}/incidents?api=graph")["value"]
    assert over_http == fresh.truth(tid, "graph")
    fresh.set_quota("hunting", ())
    assert admin(http, fresh, "GET", "quotas") == fresh.quotas()
    assert admin(http, fresh, "GET", "api") == fresh.api_assignments()
