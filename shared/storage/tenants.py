"""The registry of customer tenants (partner context): which tenants to serve, and their state.

Tenants come from two places:

- the ``INGEST_TENANTS`` setting (a list of tenant ids; the home tenant when empty), and
- a storage table (``TENANT_REGISTRY_TABLE``, default ``DefenderTenants``) with one row per
  tenant: PartitionKey ``tenant``, RowKey the tenant id, ``DisplayName``, ``Enabled`` and the
  optional per-tenant overrides ``Api`` (``graph``/``legacy``) and ``LookbackDays``.

A row can name a tenant of the setting, disable it (``Enabled`` false: it is skipped, not
failed), or add a tenant not in the setting (``Enabled`` true), so an MSSP onboards or pauses a
customer without redeploying. A missing table means "no rows".

The same table holds each tenant's run state under PartitionKey ``run`` (``RunStateStore``):
the fan-out's "queued" marker, the last result and error, the consent state of the last run
and holds (a tenant without consent, or whose message went to the poison queue, is not queued
again until its hold ends). Registry rows are written by people (the CLI); run rows by the app.
PartitionKey ``consent-state`` holds the nonces of consent links already used
(``ConsentStateStore``), so each onboarding link works once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.core.errors import StorageError
from shared.core.guids import guid
from shared.storage.values import RunState, TenantEntry, merge

log = logging.getLogger(__name__)

PARTITION = "tenant"
RUN_PARTITION = "run"


class TenantTableLike(Protocol):
    """The part of ``azure.data.tables.TableClient`` used here."""

    def query_entities(self, query_filter: str, **kwargs: Any) -> Iterable[Any]: ...
    def upsert_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any: ...
    def get_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> Any: ...
    def delete_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> Any: ...
    def create_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any: ...
    def update_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any: ...


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

    def entries(self, *, include_disabled: bool = False) -> list[TenantEntry]:
        """Every tenant of the setting (enabled or not) and the table's enabled ones (all of
        them with ``include_disabled``: what ``tenants list`` and ``status`` show).

        Raises:
            StorageError: the table exists but could not be read.
        """
        return merge(self._configured, self._rows(), include_disabled=include_disabled)

    def enabled(self) -> list[TenantEntry]:
        """The tenants to serve."""
        return [e for e in self.entries() if e.enabled]

    def get(self, tenant_id: str) -> TenantEntry | None:
        """One tenant: its row merged with the setting (None: neither knows it).

        One point read, so the queue handler can check a tenant without listing the table.
        """
        tid = guid(tenant_id)
        if tid is None:
            return None
        row = self._row(tid)
        configured = (tid,) if tid in self._configured else ()
        found = merge(configured, [row] if row else [], include_disabled=True)
        return next((e for e in found if e.tenant_id == tid), None)

    def set(
        self,
        tenant_id: str,
        *,
        display_name: str | None = None,
        enabled: bool | None = True,
        api: str | None = None,
        lookback_days: int | None = None,
        consented_at: datetime | None = None,
    ) -> str:
        """Add or change a row (onboarding, pause/resume, overrides); other columns are kept.

        ``api`` "" or ``lookback_days`` 0 clear that override; ``consented_at`` records an admin
        consent (the onboarding callback). Returns the normalized id.

        Raises:
            ValueError: ``tenant_id`` is not a GUID, or an override is out of range.
            StorageError: the table could not be written.
        """
        tid = guid(tenant_id)
        if tid is None:
            raise ValueError("tenant_id must be a GUID")
        entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": tid}
        if enabled is not None:
            entity["Enabled"] = enabled
        if display_name is not None:
            entity["DisplayName"] = display_name
        if api is not None:
            if api not in ("", "graph", "legacy"):
                raise ValueError("api must be graph or legacy")
            entity["Api"] = api
        if lookback_days is not None:
            if not 0 <= lookback_days <= 180:
                raise ValueError("lookback days must be from 1 to 180 (0 clears the override)")
            entity["LookbackDays"] = lookback_days
        if consented_at is not None:  # admin consent recorded by the onboarding callback
            entity["ConsentedAt"] = consented_at
        self._write(entity)
        return tid

    def record_consent(self, tenant_id: str, when: datetime) -> TenantEntry:
        """Record an admin consent (the onboarding callback) and return the tenant's entry.

        A tenant without a row gets one, enabled (a create-only write). A tenant with a row
        keeps its ``Enabled`` as it is: only ``ConsentedAt`` is merged in, so a callback never
        re-enables a tenant an operator paused, even one paused while the callback runs.

        Raises:
            ValueError: ``tenant_id`` is not a GUID.
            StorageError: the table could not be written.
        """
        from azure.core.exceptions import AzureError, ResourceExistsError

        tid = guid(tenant_id)
        if tid is None:
            raise ValueError("tenant_id must be a GUID")
        table = self._require_table()
        entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": tid, "ConsentedAt": when}
        try:
            table.create_entity({**entity, "Enabled": True})
        except ResourceExistsError:
            self._write(entity)
        except AzureError as exc:
            raise StorageError(
                f"could not write the tenant registry table ({type(exc).__name__})"
            ) from exc
        entry = self.get(tid)
        if entry is None:  # the row was removed in between: nothing is served, say so
            return TenantEntry(tid, enabled=False, source="table")
        return entry

    def remove(self, tenant_id: str) -> bool:
        """Delete a tenant's row (and its run state). Returns whether a row existed.

        A tenant of ``INGEST_TENANTS`` stays served; remove it from the setting too.
        """
        from azure.core.exceptions import AzureError

        tid = guid(tenant_id)
        if tid is None:
            raise ValueError("tenant_id must be a GUID")
        table = self._require_table()
        existed = self._row(tid) is not None
        try:
            table.delete_entity(PARTITION, tid)
            table.delete_entity(RUN_PARTITION, tid)
        except AzureError as exc:
            raise StorageError(
                f"could not write the tenant registry table ({type(exc).__name__})"
            ) from exc
        return existed

    def _require_table(self) -> TenantTableLike:
        if self._table is None:
            raise StorageError("no tenant registry table is configured")
        return self._table

    def _write(self, entity: dict[str, Any]) -> None:
        from azure.core.exceptions import AzureError
        from azure.data.tables import UpdateMode

        table = self._require_table()
        try:
            table.upsert_entity(entity, mode=UpdateMode.MERGE)
        except AzureError as exc:
            raise StorageError(
                f"could not write the tenant registry table ({type(exc).__name__})"
            ) from exc

    def _row(self, tid: str) -> TenantEntry | None:
        if self._table is None:
            return None
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            entity = self._table.get_entity(PARTITION, tid)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageError(
                f"could not read the tenant registry table ({type(exc).__name__})"
            ) from exc
        return _entry(entity)

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
            entry = _entry(entity)
            if entry is None:
                log.warning(
                    "tenant registry: row %r is not a tenant GUID; ignored", entity.get("RowKey")
                )
                continue
            yield entry


def _entry(entity: Any) -> TenantEntry | None:
    tid = guid(str(entity.get("RowKey", "")))
    if tid is None:
        return None
    name = entity.get("DisplayName")
    api = entity.get("Api")
    lookback = entity.get("LookbackDays")
    if api not in ("graph", "legacy"):
        if api:
            log.warning("tenant registry: tenant %s has an unknown Api %r; ignored", tid, api)
        api = None
    days: int | None = None
    if isinstance(lookback, int) and not isinstance(lookback, bool) and 1 <= lookback <= 180:
        days = lookback
    elif lookback not in (None, 0):
        log.warning("tenant registry: tenant %s has a bad LookbackDays; ignored", tid)
    return TenantEntry(
        tid,
        str(name) if name else None,
        _enabled(entity.get("Enabled", True)),
        "table",
        api=api,
        lookback_days=days,
    )


# --- run state (PartitionKey "run") -------------------------------------------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # "no time": Table columns cannot be cleared by MERGE

_COLUMNS = {
    "queued_at": "QueuedAt",
    "queued_until": "QueuedUntil",
    "queue_reason": "QueueReason",
    "last_run_at": "LastRunAt",
    "last_success_at": "LastSuccessAt",
    "last_result": "LastResult",
    "watermark": "Watermark",
    "last_incidents": "LastIncidents",
    "last_api_calls": "LastApiCalls",
    "last_error": "LastError",
    "last_error_code": "LastErrorCode",
    "last_error_at": "LastErrorAt",
    "attempts": "Attempts",
    "consent": "Consent",
    "hold_until": "HoldUntil",
    "hold_reason": "HoldReason",
}


def _time(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return None if aware <= _EPOCH else aware.astimezone(UTC)


def _state(entity: Any) -> RunState:
    values: dict[str, Any] = {}
    for attr, column in _COLUMNS.items():
        raw = entity.get(column)
        if attr.endswith(("_at", "_until")):
            values[attr] = _time(raw)
        elif attr in ("last_incidents", "last_api_calls", "attempts"):
            values[attr] = int(raw) if isinstance(raw, int) and not isinstance(raw, bool) else 0
        elif attr == "consent":
            values[attr] = str(raw) if raw in ("ok", "missing") else "unknown"
        else:
            values[attr] = str(raw) if raw else None
    etag = getattr(entity, "metadata", {}).get("etag")
    return RunState(str(entity["RowKey"]), etag=str(etag) if etag else None, **values)


def _columns(changes: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr, value in changes.items():
        column = _COLUMNS[attr]
        if attr.endswith(("_at", "_until")):
            out[column] = value if value is not None else _EPOCH
        elif value is None:
            out[column] = ""
        else:
            out[column] = value
    return out


class RunStateStore:
    """Reads and writes tenants' run rows in the registry table (ETags for the marker)."""

    def __init__(self, table: TenantTableLike, *, clock: Callable[[], datetime]) -> None:
        self._table = table
        self._clock = clock

    def all(self) -> dict[str, RunState]:
        """Every tenant's run state, by tenant id (one query, paged by the SDK).

        Raises:
            StorageError: the table could not be read.
        """
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            rows = list(self._table.query_entities(f"PartitionKey eq '{RUN_PARTITION}'"))
        except ResourceNotFoundError:
            return {}
        except AzureError as exc:
            raise StorageError(f"could not read tenant run state ({type(exc).__name__})") from exc
        return {str(r["RowKey"]): _state(r) for r in rows}

    def get(self, tenant_id: str) -> RunState:
        """One tenant's run state (empty when never run)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            return _state(self._table.get_entity(RUN_PARTITION, tenant_id))
        except ResourceNotFoundError:
            return RunState(tenant_id)
        except AzureError as exc:
            raise StorageError(
                f"could not read the run state of {tenant_id} ({type(exc).__name__})"
            ) from exc

    def claim(self, state: RunState, *, until: datetime, reason: str) -> bool:
        """Set the tenant's "queued" marker if nobody changed its row since ``state`` was read.

        This is what makes fan-out deduplicate across processes: two timers (or a timer and
        ``POST /ingest``) that read the same row both try a conditional write; the service
        lets one win (create-if-absent, or replace-if-ETag-matches) and the other skips.

        Returns:
            True when this caller now owns the marker (and must queue the message).

        Raises:
            StorageError: the write failed for another reason.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import (
            AzureError,
            ResourceExistsError,
            ResourceModifiedError,
        )
        from azure.data.tables import UpdateMode

        now = self._clock()
        entity = {
            "PartitionKey": RUN_PARTITION,
            "RowKey": state.tenant_id,
            **_columns({"queued_at": now, "queued_until": until, "queue_reason": reason}),
        }
        try:
            if state.etag is None:
                self._table.create_entity(entity)
            else:
                self._table.update_entity(
                    entity,
                    mode=UpdateMode.MERGE,
                    etag=state.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        except AzureError as exc:
            raise StorageError(
                f"could not mark tenant {state.tenant_id} queued ({type(exc).__name__})"
            ) from exc
        return True

    def update(self, tenant_id: str, **changes: Any) -> None:
        """Merge ``changes`` (``RunState`` field names) into the tenant's row.

        Raises:
            StorageError: the write failed.
        """
        from azure.core.exceptions import AzureError
        from azure.data.tables import UpdateMode

        entity = {"PartitionKey": RUN_PARTITION, "RowKey": tenant_id, **_columns(changes)}
        try:
            self._table.upsert_entity(entity, mode=UpdateMode.MERGE)
        except AzureError as exc:
            raise StorageError(
                f"could not save the run state of {tenant_id} ({type(exc).__name__})"
            ) from exc


# --- consent states spent (PartitionKey "consent-state") -----------------------------------------

CONSENT_STATE_PARTITION = "consent-state"


class ConsentStateStore:
    """The nonces of consent links already used, one row each (RowKey = the nonce).

    Spending is a create-only write, so of two callbacks carrying the same state exactly one
    wins, in one process or many; the other (and every later replay) is refused. A row is kept
    past its link's expiry; after that the state's signature check refuses the link anyway.
    """

    def __init__(self, table: TenantTableLike) -> None:
        self._table = table

    def used(self, nonce: str) -> bool:
        """Whether a link with this nonce was already used (one point read).

        Raises:
            StorageError: the table could not be read.
        """
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            self._table.get_entity(CONSENT_STATE_PARTITION, nonce)
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise StorageError(f"could not read consent states ({type(exc).__name__})") from exc
        return True

    def spend(self, nonce: str, *, tenant: str, when: datetime, expires: datetime) -> bool:
        """Mark the nonce used; False when it already was (the caller must refuse).

        Raises:
            StorageError: the table could not be written.
        """
        from azure.core.exceptions import AzureError, ResourceExistsError

        entity = {
            "PartitionKey": CONSENT_STATE_PARTITION,
            "RowKey": nonce,
            "Tenant": tenant,
            "SpentAt": when,
            "Expires": expires,
        }
        try:
            self._table.create_entity(entity)
        except ResourceExistsError:
            return False
        except AzureError as exc:
            raise StorageError(f"could not spend a consent state ({type(exc).__name__})") from exc
        return True

    def release(self, nonce: str) -> None:
        """Undo ``spend`` when recording the consent failed, so the admin can retry the link
        (best effort: a failure here leaves the link used)."""
        from azure.core.exceptions import AzureError

        try:
            self._table.delete_entity(CONSENT_STATE_PARTITION, nonce)
        except AzureError:
            log.warning("could not release a consent state after a failed write")


__all__ = [
    "ConsentStateStore",
    "RunState",
    "RunStateStore",
    "TenantEntry",
    "TenantRegistry",
    "merge",
]
