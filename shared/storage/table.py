"""The latest-state table: one row per incident (PartitionKey tenant, RowKey incident id).

Rows hold summary columns and where the incident's full JSON lives. Writes are conditional on
the row's ETag, and a row is only replaced by a strictly newer version, so concurrent or
out-of-order writers never move an incident back in time.

To stay cheap at volume, a run reads the rows that could matter once (``known_since``: rows
updated at or after the run's start, since any listed version is at least that new) and writes
each page in entity-group transactions of up to 100 rows
(https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions).
A transaction that fails on a concurrency condition falls back to row-by-row
read-decide-write, so correctness never depends on the snapshot being current.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableTransactionError, UpdateMode

from shared.clock import parse_utc
from shared.errors import ConflictError, StorageError
from shared.storage.archive import StoredVersion

_MAX_CONFLICT_RETRIES = 5
#: the service's limit on operations in one entity-group transaction
TRANSACTION_SIZE = 100


class TableLike(Protocol):
    """The part of ``azure.data.tables.TableClient`` used here."""

    def get_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> Any: ...
    def create_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any: ...
    def update_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any: ...
    def query_entities(self, query_filter: str, **kwargs: Any) -> Iterable[Any]: ...
    def submit_transaction(self, operations: Any, **kwargs: Any) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class RowVersion:
    """What the table holds for one incident: its last update time and the row's ETag."""

    last_update: datetime
    etag: str


def _stamp(value: datetime) -> str:
    # fixed-width UTC with microseconds, so stored stamps also compare correctly as strings
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _entity(tenant: str, version: StoredVersion, ingested_at: datetime) -> dict[str, Any]:
    incident = version.incident
    return {
        "PartitionKey": tenant,
        "RowKey": incident.id,
        "Title": incident.title,
        "Status": incident.status,
        "Severity": incident.severity,
        "Classification": incident.classification or "",
        "Determination": incident.determination or "",
        "AssignedTo": incident.assigned_to or "",
        "CreatedTime": incident.created,
        "LastUpdateTime": _stamp(incident.last_update),
        "LastUpdated": incident.last_update,
        "RedirectIncidentId": incident.redirect_id or "",
        "AlertCount": incident.alert_count,
        "Tags": json.dumps(list(incident.tags)),
        "Api": incident.api,
        "BlobName": version.blob_name,
        "BlobLine": version.line,
        "IngestedAt": ingested_at,
    }


class IncidentTable:
    """Reads and conditionally writes the latest state of incidents."""

    def __init__(self, table: TableLike) -> None:
        self._table = table

    def stored_version(self, tenant: str, incident_id: str) -> datetime | None:
        """Last update time of the stored row, or None when the incident is not stored."""
        entity = self._get(tenant, incident_id)
        return None if entity is None else parse_utc(str(entity["LastUpdateTime"]))

    def known_since(self, tenant: str, since: datetime) -> dict[str, RowVersion]:
        """Rows of ``tenant`` whose incident was updated at or after ``since``.

        Raises:
            StorageError: the query failed.
        """
        try:
            rows = self._table.query_entities(
                "PartitionKey eq @tenant and LastUpdated ge @since",
                parameters={"tenant": tenant, "since": since},
                select=["RowKey", "LastUpdateTime"],
            )
            return {
                str(row["RowKey"]): RowVersion(
                    parse_utc(str(row["LastUpdateTime"])), str(row.metadata["etag"])
                )
                for row in rows
            }
        except AzureError as exc:
            raise StorageError(f"could not query the incident table: {type(exc).__name__}") from exc

    def upsert_newer(
        self,
        tenant: str,
        stored: Iterable[StoredVersion],
        ingested_at: datetime,
        known: dict[str, RowVersion] | None = None,
    ) -> int:
        """Write each version unless the table already has it or a newer one.

        Args:
            known: the caller's snapshot of rows (from ``known_since``); updated in place with
                what this call wrote. Without it, every row is read first.

        Returns:
            how many rows were written.

        Raises:
            StorageError: the table could not be read or written.
            ConflictError: a row kept changing under us (another writer is very busy).
        """
        versions = list(stored)
        if known is None:
            return sum(self._upsert_one(tenant, v, ingested_at) for v in versions)
        written = 0
        for start in range(0, len(versions), TRANSACTION_SIZE):
            chunk = versions[start : start + TRANSACTION_SIZE]
            written += self._upsert_chunk(tenant, chunk, ingested_at, known)
        return written

    def _upsert_chunk(
        self,
        tenant: str,
        chunk: Sequence[StoredVersion],
        ingested_at: datetime,
        known: dict[str, RowVersion],
    ) -> int:
        operations: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        planned: list[StoredVersion] = []
        for version in chunk:
            incident = version.incident
            row = known.get(incident.id)
            if row is not None and row.last_update >= incident.last_update:
                continue
            entity = _entity(tenant, version, ingested_at)
            if row is None:
                operations.append(("create", entity, {}))
            else:
                options = {"etag": row.etag, "match_condition": MatchConditions.IfNotModified}
                operations.append(("update", entity, {"mode": UpdateMode.REPLACE, **options}))
            planned.append(version)
        if not operations:
            return 0
        try:
            results = self._table.submit_transaction(operations)
        except TableTransactionError:
            # another writer touched one of these rows: decide row by row with fresh reads
            written = 0
            for version in planned:
                if self._upsert_one(tenant, version, ingested_at):
                    written += 1
                known.pop(version.incident.id, None)
            return written
        except AzureError as exc:
            raise StorageError(f"could not write incident rows: {type(exc).__name__}") from exc
        for version, result in zip(planned, results, strict=True):
            etag = result.get("etag") if isinstance(result, dict) else None
            if etag:
                known[version.incident.id] = RowVersion(version.incident.last_update, str(etag))
            else:
                known.pop(version.incident.id, None)
        return len(planned)

    def _get(self, tenant: str, incident_id: str) -> Any:
        try:
            return self._table.get_entity(tenant, incident_id)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageError(
                f"could not read table row {incident_id}: {type(exc).__name__}"
            ) from exc

    def _upsert_one(self, tenant: str, version: StoredVersion, ingested_at: datetime) -> bool:
        incident = version.incident
        entity = _entity(tenant, version, ingested_at)
        for _ in range(_MAX_CONFLICT_RETRIES):
            current = self._get(tenant, incident.id)
            try:
                if current is None:
                    self._table.create_entity(entity)
                    return True
                if parse_utc(str(current["LastUpdateTime"])) >= incident.last_update:
                    return False
                self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return True
            except (ResourceExistsError, ResourceModifiedError):
                continue  # someone wrote the row between our read and write: decide again
            except AzureError as exc:
                raise StorageError(
                    f"could not write table row {incident.id}: {type(exc).__name__}"
                ) from exc
        raise ConflictError(f"incident {incident.id} kept changing while being written")
