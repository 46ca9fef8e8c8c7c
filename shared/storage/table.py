"""The latest-state table: one row per incident (PartitionKey tenant, RowKey incident id).

Rows hold summary columns (including those a SOC filters on: status, severity, assignment,
``PriorityScore``, ``SystemTags``) and where the incident's full JSON lives. A row is only
replaced by a strictly newer version, and every write is conditional (create-only for a new
row, the row's ETag for a known one), so concurrent or out-of-order writers never move an
incident back in time. A merged incident (status redirected, ``redirectIncidentId``) keeps the id
of the incident it was merged into in ``RedirectIncidentId``.

Lookups cost the same at 1,000 and at 100,000 stored rows. Azure Table storage serves a query
naming both PartitionKey and RowKey as a point query, "the most efficient lookup"; a filter
``PartitionKey eq 'p' and (RowKey eq 'a' or RowKey eq 'b')`` is served as a partition scan, whose
cost grows with the partition ("Design for querying":
https://learn.microsoft.com/azure/storage/tables/table-storage-design-for-query). All of a
tenant's rows share its partition, so ``lookup`` makes one point read per id, ``LOOKUP_THREADS``
at a time on a process-wide pool (bounded however many runs share the process).

Most answers need no lookup at all: ``create_new`` writes an answer's rows in one create-only
entity-group transaction, which is atomic (all rows or none;
https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions) and
fails when any of its rows exists. A backfill thus costs one transaction per answer and no read;
only an answer that meets a stored row (an update, the overlap re-read) is looked up, by point
reads, and written by ``upsert_newer``. Writes go in transactions of up to 100 rows, mixing
creates and conditional updates; a transaction refused on a condition (another writer touched a
row) is decided again as a whole from a fresh lookup of its rows: never row by row.

Versions: ``Version`` keeps the API's own last-update text (all 7 digits), which identifies a
version exactly; ``LastUpdateTime`` is the (possibly clamped, see ``shared.usecases.ingest``) time
used to
order versions.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

from shared.core.clock import parse_utc
from shared.core.errors import ConflictError, StorageError
from shared.core.invocation import InvocationExecutor
from shared.storage.batch import Refused, submit
from shared.storage.values import (
    TRANSACTION_SIZE,
    RowVersion,
    StoredVersion,
    is_stored,
    version_text,
)

_MAX_CONFLICT_RETRIES = 5
#: point reads in flight at once, process-wide (a lookup of an answer's ids runs them in parallel)
LOOKUP_THREADS = 8
#: the columns a lookup reads
_LOOKUP_COLUMNS = ["RowKey", "LastUpdateTime", "Version", "BlobName"]

_T = TypeVar("_T")
_R = TypeVar("_R")
_pool: InvocationExecutor | None = None
_pool_lock = threading.Lock()


def _parallel(fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``fn`` over ``items`` on the process-wide lookup pool, results in order; the first
    failure is raised. One item runs here (no thread hop)."""
    global _pool
    if len(items) <= 1:
        return [fn(item) for item in items]
    with _pool_lock:
        if _pool is None:
            # its threads log with the invocation that asked (shared.core.invocation)
            _pool = InvocationExecutor(LOOKUP_THREADS, thread_name_prefix="table-lookup")
        pool = _pool
    return list(pool.map(fn, items))


class TableLike(Protocol):
    """The part of ``azure.data.tables.TableClient`` used here."""

    def get_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> Any: ...
    def delete_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> None: ...
    def create_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any: ...
    def update_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any: ...
    def query_entities(self, query_filter: str, **kwargs: Any) -> Iterable[Any]: ...
    def submit_transaction(self, operations: Any, **kwargs: Any) -> Sequence[Any]: ...


def _stamp(value: datetime) -> str:
    # fixed-width UTC with microseconds, so stored stamps also compare correctly as strings
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_list(value: Any) -> str:
    return json.dumps([str(v) for v in value] if isinstance(value, list) else [])


def _soc_columns(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Columns of the newer Graph fields a SOC filters on
    (docs/defender-service.md#newer-incident-fields)."""
    score = raw.get("priorityScore")
    modified = raw.get("lastModifiedBy")
    return {
        "PriorityScore": score if isinstance(score, int) and not isinstance(score, bool) else -1,
        "SystemTags": _json_list(raw.get("systemTags")),
        "LastModifiedBy": modified if isinstance(modified, str) else "",
    }


def _entity(tenant: str, version: StoredVersion, ingested_at: datetime) -> dict[str, Any]:
    incident = version.incident
    return {
        **_soc_columns(incident.raw),
        "Version": version_text(incident),
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


def _written(version: StoredVersion, etag: str) -> RowVersion:
    """The row a transaction wrote for ``version`` (its ETag from the transaction's answer)."""
    incident = version.incident
    return RowVersion(incident.last_update, etag, version_text(incident), version.blob_name)


class IncidentTable:
    """Reads and conditionally writes the latest state of incidents."""

    def __init__(self, table: TableLike) -> None:
        self._table = table

    def lookup(self, tenant: str, incident_ids: Iterable[str]) -> dict[str, RowVersion]:
        """The rows of these incidents that exist: one point read per id, in parallel (its cost
        does not grow with the table; see the module docstring).

        Raises:
            StorageError: a read failed, or a row is corrupt.
        """
        ids = sorted(set(incident_ids))
        rows = _parallel(lambda rid: self._point(tenant, rid), ids)
        return {rid: row for rid, row in zip(ids, rows, strict=True) if row is not None}

    def _point(self, tenant: str, incident_id: str) -> RowVersion | None:
        try:
            entity = self._table.get_entity(tenant, incident_id, select=_LOOKUP_COLUMNS)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageError(f"could not read the incident table: {type(exc).__name__}") from exc
        try:
            return RowVersion(
                parse_utc(str(entity["LastUpdateTime"])),
                str(entity.metadata["etag"]),
                str(entity.get("Version") or ""),
                str(entity.get("BlobName") or ""),
            )
        except (KeyError, ValueError) as exc:
            raise StorageError(
                f"row {incident_id} of tenant {tenant} in the incident table is corrupt (no valid "
                "LastUpdateTime); delete it to have it stored again"
            ) from exc

    def create_new(
        self, tenant: str, stored: Sequence[StoredVersion], ingested_at: datetime
    ) -> dict[str, RowVersion] | None:
        """Create a row for each version (distinct ids, at most ``TRANSACTION_SIZE``) in one
        create-only transaction, without reading first.

        Returns:
            the rows written; None when the transaction was refused (a row exists, or an earlier
            attempt of this very request went through): then nothing was written by this call,
            since a transaction is atomic, and the caller decides from a ``lookup``.

        Raises:
            StorageError: the table could not be written.
        """
        if len(stored) > TRANSACTION_SIZE or len({v.incident.id for v in stored}) != len(stored):
            raise ValueError(f"create_new takes up to {TRANSACTION_SIZE} versions of distinct ids")
        if not stored:
            return {}
        operations = [("create", _entity(tenant, v, ingested_at), None) for v in stored]
        try:
            etags = submit(self._table, operations)
        except Refused:
            return None
        return {v.incident.id: _written(v, etag) for v, etag in zip(stored, etags, strict=True)}

    def forget(self, tenant: str, blob_name: str, incident_ids: Iterable[str]) -> int:
        """Delete the rows among ``incident_ids`` that still point at ``blob_name`` (recovery of
        rows created for a blob that was never written); a row changed since is left alone.

        Returns:
            how many rows were deleted.

        Raises:
            StorageError: the table could not be read or written.
        """
        deleted = 0
        for rid, row in self.lookup(tenant, incident_ids).items():
            if row.blob != blob_name:
                continue
            try:
                self._table.delete_entity(
                    tenant, rid, etag=row.etag, match_condition=MatchConditions.IfNotModified
                )
            except (ResourceNotFoundError, ResourceModifiedError):
                continue  # deleted or rewritten by another writer since: no longer ours
            except AzureError as exc:
                raise StorageError(f"could not delete row {rid}: {type(exc).__name__}") from exc
            deleted += 1
        return deleted

    def upsert_newer(
        self,
        tenant: str,
        stored: Iterable[StoredVersion],
        ingested_at: datetime,
        known: dict[str, RowVersion] | None = None,
    ) -> int:
        """Write each version unless the table already has it or a newer one.

        Args:
            known: the caller's ``lookup`` of these ids (read here when None); updated in place
                with what this call wrote.

        Returns:
            how many rows were written.

        Raises:
            StorageError: the table could not be read or written.
            ConflictError: rows kept changing under us (another writer is very busy).
        """
        newest: dict[str, StoredVersion] = {}
        for version in stored:  # one operation per row and transaction: keep the newest
            held = newest.get(version.incident.id)
            if held is None or held.incident.last_update < version.incident.last_update:
                newest[version.incident.id] = version
        versions = list(newest.values())
        if known is None:
            known = self.lookup(tenant, newest)
        written = 0
        for start in range(0, len(versions), TRANSACTION_SIZE):
            chunk = versions[start : start + TRANSACTION_SIZE]
            written += self._write_chunk(tenant, chunk, ingested_at, known)
        return written

    def _write_chunk(
        self,
        tenant: str,
        chunk: Sequence[StoredVersion],
        ingested_at: datetime,
        known: dict[str, RowVersion],
    ) -> int:
        for _ in range(_MAX_CONFLICT_RETRIES):
            operations: list[tuple[str, dict[str, Any], str | None]] = []
            planned: list[StoredVersion] = []
            for version in chunk:
                row = known.get(version.incident.id)
                if is_stored(row, version.incident):
                    continue
                entity = _entity(tenant, version, ingested_at)
                if row is None:
                    operations.append(("create", entity, None))  # create-only
                else:
                    operations.append(("update", entity, row.etag))  # if the row is unchanged
                planned.append(version)
            if not operations:
                return 0
            try:
                etags = submit(self._table, operations)
            except Refused:
                # another writer touched one of these rows: decide the whole chunk again
                known.update(self.lookup(tenant, (v.incident.id for v in chunk)))
                continue
            for version, etag in zip(planned, etags, strict=True):
                known[version.incident.id] = _written(version, etag)
            return len(planned)
        raise ConflictError(f"rows of tenant {tenant} kept changing while being written")
