"""Application and partner context with the client secret, end to end: real msal and
azure-identity against the emulator. One token request per tenant however many calls; a rotated
and revoked secret is picked up on the next call with no restart."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest

from shared.bootstrap import Services
from tests.conftest import LocalCloud
from tests.credentials.conftest import MovableClock, rotate_secret, wire

pytestmark = pytest.mark.e2e


def _point_at(emu: object, monkeypatch: pytest.MonkeyPatch, **overrides: str) -> dict[str, str]:
    """Process env (managed identity endpoint) and app settings for a dedicated emulator."""
    from emulator.server import Emulator

    assert isinstance(emu, Emulator)
    env = {**emu.app_settings(), "DATA_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"}
    env.update(overrides)
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.setenv(name, env[name])
    return env


def _token_count(emu: object, tenant: str) -> int:
    stats = emu.stats.snapshot()  # type: ignore[attr-defined]
    return sum(
        row["count"]
        for row in stats["tokens"]
        if row["grant"] == "client_credentials" and row["tenant"] == tenant
    )


def _vault_reads(emu: object) -> int:
    stats = emu.stats.snapshot()  # type: ignore[attr-defined]
    return sum(
        row["count"]
        for row in stats["requests"]
        if row["endpoint"] == "keyvault.secret.get" and row["status"] == 200
    )


def test_hundred_calls_for_one_tenant_cause_one_token_request(
    cloud: LocalCloud, app_env: dict[str, str]
) -> None:
    """Every API call asks for a token; MSAL's per-tenant app answers 99 of 100 from cache."""
    svc = wire(app_env)
    home = app_env["DEFENDER_TENANT_ID"]
    token = svc.tokens.for_tenant(home, svc.settings.defender.api_scope)

    tokens = {token() for _ in range(100)}

    assert len(tokens) == 1
    assert cloud.token_count("client_credentials", home) == 1
    assert svc.tokens.apps_built == 1


@pytest.fixture(scope="module")
def twenty_tenants() -> Iterator[object]:
    """An emulator seeded with 20 tenants (home + 19 customers)."""
    from emulator.server import Emulator, EmulatorConfig

    with Emulator(
        EmulatorConfig(seed=20, customer_tenants=19, home_incidents=3, customer_incidents=1)
    ) as emu:
        yield emu


def test_twenty_tenants_one_token_request_each(
    twenty_tenants: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partner context: one MSAL app per tenant; 5 calls per tenant, one token request each."""
    env = _point_at(twenty_tenants, monkeypatch)
    tenants = env["INGEST_TENANTS"].split(",")
    assert len(tenants) == 20
    svc = wire(env)

    for tenant in tenants:
        for _ in range(5):
            svc.tokens.token(tenant, svc.settings.defender.api_scope)

    assert {t: _token_count(twenty_tenants, t) for t in tenants} == dict.fromkeys(tenants, 1)
    assert svc.tokens.apps_built == 20
    # the secret is shared by every tenant's app: read from Key Vault once
    assert _vault_reads(twenty_tenants) == 1


@pytest.fixture
def short_tokens() -> Iterator[object]:
    """An emulator whose tokens live 2 minutes: MSAL treats them as expired (< 5 min left), so
    every call goes to Entra with the current credential."""
    from emulator.server import Emulator, EmulatorConfig

    with Emulator(
        EmulatorConfig(
            seed=5, customer_tenants=1, home_incidents=2, customer_incidents=1, token_lifetime=120
        )
    ) as emu:
        yield emu


def _refusals(caplog: pytest.LogCaptureFixture) -> int:
    return sum("Entra refused" in r.getMessage() for r in caplog.records)


def test_rotated_and_revoked_secret_is_used_on_the_next_call(
    short_tokens: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Rotate in Key Vault and revoke the old secret in Entra: the next call is refused once,
    the secret is re-read, and the call succeeds (same process, no restart)."""
    caplog.set_level(logging.INFO)
    env = _point_at(short_tokens, monkeypatch)
    svc: Services = wire(env)
    home = env["DEFENDER_TENANT_ID"]
    scope = svc.settings.defender.api_scope
    svc.tokens.token(home, scope)
    assert _vault_reads(short_tokens) == 1

    new_secret = rotate_secret(short_tokens, revoke_old=True)
    svc.tokens.token(home, scope)  # refused with the old secret, re-read, retried

    assert _refusals(caplog) == 1
    assert _vault_reads(short_tokens) == 2
    svc.tokens.token(home, scope)  # and from then on the new secret is used directly
    assert _refusals(caplog) == 1
    assert new_secret not in caplog.text


def test_new_secret_version_is_picked_up_when_the_cache_lifetime_ends(
    short_tokens: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without any refusal: after CREDENTIAL_CACHE_MINUTES the vault is read again, the new
    version seen, and the MSAL app rebuilt with it, so revoking the old secret later is safe."""
    caplog.set_level(logging.INFO)
    env = _point_at(short_tokens, monkeypatch, CREDENTIAL_CACHE_MINUTES="5")
    clock = MovableClock()
    svc = wire(env, clock)
    home = env["DEFENDER_TENANT_ID"]
    scope = svc.settings.defender.api_scope
    svc.tokens.token(home, scope)

    rotate_secret(short_tokens, revoke_old=False)
    clock.advance(timedelta(minutes=4))
    svc.tokens.token(home, scope)
    assert _vault_reads(short_tokens) == 1  # still cached
    clock.advance(timedelta(minutes=2))
    svc.tokens.token(home, scope)  # cache expired: new version read, app rebuilt
    assert _vault_reads(short_tokens) == 2

    rotate_secret(short_tokens, revoke_old=True)  # a third secret; both older ones revoked
    clock.advance(timedelta(minutes=6))
    svc.tokens.token(home, scope)
    assert _refusals(caplog) == 0
    assert "MSAL app rebuilt" in caplog.text


def test_fresh_token_never_comes_from_the_cache(cloud: LocalCloud, app_env: dict[str, str]) -> None:
    """What the consent callback uses as proof: a cached token proves nothing once consent is
    revoked, so ``fresh_token`` asks Entra every time and keeps nothing."""
    from shared.core.errors import ConsentError

    svc = wire(app_env)
    customer = cloud.emulator.tenant_ids[1]
    scope = svc.settings.defender.api_scope
    cached = svc.tokens.token(customer, scope)
    before = cloud.token_count("client_credentials", customer)
    assert svc.tokens.fresh_token(customer, scope)
    assert cloud.token_count("client_credentials", customer) == before + 1
    cloud.admin("POST", "consent", {"tenant": customer, "consent": False})
    assert svc.tokens.token(customer, scope) == cached  # the cache still answers
    with pytest.raises(ConsentError) as refused:
        svc.tokens.fresh_token(customer, scope)
    assert customer in str(refused.value)
    assert svc.tokens.token(customer, scope) == cached  # and proof left the cache alone
