"""The tenant registry: INGEST_TENANTS merged with the registry table's rows."""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.storage.tenants import TenantRegistry
from shared.storage.values import TenantEntry, merge

A = "11111111-1111-1111-1111-111111111111"
B = "22222222-2222-2222-2222-222222222222"
C = "33333333-3333-3333-3333-333333333333"


class FakeTable:
    """An in-memory stand-in for the two TableClient methods used."""

    def __init__(self, rows: list[dict[str, Any]] | None = None, *, missing: bool = False) -> None:
        self.rows = rows or []
        self.missing = missing

    def query_entities(self, query_filter: str, **kwargs: Any) -> list[dict[str, Any]]:
        if self.missing:
            raise ResourceNotFoundError("TableNotFound")
        return [r for r in self.rows if r["PartitionKey"] == "tenant"]

    def upsert_entity(self, entity: dict[str, Any], **kwargs: Any) -> None:
        self.rows = [r for r in self.rows if r["RowKey"] != entity["RowKey"]] + [entity]


def test_setting_order_first_then_enabled_table_only_rows() -> None:
    """Configured tenants keep their order; a disabled table-only row is not added."""
    rows = [
        TenantEntry(C, "Contoso", True, "table"),
        TenantEntry(B, "Fabrikam", False, "table"),
        TenantEntry("44444444-4444-4444-4444-444444444444", None, False, "table"),
    ]
    merged = merge([A, B], rows)
    assert [(e.tenant_id, e.display_name, e.enabled) for e in merged] == [
        (A, None, True),
        (B, "Fabrikam", False),
        (C, "Contoso", True),
    ]


def test_registry_reads_rows_and_skips_disabled() -> None:
    """Enabled() drops disabled tenants; odd Enabled values and bad row keys are handled."""
    table = FakeTable(
        [
            {
                "PartitionKey": "tenant",
                "RowKey": B.upper(),
                "DisplayName": "Fab",
                "Enabled": "false",
            },
            {"PartitionKey": "tenant", "RowKey": "not-a-guid", "Enabled": True},
        ]
    )
    registry = TenantRegistry([A, B], table)
    assert [e.tenant_id for e in registry.enabled()] == [A]
    registry.set(C, display_name="Contoso")
    assert [e.label for e in registry.enabled()] == [A, f"Contoso ({C})"]


def test_missing_table_means_the_setting_alone() -> None:
    """A registry table that does not exist yet is not an error."""
    assert [e.tenant_id for e in TenantRegistry([A], FakeTable(missing=True)).enabled()] == [A]
    assert [e.tenant_id for e in TenantRegistry([A], None).enabled()] == [A]
