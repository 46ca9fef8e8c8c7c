"""Partner onboarding: ``consent-url`` issues a signed, expiring, single-use state bound to one
tenant; ``GET /consent/callback`` (anonymous) verifies it, proves the consent by getting an app
token in that tenant, spends the state's nonce atomically and records the consent in the
registry, never re-enabling a paused tenant. Attacks first: replay, another tenant, expiry,
no consent, ``common``/``organizations``/``consumers``, races."""

from __future__ import annotations

import io
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.api.consent import StateError, issue_state, verify_state
from tests.api.conftest import SIGNING_KEY, Answer, Face, setenv, tenants
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e
NOW = datetime(2026, 12, 1, tzinfo=UTC)
#: the Microsoft-account tenant ("consumers"): no organisation's admin consents there
CONSUMERS_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"


def test_state_is_signed_tenant_bound_single_nonce_and_expiring() -> None:
    tenant = str(uuid.uuid4())
    state = issue_state(SIGNING_KEY, tenant, NOW, timedelta(minutes=5))
    claims = verify_state(SIGNING_KEY, state, tenant, NOW + timedelta(minutes=4))
    assert claims.tenant == tenant and len(claims.nonce) == 32
    assert claims.expires == NOW + timedelta(minutes=5)
    other = verify_state(
        SIGNING_KEY, issue_state(SIGNING_KEY, tenant, NOW, timedelta(minutes=5)), tenant, NOW
    )
    assert other.nonce != claims.nonce
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
    with pytest.raises(StateError):
        verify_state(SIGNING_KEY, "x" * 5000, tenant, NOW)


@pytest.mark.parametrize("bad", ["common", "organizations", "consumers", "not-a-guid"])
def test_states_are_never_issued_for_multi_tenant_names(bad: str) -> None:
    with pytest.raises(ValueError, match="tenant"):
        issue_state(SIGNING_KEY, bad, NOW, timedelta(minutes=5))


def test_a_state_issued_for_organizations_is_refused_for_any_tenant() -> None:
    """A state of the old format naming ``organizations`` (any tenant) proves nothing."""
    import base64
    import hashlib
    import hmac
    import json

    key = hmac.new(SIGNING_KEY.encode(), b"consent-state", hashlib.sha256).digest()
    payload = json.dumps(
        {"t": "organizations", "e": int((NOW + timedelta(hours=1)).timestamp()), "n": "0" * 32}
    ).encode()
    mac = hmac.new(key, payload, hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    with pytest.raises(StateError):
        verify_state(SIGNING_KEY, f"{b64(payload)}.{b64(mac)}", str(uuid.uuid4()), NOW)


def _consent_url(tenant: str) -> str:
    from shared.cli import main

    out = io.StringIO()
    assert main(["consent-url", "--tenant", tenant], out=out) == 0
    return out.getvalue().strip()


def _state_for(tenant: str) -> str:
    link = urlsplit(_consent_url(tenant))
    return {k: v[0] for k, v in parse_qs(link.query).items()}["state"]


def _callback(face: Face, tenant: str, state: str) -> Answer:
    return face.get(
        "/consent/callback", params={"tenant": tenant, "admin_consent": "True", "state": state}
    )


def _error(answer: Answer, status: int) -> dict[str, str]:
    assert answer.status == status, (answer.status, answer.body[:400])
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return dict(body["error"])


def _operator(*args: str) -> None:
    """What an operator types: ``python -m shared tenants ...``."""
    from shared.cli import main

    assert main(["tenants", *args], out=io.StringIO()) == 0


def _entry(tenant: str) -> Any:
    from shared import bootstrap

    return bootstrap.services().tenant_registry().get(tenant)


@pytest.fixture
def newcomer(face: Face, cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> str:
    """A tenant the emulator's Entra knows (the app is consented there) that the app does not
    serve yet: only the home tenant is configured."""
    home, customer = tenants(cloud)
    setenv(monkeypatch, API_PUBLIC_URL=face.base, INGEST_TENANTS=home)
    return customer


def test_consent_link_to_callback_proves_and_records_the_tenant(
    face: Face, cloud: LocalCloud, newcomer: str
) -> None:
    from shared import bootstrap

    link = urlsplit(_consent_url(newcomer))
    params = {k: v[0] for k, v in parse_qs(link.query).items()}
    assert params["redirect_uri"] == f"{face.base}/api/consent/callback"
    assert newcomer not in bootstrap.services().enabled_tenants()
    tokens_before = cloud.token_count("client_credentials", newcomer)
    answer = _callback(face, newcomer, params["state"])
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["tenant"] == newcomer and body["consented"] is True and body["enabled"] is True
    # proven by a token asked of Entra in that tenant now (not one from a cache)
    assert cloud.token_count("client_credentials", newcomer) == tokens_before + 1
    entry = _entry(newcomer)
    assert entry is not None and entry.enabled
    assert newcomer in bootstrap.services().enabled_tenants()


def test_replaying_the_same_url_is_refused_with_no_side_effect(
    face: Face, cloud: LocalCloud, newcomer: str
) -> None:
    state = _state_for(newcomer)
    assert _callback(face, newcomer, state).status == 200
    # the operator pauses the tenant; a replay of the same redirect must not touch it
    _operator("pause", newcomer)
    tokens = cloud.token_count("client_credentials", newcomer)
    for _ in range(2):
        error = _error(_callback(face, newcomer, state), 400)
        assert error["code"] == "invalid_state" and "already used" in error["message"]
    assert not _entry(newcomer).enabled
    assert cloud.token_count("client_credentials", newcomer) == tokens  # not even a token


def test_concurrent_callbacks_with_one_state_record_once(face: Face, newcomer: str) -> None:
    state = _state_for(newcomer)
    answers: list[int] = []
    gate = threading.Barrier(4)

    def call() -> None:
        gate.wait()
        answers.append(_callback(face, newcomer, state).status)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers) == [200, 400, 400, 400]


def test_a_state_for_one_tenant_does_not_onboard_another(
    face: Face, cloud: LocalCloud, newcomer: str
) -> None:
    other = cloud.emulator.tenant_ids[2]
    state = _state_for(newcomer)
    error = _error(_callback(face, other, state), 400)
    assert error["code"] == "invalid_state"
    assert _entry(other) is None
    # the state was not spent by the refused attempt: its own tenant still works
    assert _callback(face, newcomer, state).status == 200


def test_an_expired_state_is_refused(face: Face, newcomer: str) -> None:
    state = issue_state(
        SIGNING_KEY, newcomer, datetime.now(UTC) - timedelta(hours=2), timedelta(hours=1)
    )
    error = _error(_callback(face, newcomer, state), 400)
    assert error["code"] == "invalid_state" and "expired" in error["message"]
    assert _entry(newcomer) is None


def test_without_consent_nothing_is_recorded_and_the_link_stays_usable(
    face: Face, cloud: LocalCloud, newcomer: str
) -> None:
    state = _state_for(newcomer)
    cloud.admin("POST", "consent", {"tenant": newcomer, "consent": False})
    error = _error(_callback(face, newcomer, state), 400)
    assert error["code"] == "consent_not_proven"
    assert newcomer in error["message"] and "the same link" in error["message"]
    assert _entry(newcomer) is None
    # Entra needs a moment after the admin's consent: the same link works once it has it
    cloud.admin("POST", "consent", {"tenant": newcomer, "consent": True})
    assert _callback(face, newcomer, state).status == 200
    assert _entry(newcomer).enabled


def test_a_paused_tenant_is_never_re_enabled_by_a_callback(face: Face, newcomer: str) -> None:
    from shared import bootstrap

    _operator("add", newcomer, "--name", "Paused customer", "--paused")
    answer = _callback(face, newcomer, _state_for(newcomer))
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["consented"] is True and body["enabled"] is False
    assert "paused" in body["message"] and "tenants resume" in body["message"]
    entry = _entry(newcomer)
    assert entry is not None and not entry.enabled and entry.display_name == "Paused customer"
    assert newcomer not in bootstrap.services().enabled_tenants()


@pytest.mark.parametrize(
    "bad",
    [
        "common",
        "organizations",
        "consumers",
        CONSUMERS_TENANT,
        "00000000-0000-0000-0000-000000000000",
        "contoso.onmicrosoft.com",
        "x" * 5000,
    ],
)
def test_multi_tenant_and_non_guid_tenants_are_refused(face: Face, newcomer: str, bad: str) -> None:
    state = _state_for(newcomer)
    error = _error(_callback(face, bad, state), 400)
    assert error["code"] == "invalid_parameter"
    assert "x" * 100 not in error["message"]


@pytest.mark.parametrize(
    "bad", ["common", "organizations", "consumers", CONSUMERS_TENANT, "not-a-guid"]
)
def test_consent_url_refuses_multi_tenant_names(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    import contextlib

    from shared.cli import main

    monkeypatch.setenv("API_SIGNING_KEY", SIGNING_KEY)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["consent-url", "--tenant", bad], out=out)
    assert code != 0 and out.getvalue() == ""
    assert "tenant" in err.getvalue() and "Traceback" not in err.getvalue()


def test_declines_and_missing_parts_are_json_400(face: Face, newcomer: str) -> None:
    declined = face.get(
        "/consent/callback",
        params={
            "error": "access_denied",
            "error_description": "AADSTS65004: declined\nmore <script>",
        },
    )
    error = _error(declined, 400)
    assert error["code"] == "consent_declined" and "<script>" not in error["message"]
    assert _error(face.get("/consent/callback", params={"admin_consent": "True"}), 400)
    no_state = face.get("/consent/callback", params={"tenant": newcomer, "admin_consent": "True"})
    assert _error(no_state, 400)["code"] == "invalid_state"
    not_granted = face.get(
        "/consent/callback",
        params={"tenant": newcomer, "admin_consent": "False", "state": _state_for(newcomer)},
    )
    assert _error(not_granted, 400)["code"] == "consent_declined"
    assert _entry(newcomer) is None


def test_callback_without_a_signing_key_refuses(
    face: Face, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_SIGNING_KEY")
    setenv(monkeypatch)
    answer = face.get("/consent/callback", params={"tenant": str(uuid.uuid4())})
    assert answer.status == 503
    assert "state" not in _consent_url(str(uuid.uuid4()))


def test_a_consent_granting_none_of_the_roles_records_nothing(
    face: Face, cloud: LocalCloud, newcomer: str
) -> None:
    """The service principal is there (a token is had) but the admin granted no application
    permission: the token carries no ``roles`` claim. Nothing can be read with it, so the
    tenant is not recorded as consented; the answer names the roles to grant, and the same
    link works once they are granted."""
    state = _state_for(newcomer)
    cloud.admin(
        "POST",
        "consent",
        {"tenant": newcomer, "consent": True, "roles": {"graph": [], "legacy": []}},
    )
    error = _error(_callback(face, newcomer, state), 400)
    assert error["code"] == "consent_incomplete"
    assert newcomer in error["message"] and "SecurityIncident.Read.All" in error["message"]
    assert "the same link" in error["message"]
    assert _entry(newcomer) is None
    # the admin grants the permissions: the emulator's default roles (revoked, then granted)
    cloud.admin("POST", "consent", {"tenant": newcomer, "consent": False})
    cloud.admin("POST", "consent", {"tenant": newcomer, "consent": True})
    answer = _callback(face, newcomer, state)
    assert answer.status == 200, answer.body
    assert "missingRoles" not in answer.json()
    assert _entry(newcomer).enabled


def test_a_consent_granting_some_of_the_roles_is_recorded_and_says_what_lacks(
    face: Face, cloud: LocalCloud, newcomer: str
) -> None:
    """Reading works, updating or hunting does not: the tenant is served, and the answer
    names the missing roles (the stricter rule above is only for a consent granting none)."""
    state = _state_for(newcomer)
    cloud.admin(
        "POST",
        "consent",
        {"tenant": newcomer, "consent": True, "roles": {"graph": ["SecurityIncident.Read.All"]}},
    )
    answer = _callback(face, newcomer, state)
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["consented"] is True and body["enabled"] is True
    assert "SecurityIncident.ReadWrite.All" in body["missingRoles"]
    assert _entry(newcomer).enabled


def _tick(tenant: str) -> tuple[bool, str | None]:
    """One inline fan-out tick: whether ``tenant`` was ingested (ok), and why it was skipped."""
    from shared import bootstrap

    report = bootstrap.services().fanout().tick()
    assert report.summary is not None
    ran = [r for r in report.summary.tenants if r.tenant == tenant]
    return bool(ran) and ran[0].ok, report.skipped.get(tenant)


def test_a_consent_callback_releases_a_consent_hold(
    face: Face, cloud: LocalCloud, newcomer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant held for lack of consent is ingested again after a successful callback, and
    not before (consent back in Entra alone waits for the hold)."""
    setenv(monkeypatch, INGEST_FANOUT="inline")
    _operator("add", newcomer)
    cloud.admin("POST", "consent", {"tenant": newcomer, "consent": False})
    ingested, _ = _tick(newcomer)
    assert not ingested
    _, skipped = _tick(newcomer)
    assert skipped == "held (consent)"
    cloud.admin("POST", "consent", {"tenant": newcomer, "consent": True})
    _, skipped = _tick(newcomer)
    assert skipped == "held (consent)"  # not before the callback
    assert cloud.request_count("graph.incidents.list", newcomer) == 0
    assert _callback(face, newcomer, _state_for(newcomer)).status == 200
    ingested, skipped = _tick(newcomer)
    assert ingested and skipped is None
    assert cloud.request_count("graph.incidents.list", newcomer) > 0
