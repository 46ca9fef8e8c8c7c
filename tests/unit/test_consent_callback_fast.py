"""The admin-consent callback (``GET /consent/callback``) on a backend of in-memory fakes: a
consent link's nonce is spent once (``ConsentNonces``), a replay is refused before any call to
Entra, and a consent that could not be recorded gives the nonce back. ``tests/api/test_consent.py``
runs the same route against the emulator's Entra and Azurite."""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest

from shared.api.consent import issue_state
from shared.api.http import Request, Response
from shared.api.routes import handle, options_from
from shared.core.errors import StorageError
from shared.core.settings import Settings
from testkit.api_backend import MINIMAL_SETTINGS, memory_backend
from testkit.fakes import MovableClock
from testkit.port_fakes import MemoryConsentNonces

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = "consent-fast-signing-key-0123456789abcdef"
CUSTOMER = "44444444-4444-4444-4444-444444444444"
ROLES = ("SecurityIncident.ReadWrite.All", "ThreatHunting.Read.All")


class Rig:
    def __init__(self) -> None:
        self.settings = Settings.from_env({**MINIMAL_SETTINGS, "API_SIGNING_KEY": KEY})
        self.clock = MovableClock(T0)
        self.nonces = MemoryConsentNonces()
        self.proofs: list[str] = []
        self.recorded: list[str] = []
        self.record_fails = False
        self.backend = memory_backend(
            settings=self.settings,
            clock=self.clock,
            record_consent=self._record,
            prove_consent=self._prove,
            consent_states=lambda: self.nonces,
        )

    def _prove(self, tenant: str) -> tuple[str, ...]:
        self.proofs.append(tenant)
        return ROLES

    def _record(self, tenant: str, when: datetime) -> bool:
        if self.record_fails:
            raise StorageError("the tenant registry could not be written")
        self.recorded.append(tenant)
        return True

    def link_state(self) -> str:
        return issue_state(KEY, CUSTOMER, self.clock(), timedelta(minutes=60))

    def callback(self, state: str, tenant: str = CUSTOMER) -> Response:
        query = {"tenant": [tenant], "admin_consent": ["True"], "state": [state]}
        request = Request("GET", "/api/consent/callback", query)
        return handle(request, lambda: self.backend, **options_from(self.settings))


def code_of(response: Response) -> str | None:
    body = json.loads(response.body)
    return body.get("error", {}).get("code") if isinstance(body, dict) else None


def test_a_consent_link_records_the_tenant_once_and_refuses_a_replay() -> None:
    rig = Rig()
    state = rig.link_state()
    assert rig.callback(state).status == 200
    assert rig.recorded == [CUSTOMER] and rig.proofs == [CUSTOMER]
    replay = rig.callback(state)
    assert (replay.status, code_of(replay)) == (400, "invalid_state")
    # refused from the spent nonce alone: no second token request to Entra, nothing recorded
    assert rig.proofs == [CUSTOMER] and rig.recorded == [CUSTOMER]


def test_a_consent_that_could_not_be_recorded_leaves_the_link_usable() -> None:
    rig = Rig()
    state = rig.link_state()
    rig.record_fails = True
    failed = rig.callback(state)
    assert failed.status == 503 and rig.recorded == []
    rig.record_fails = False
    assert rig.callback(state).status == 200 and rig.recorded == [CUSTOMER]


def test_a_state_for_another_tenant_or_expired_spends_nothing() -> None:
    rig = Rig()
    state = rig.link_state()
    other = rig.callback(state, tenant="55555555-5555-5555-5555-555555555555")
    assert (other.status, code_of(other)) == (400, "invalid_state")
    rig.clock.advance(timedelta(minutes=61))
    late = rig.callback(state)
    assert (late.status, code_of(late)) == (400, "invalid_state")
    assert rig.nonces.spent == {} and rig.proofs == []


@pytest.mark.parametrize("broken", ["used", "spend"])
def test_the_nonce_store_failing_is_a_clear_error_and_records_nothing(broken: str) -> None:
    rig = Rig()
    rig.nonces.fail(broken)
    response = rig.callback(rig.link_state())
    assert response.status == 503 and rig.recorded == []
    assert urllib.parse.quote(KEY) not in response.body.decode()
