"""The registry of customer tenants (partner context): which tenants to serve, and their names.

Tenants come from two places:

- the ``INGEST_TENANTS`` setting (a list of tenant ids; the home tenant when empty), and
- a storage table (``TENANT_REGISTRY_TABLE``, default ``DefenderTenants``) with one row per
  tenant: PartitionKey ``tenant``, RowKey the tenant id, ``DisplayName`` and ``Enabled``.

A row can name a tenant of the setting, disable it (``Enabled`` false: it is skipped, not
failed), or add a tenant not in the setting (``Enabled`` true), so an MSSP onboards or pauses a
customer without redeploying. A missing table means "no rows".
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.errors import StorageError

log = logging.getLogger(__name__)

PARTITION = "tenant"


class TenantTableLike(Protocol):
    """The part of ``azure.data.tables.TableClient`` used here."""

    def query_entities(self, query_filter: str, **kwargs: Any) -> Iterable[Any]: ...
    def upsert_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class TenantEntry:
    """One tenant the app may serve."""

    tenant_id: str
    display_name: str | None = None
    enabled: bool = True
    #: "setting", "table" or "setting+table"
    source: str = "setting"

    @property
    def label(self) -> str:
        """``Display name (id)`` or the id alone."""
        return f"{self.display_name} ({self.tenant_id})" if self.display_name else self.tenant_id


def merge(configured: Iterable[str], rows: Iterable[TenantEntry]) -> list[TenantEntry]:
    """The registry: configured tenants first (in order), then table-only ones. Pure."""
    by_id = {row.tenant_id: row for row in rows}
    out: list[TenantEntry] = []
    for tid in configured:
        row = by_id.pop(tid, None)
        out.append(
            TenantEntry(tid)
            if row is None
            else TenantEntry(tid, row.display_name, row.enabled, "setting+table")
        )
    out.extend(row for row in by_id.values() if row.enabled)
    return out


def _normal_guid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def _enabled(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("false", "0", "no", "off")


class TenantRegistry:
    """The configured tenants merged with the table's rows.

    Args:
        configured: ``Settings.tenants``.
        table: the registry table, or None to use the setting alone.
    """

    def __init__(self, configured: Iterable[str], table: TenantTableLike | None) -> None:
        self._configured = tuple(configured)
        self._table = table

    def entries(self) -> list[TenantEntry]:
        """Every known tenant, enabled or not.

        Raises:
            StorageError: the table exists but could not be read.
        """
        return merge(self._configured, self._rows())

    def enabled(self) -> list[TenantEntry]:
        """The tenants to serve."""
        return [e for e in self.entries() if e.enabled]

    def set(
        self,
        tenant_id: str,
        *,
        display_name: str | None = None,
        enabled: bool = True,
        consented_at: datetime | None = None,
    ) -> None:
        """Add or change a row (onboarding and tests).

        Raises:
            ValueError: ``tenant_id`` is not a GUID.
            StorageError: the table could not be written.
        """
        from azure.core.exceptions import AzureError

        tid = _normal_guid(tenant_id)
        if tid is None:
            raise ValueError("tenant_id must be a GUID")
        if self._table is None:
            raise StorageError("no tenant registry table is configured")
        entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": tid, "Enabled": enabled}
        if display_name is not None:
            entity["DisplayName"] = display_name
        if consented_at is not None:  # admin consent recorded by the onboarding callback
            entity["ConsentedAt"] = consented_at
        try:
            self._table.upsert_entity(entity)
        except AzureError as exc:
            raise StorageError(
                f"could not write the tenant registry table ({type(exc).__name__})"
            ) from exc

    def _rows(self) -> Iterator[TenantEntry]:
        if self._table is None:
            return
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            entities = list(self._table.query_entities(f"PartitionKey eq '{PARTITION}'"))
        except ResourceNotFoundError:
            log.debug("tenant registry table not found: using the INGEST_TENANTS setting only")
            return
        except AzureError as exc:
            raise StorageError(
                f"could not read the tenant registry table ({type(exc).__name__}); check "
                "TENANT_REGISTRY_TABLE and the identity's Storage Table Data Contributor role"
            ) from exc
        for entity in entities:
            tid = _normal_guid(str(entity.get("RowKey", "")))
            if tid is None:
                log.warning(
                    "tenant registry: row %r is not a tenant GUID; ignored", entity.get("RowKey")
                )
                continue
            name = entity.get("DisplayName")
            yield TenantEntry(
                tid,
                str(name) if name else None,
                _enabled(entity.get("Enabled", True)),
                "table",
            )
