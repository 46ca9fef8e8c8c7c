"""Partner onboarding: ``consent-url`` issues a signed, expiring state; ``GET /consent/callback``
(anonymous) verifies it and records the tenant and its consent in the registry."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.api.consent import StateError, issue_state, verify_state
from tests.api.conftest import SIGNING_KEY, Face, setenv

pytestmark = pytest.mark.e2e
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_state_is_signed_tenant_bound_and_expiring() -> None:
    tenant = str(uuid.uuid4())
    state = issue_state(SIGNING_KEY, tenant, NOW, timedelta(minutes=5))
    verify_state(SIGNING_KEY, state, tenant, NOW + timedelta(minutes=4))
    with pytest.raises(StateError, match="expired"):
        verify_state(SIGNING_KEY, state, tenant, NOW + timedelta(minutes=5))
    with pytest.raises(StateError, match="another tenant"):
        verify_state(SIGNING_KEY, state, str(uuid.uuid4()), NOW)
    with pytest.raises(StateError, match="not issued"):
        verify_state("another-key-" + SIGNING_KEY, state, tenant, NOW)
    head, _, tail = state.partition(".")
    with pytest.raises(StateError):
        verify_state(SIGNING_KEY, head + "x." + tail, tenant, NOW)
    with pytest.raises(StateError):
        verify_state(SIGNING_KEY, "%%%", tenant, NOW)


def _consent_url(tenant: str) -> str:
    from shared.cli import main

    out = io.StringIO()
    assert main(["consent-url", "--tenant", tenant], out=out) == 0
    return out.getvalue().strip()


def test_consent_link_to_callback_records_the_tenant(
    face: Face, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared import bootstrap

    setenv(monkeypatch, API_PUBLIC_URL=face.base)
    newcomer = str(uuid.uuid4())
    link = urlsplit(_consent_url(newcomer))
    params = {k: v[0] for k, v in parse_qs(link.query).items()}
    assert params["redirect_uri"] == f"{face.base}/api/consent/callback"
    assert "state" in params
    # Entra redirects the admin back with the tenant, admin_consent and our state
    answer = face.get(
        "/consent/callback",
        params={"tenant": newcomer, "admin_consent": "True", "state": params["state"]},
    )
    assert answer.status == 200, answer.body
    assert answer.json()["tenant"] == newcomer
    entries = {e.tenant_id: e for e in bootstrap.services().tenant_registry().entries()}
    assert entries[newcomer].enabled
    assert newcomer in bootstrap.services().enabled_tenants()

    other = str(uuid.uuid4())
    replayed = face.get(
        "/consent/callback",
        params={"tenant": other, "admin_consent": "True", "state": params["state"]},
    )
    assert replayed.status == 400 and replayed.json()["error"]["code"] == "invalid_state"
    assert other not in bootstrap.services().enabled_tenants()
    forged = face.get(
        "/consent/callback", params={"tenant": other, "admin_consent": "True", "state": "a.b"}
    )
    assert forged.status == 400
    declined = face.get(
        "/consent/callback",
        params={"error": "access_denied", "error_description": "AADSTS65004: declined\nmore"},
    )
    assert declined.status == 400 and declined.json()["error"]["code"] == "consent_declined"
    assert face.get("/consent/callback", params={"admin_consent": "True"}).status == 400


def test_callback_without_a_signing_key_refuses(
    face: Face, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_SIGNING_KEY")
    setenv(monkeypatch)
    answer = face.get("/consent/callback", params={"tenant": str(uuid.uuid4())})
    assert answer.status == 503
    assert "state" not in _consent_url(str(uuid.uuid4()))
