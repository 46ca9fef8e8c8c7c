"""Admin API: stats, request log, truth, activity, faults, reset, and input validation."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import requests

from emulator.server import Emulator, EmulatorConfig
from tests.emulator.conftest import admin, get_json


def test_request_log_records_metadata_but_never_the_token(
    fresh: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """Each request: time, method, host, path, endpoint, tenant, status, authorization kind."""
    get_json(http, f"{fresh.url}/api/incidents", legacy_token, **{"$top": "1"})
    get_json(http, f"{fresh.url}/api/incidents", None)
    log = admin(http, fresh, "GET", "requests")
    assert [(r["endpoint"], r["status"], r["authorization"]) for r in log] == [
        ("legacy.incidents.list", 200, "bearer"),
        ("legacy.incidents.list", 401, "none"),
    ]
    assert log[0]["tenant"] == fresh.home_tenant_id
    assert log[0]["host"] == fresh.url.removeprefix("https://")
    assert log[0]["path"] == "/api/incidents"
    assert legacy_token not in str(log)
    stats = admin(http, fresh, "GET", "stats")
    assert {"endpoint": "legacy.incidents.list", "tenant": None, "status": 401, "count": 1} in (
        stats["requests"]
    )


def test_activity_creates_updates_and_merges(
    fresh: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """New and updated incidents show up in an incremental lastUpdateTime window."""
    tid = fresh.home_tenant_id
    before = admin(http, fresh, "GET", f"truth/{tid}/incidents")["value"]
    newest = before[0]["lastUpdateTime"]
    result = admin(
        http, fresh, "POST", "activity", {"tenant": tid, "create": 3, "update": 4, "merge": 2}
    )
    assert len(result["created"]) == 3
    assert len(result["updated"]) == 4
    assert len(result["merged"]) == 2
    after = admin(http, fresh, "GET", f"truth/{tid}/incidents")["value"]
    assert len(after) == len(before) + 3
    changed = get_json(
        http,
        f"{fresh.url}/api/incidents",
        legacy_token,
        **{"$filter": f"lastUpdateTime gt {newest}"},
    ).json()["value"]
    touched = set(result["created"]) | set(result["updated"])
    touched |= {m["from"] for m in result["merged"]} | {m["into"] for m in result["merged"]}
    assert {i["incidentId"] for i in changed} == touched
    by_id = {i["incidentId"]: i for i in after}
    for merge in result["merged"]:
        source = by_id[merge["from"]]
        assert source["status"] == "Redirected"
        assert source["redirectIncidentId"] == merge["into"]


def test_reset_restores_the_seeded_state(fresh: Emulator, http: requests.Session) -> None:
    """After activity and faults, reset gives back the seeded incidents and clears stats."""
    tid = fresh.home_tenant_id
    seeded = admin(http, fresh, "GET", f"truth/{tid}/incidents")["value"]
    admin(http, fresh, "POST", "activity", {"tenant": tid, "create": 2, "update": 2})
    admin(http, fresh, "POST", "faults", {"rate": 1.0, "kinds": ["500"]})
    admin(http, fresh, "POST", "reset")
    assert admin(http, fresh, "GET", f"truth/{tid}/incidents")["value"] == seeded
    assert admin(http, fresh, "GET", "stats") == {"requests": [], "tokens": []}
    assert admin(http, fresh, "GET", "faults")["rate"] == 0


def test_injected_429_uses_the_documented_bodies(
    fresh: Emulator, http: requests.Session, legacy_token: str, graph_token: str
) -> None:
    """429 faults carry Retry-After and each API family's throttling body."""
    admin(http, fresh, "POST", "faults", {"rate": 1.0, "kinds": ["429"], "seed": 3})
    legacy = get_json(http, f"{fresh.url}/api/incidents", legacy_token)
    assert legacy.status_code == 429
    assert legacy.headers["Retry-After"] == "1"
    assert legacy.json()["error"]["code"] == "429"
    assert legacy.json()["error"]["message"].startswith("API calls quota exceeded!")
    graph = get_json(http, f"{fresh.url}/v1.0/security/incidents", graph_token)
    assert graph.status_code == 429
    assert graph.json()["error"]["code"] == "TooManyRequests"
    # Entra and the admin API are never faulted.
    assert http.get(
        f"{fresh.url}/{fresh.home_tenant_id}/v2.0/.well-known/openid-configuration", timeout=5
    ).ok
    stats = admin(http, fresh, "GET", "stats")["requests"]
    assert {
        "endpoint": "legacy.incidents.list",
        "tenant": fresh.home_tenant_id,
        "status": 429,
        "count": 1,
    } in stats


@pytest.mark.parametrize("kind", ["reset", "truncated"])
def test_connection_faults_break_the_response(
    fresh: Emulator, http: requests.Session, legacy_token: str, kind: str
) -> None:
    """`reset` drops the connection; `truncated` sends half the announced body."""
    admin(http, fresh, "POST", "faults", {"rate": 1.0, "kinds": [kind]})
    session = requests.Session()
    session.trust_env = False
    session.verify = str(fresh.ca_path)
    broken = (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)
    with pytest.raises(broken):
        session.get(
            f"{fresh.url}/api/incidents",
            headers={"Authorization": f"Bearer {legacy_token}"},
            timeout=10,
        )
    session.close()
    admin(http, fresh, "POST", "faults", {"rate": 0})
    assert get_json(http, f"{fresh.url}/api/incidents", legacy_token).status_code == 200


def test_slow_fault_delays_the_answer(
    fresh: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """`slow` answers normally after `slow_seconds` (a client timeout fires first)."""
    admin(http, fresh, "POST", "faults", {"rate": 1.0, "kinds": ["slow"], "slow_seconds": 1.5})
    with pytest.raises(requests.exceptions.Timeout):
        http.get(
            f"{fresh.url}/api/incidents",
            headers={"Authorization": f"Bearer {legacy_token}"},
            timeout=0.5,
        )
    admin(http, fresh, "POST", "faults", {"rate": 0})


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("faults", {"rate": 2}),
        ("faults", {"rate": 0.5, "kinds": ["404"]}),
        ("faults", {"rate": 0.5, "bogus": 1}),
        ("faults", [1, 2]),
        ("activity", {"tenant": "nope", "create": 1}),
        ("activity", {"create": -1}),
        ("activity", {"create": "3"}),
        ("activity", {"delete": 1}),
    ],
)
def test_bad_admin_input_is_400(
    emu: Emulator, http: requests.Session, path: str, body: object
) -> None:
    """Bad admin input: 400 with a JSON error naming the problem."""
    response = http.post(f"{emu.url}/_emulator/{path}", json=body, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_truth_of_unknown_tenant_or_api(emu: Emulator, http: requests.Session) -> None:
    """Unknown tenant: 404; unknown api: 400."""
    assert http.get(f"{emu.url}/_emulator/truth/nope/incidents", timeout=10).status_code == 404
    response = http.get(
        f"{emu.url}/_emulator/truth/{emu.home_tenant_id}/incidents?api=soap", timeout=10
    )
    assert response.status_code == 400


def test_unknown_path_and_method(emu: Emulator, http: requests.Session) -> None:
    """404 for unknown paths, 405 for a known path with the wrong method."""
    assert http.get(f"{emu.url}/nothing/here", timeout=10).status_code == 404
    assert http.delete(f"{emu.url}/api/incidents", timeout=10).status_code == 405


def test_same_seed_and_clock_give_the_same_data(http: requests.Session) -> None:
    """Seeded data is deterministic from (seed, clock); times are relative to the clock."""
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    truths = []
    for _ in range(2):
        with Emulator(EmulatorConfig(seed=5, customer_tenants=0), clock=lambda: now) as emu:
            session = requests.Session()
            session.trust_env = False
            session.verify = str(emu.ca_path)
            truths.append(
                admin(session, emu, "GET", f"truth/{emu.home_tenant_id}/incidents")["value"]
            )
            session.close()
    assert truths[0] == truths[1]
    times = [datetime.fromisoformat(i["createdTime"]) for i in truths[0]]
    assert all(now - timedelta(days=7) <= t < now for t in times)


def test_expired_tokens_are_rejected(http: requests.Session) -> None:
    """Token lifetime follows the injected clock: after expiry the API answers 401."""
    now = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC)]
    config = EmulatorConfig(seed=2, customer_tenants=0, home_incidents=5, token_lifetime=60)
    with Emulator(config, clock=lambda: now[0]) as emu:
        session = requests.Session()
        session.trust_env = False
        session.verify = str(emu.ca_path)
        from tests.emulator.conftest import LEGACY_SCOPE, token_for

        token = token_for(session, emu, LEGACY_SCOPE)
        assert get_json(session, f"{emu.url}/api/incidents", token).status_code == 200
        now[0] += timedelta(seconds=61)
        response = get_json(session, f"{emu.url}/api/incidents", token)
        assert response.status_code == 401
        session.close()


def test_logs_never_contain_tokens_or_secrets(
    fresh: Emulator, http: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    """Even at DEBUG, the emulator's own logs carry no secret or token value."""
    from tests.emulator.conftest import LEGACY_SCOPE, token_for

    with caplog.at_level(logging.DEBUG, logger="emulator"):
        token = token_for(http, fresh, LEGACY_SCOPE)
        get_json(http, f"{fresh.url}/api/incidents", token)
        http.get(
            fresh.mi_url,
            params={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
            headers={"X-IDENTITY-HEADER": fresh.identity_header},
            timeout=10,
        )
    text = caplog.text
    assert "/api/incidents" in text
    for value in (token, fresh.client_secret, fresh.identity_header, token.split(".")[1]):
        assert value not in text


def test_faults_can_be_limited_to_some_tenants(
    fresh: Emulator, http: requests.Session, legacy_token: str
) -> None:
    """`tenants` limits faults to those tenants' tokens; the others answer normally."""
    from tests.emulator.conftest import token_for

    other = fresh.tenant_ids[1]
    other_token = token_for(http, fresh, "https://api.security.microsoft.com/.default", other)
    admin(http, fresh, "POST", "faults", {"rate": 1.0, "kinds": ["500"], "tenants": [other]})
    assert admin(http, fresh, "GET", "faults")["tenants"] == [other]
    assert get_json(http, f"{fresh.url}/api/incidents", other_token).status_code == 500
    assert get_json(http, f"{fresh.url}/api/incidents", legacy_token).status_code == 200
    bad = http.post(f"{fresh.url}/_emulator/faults", json={"rate": 1.0, "tenants": "x"}, timeout=10)
    assert bad.status_code == 400 and "tenants" in bad.json()["error"]["message"]
