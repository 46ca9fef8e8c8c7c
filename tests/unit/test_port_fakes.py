"""The fakes whose real adapters talk to the network (the webhook sender, the app's tokens and
credential, Defender's on-demand calls) checked against their adapters' documented contract, and
millisecond tests of the use cases that take them: the credential check
(``shared.usecases.credentials``) and the on-demand incident calls (``shared.usecases.incidents``).
The storage fakes are checked against the real adapters in ``tests/storage/test_fakes_contract.py``.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from shared.core.errors import AuthError, ConfigError, ConsentError, NotFoundError
from shared.credentials.claims import decode_claims
from shared.credentials.values import admin_consent_url
from shared.defender.model import normalize
from shared.defender.operations import MAX_QUERY
from shared.defender.queries import IncidentQuery
from shared.push.keys import PushKeys
from shared.push.messages import Answer
from shared.push.target import CallbackTarget
from shared.storage.values import TenantEntry
from shared.usecases import incidents
from shared.usecases.credentials import Step, check_credential, check_tenants
from testkit.fakes import MovableClock, graph_incident
from testkit.port_fakes import (
    FakeAppTokens,
    FakeCredential,
    MemoryDefender,
    ScriptedSender,
    _conformance,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
A, B, C = (f"{n}{n}{n}{n}{n}{n}{n}{n}-1111-1111-1111-111111111111" for n in "abc")
SCOPE = "https://graph.microsoft.com/.default"
ALL_ROLES = ("SecurityIncident.ReadWrite.All", "ThreatHunting.Read.All")


def test_every_fake_satisfies_its_port() -> None:
    # mypy proves the types (pyproject lists testkit/port_fakes.py); this keeps the proof
    # buildable: every fake constructs with the arguments the proof gives it
    assert len(_conformance(PushKeys("k"), MovableClock())) == 20


# ---------------------------------------------------------------------------- network fakes


def test_the_sender_fake_answers_its_script_in_order_and_never_raises() -> None:
    sender = ScriptedSender(script=[Answer(503, retry_after=5), Answer(None, error="timeout")])
    target = CallbackTarget("example.com", 443, "/hook?sig=x")
    address = ipaddress.ip_address("20.1.2.3")
    answers = [sender.post(target, address, b"{}", {}, cap=1.0) for _ in range(3)]
    assert answers == [Answer(503, retry_after=5), Answer(None, error="timeout"), Answer(200)]
    assert [p.body for p in sender.posts] == [b"{}"] * 3


def test_the_token_fake_refuses_an_unconsented_tenant_with_the_consent_url() -> None:
    tokens = FakeAppTokens({A: ALL_ROLES})
    assert tokens.token(A, SCOPE) == tokens.token(A, SCOPE)  # the cache answers the same token
    claims = decode_claims(tokens.token(A, SCOPE))
    assert claims.roles == ALL_ROLES and claims.values["tid"] == A
    with pytest.raises(ConsentError) as refused:
        tokens.token(B, SCOPE)
    url = admin_consent_url(
        tokens.authority_url, B, tokens.client_id, SCOPE, tokens.redirect_uri, None
    )
    assert tokens.consent_url(B, SCOPE) == url and url in refused.value.action


def test_the_defender_fake_pages_newest_first_without_overlap() -> None:
    found = [
        normalize(graph_incident(str(n), T0 + timedelta(minutes=n % 4)), "graph") for n in range(9)
    ]
    defender = MemoryDefender(A, found)
    seen: list[str] = []
    before = None
    while True:
        page = incidents.incident_page(defender, IncidentQuery(), before=before, top=4, max_calls=3)
        stamps = [i.last_update for i in page.items]
        assert stamps == sorted(stamps, reverse=True)
        seen += [i.id for i in page.items]
        if page.following is None:
            break
        before = page.following
    assert sorted(seen) == sorted(str(n) for n in range(9)) and len(seen) == 9
    with pytest.raises(NotFoundError):
        defender.get_incident("404")


# ---------------------------------------------------------------------------- incidents


def test_a_bad_incident_id_is_refused_before_any_call() -> None:
    defender = MemoryDefender(A, [normalize(graph_incident("7", T0), "graph")])
    update = incidents.incident_update(status="resolved")
    for bad in ("", "7/../8", "7?$top=1", "x" * 65):
        with pytest.raises(ConfigError):
            incidents.get_incident(defender, bad)
        with pytest.raises(ConfigError):
            incidents.update_incident(defender, bad, update)
    assert defender.calls == []
    changed = incidents.update_incident(defender, " 7 ", update)
    assert changed.status == "resolved" and defender.calls == ["update_incident"]


def test_a_bad_hunting_query_is_refused_before_any_call() -> None:
    graph, legacy = MemoryDefender(A), MemoryDefender(A, api="legacy")
    with pytest.raises(ConfigError):
        incidents.hunt(graph, "   ")
    with pytest.raises(ConfigError):
        incidents.hunt(graph, "x" * (MAX_QUERY + 1))
    with pytest.raises(ConfigError):  # the legacy API takes no time span
        incidents.hunt(legacy, "DeviceEvents | take 1", timespan="P1D")
    assert graph.calls == [] and legacy.calls == []
    result = incidents.hunt(graph, "DeviceEvents | take 1", timespan="P1D")
    assert graph.calls == ["hunt"] and result.rows[0]["Query"] == "DeviceEvents | take 1"


def test_listing_filters_are_canonical_and_applied() -> None:
    versions = [
        normalize(graph_incident("1", T0, status="active"), "graph"),
        normalize(graph_incident("2", T0, status="resolved"), "graph"),
    ]
    query = incidents.incident_query(statuses=["Resolved"])
    assert [i.id for i in incidents.list_incidents(MemoryDefender(A, versions), query)] == ["2"]
    with pytest.raises(ConfigError):
        incidents.incident_query(statuses=["closed-ish"])


# ---------------------------------------------------------------------------- credential check


def run_check(
    tokens: FakeAppTokens, credential: FakeCredential, *tenants: TenantEntry
) -> tuple[Step, list[dict[str, object]]]:
    step, fix = check_credential(credential, clock=MovableClock(T0), warn_within=timedelta(days=30))
    reports = check_tenants(
        tenants,
        tokens=tokens,
        scope=SCOPE,
        api="graph",
        features=("ingest", "update", "hunting"),
        credential=step,
        credential_fix=fix,
    )
    return step, [
        {
            "tenant": r.tenant,
            "ok": r.ok,
            "token": r.token.status,
            "roles": r.roles.status,
            "fix": r.fix,
        }
        for r in reports
    ]


def test_check_reports_each_tenant_and_one_failure_never_stops_the_others() -> None:
    tokens = FakeAppTokens({A: ALL_ROLES, C: ("SecurityIncident.Read.All",)})
    step, rows = run_check(
        tokens,
        FakeCredential(expires_on=T0 + timedelta(days=90)),
        TenantEntry(B),  # not consented
        TenantEntry(A),
        TenantEntry(C),  # consented without update and hunting
        TenantEntry("dddddddd-1111-1111-1111-111111111111", enabled=False),
    )
    assert step.status == "ok"
    by = {r["tenant"]: r for r in rows}
    assert (by[A]["ok"], by[A]["token"], by[A]["roles"]) == (True, "ok", "ok")
    assert (by[B]["ok"], by[B]["token"], by[B]["roles"]) == (False, "fail", "skip")
    assert tokens.consent_url(B, SCOPE) in str(by[B]["fix"])
    assert (by[C]["ok"], by[C]["roles"]) == (False, "fail")
    assert "SecurityIncident.ReadWrite.All" in str(by[C]["fix"])
    assert "ThreatHunting.Read.All" in str(by[C]["fix"])
    assert tokens.consent_url(C, SCOPE) in str(by[C]["fix"])
    # the disabled tenant is skipped without asking for a token
    assert [t for t, _ in tokens.requests] == [B, A, C]


def test_check_skips_tokens_when_the_credential_cannot_be_read() -> None:
    tokens = FakeAppTokens({A: ALL_ROLES})
    credential = FakeCredential(error=AuthError("Key Vault refused the managed identity (403)"))
    step, rows = run_check(tokens, credential, TenantEntry(A))
    assert step.status == "fail" and "403" in step.detail
    assert rows[0]["token"] == "skip" and "Key Vault Secrets User" in str(rows[0]["fix"])
    assert tokens.requests == []


@pytest.mark.parametrize(("days", "status"), [(-1, "fail"), (10, "warn"), (90, "ok")])
def test_check_warns_before_the_credential_expires(days: int, status: str) -> None:
    step, _ = run_check(FakeAppTokens(), FakeCredential(expires_on=T0 + timedelta(days=days)))
    assert step.status == status
