"""What differs per API surface is written once, and the modules that speak a surface read it."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.core.settings import Settings
from shared.core.surfaces import DEFAULT_PAGE_SIZE, GRAPH, LEGACY, MAX_PAGE_SIZE, SURFACES, surface
from shared.defender.client import DefenderClient, RetryPolicy
from shared.defender.model import normalize
from shared.defender.paging import incidents_path
from shared.defender.slices import SliceRequest

T = "11111111-1111-1111-1111-111111111111"


def test_each_surface_spells_its_own_fields_and_limits() -> None:
    assert surface("legacy") is LEGACY and surface("graph") is GRAPH
    assert (LEGACY.id_field, LEGACY.last_update_field) == ("incidentId", "lastUpdateTime")
    assert (GRAPH.id_field, GRAPH.last_update_field) == ("id", "lastUpdateDateTime")
    assert MAX_PAGE_SIZE == {"legacy": 100, "graph": 50} == DEFAULT_PAGE_SIZE
    assert {api: incidents_path(api) for api in SURFACES} == {
        "legacy": "/api/incidents",
        "graph": "/v1.0/security/incidents",
    }


def test_the_model_and_the_slice_request_read_the_spelling() -> None:
    for spelling in SURFACES.values():
        raw = {
            spelling.id_field: "42",
            spelling.created_field: "2026-12-01T10:00:00Z",
            spelling.last_update_field: "2026-12-01T11:00:00.1234567Z",
        }
        incident = normalize(raw, spelling.api)
        assert incident.id == "42"
        assert incident.last_update == datetime(2026, 12, 1, 11, 0, 0, 123456, tzinfo=UTC)
        client = DefenderClient(
            session=None,  # type: ignore[arg-type]
            token=lambda: "t",
            api=spelling.api,
            base_url="https://api.example",
            retry=RetryPolicy(),
            tenant=T,
        )
        start, end = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)
        spec = client.slice_request(SliceRequest(start, end), top=10)
        assert spec.url == "https://api.example" + spelling.incidents_path
        assert spec.params["$filter"].startswith(f"{spelling.last_update_field} ge ")


def test_settings_cap_the_page_at_the_surface_limit() -> None:
    env = {
        "DEFENDER_TENANT_ID": T,
        "DEFENDER_CLIENT_ID": T,
        "KEY_VAULT_URL": "https://v.vault.azure.net",
        "DATA_STORAGE_ACCOUNT_NAME": "acct",
    }
    assert Settings.from_env(env).ingest.page_size == GRAPH.max_page_size
    assert (
        Settings.from_env({**env, "DEFENDER_API": "legacy"}).ingest.page_size
        == LEGACY.max_page_size
    )
