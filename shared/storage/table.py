"""The latest-state table: one row per incident (PartitionKey tenant, RowKey incident id).

Rows hold summary columns (including those a SOC filters on: status, severity, assignment,
``PriorityScore``, ``SystemTags``) and where the incident's full JSON lives. A row is only
replaced by a strictly newer version, and every write is conditional (create-only for a new
row, the row's ETag for a known one), so concurrent or out-of-order writers never move an
incident back in time. A merged incident (status redirected, ``redirectIncidentId``) keeps the id
of the incident it was merged into in ``RedirectIncidentId``.

Volume: ``lookup`` reads only the rows of the ids at hand (one query per 50 ids), so memory is
bounded by the slice, not the window; writes go in entity-group transactions of up to 100 rows
(https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions),
mixing creates and conditional updates. A transaction refused on a condition (another writer
touched a row) is decided again as a whole from a fresh lookup of its rows: never row by row.

Versions: ``Version`` keeps the API's own last-update text (all 7 digits), which identifies a
version exactly; ``LastUpdateTime`` is the (possibly clamped, see ``shared.ingest``) time used to
order versions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from shared.clock import parse_utc
from shared.defender.model import Incident
from shared.errors import ConflictError, StorageError
from shared.storage.archive import StoredVersion

_MAX_CONFLICT_RETRIES = 5
#: the service's limit on operations in one entity-group transaction
TRANSACTION_SIZE = 100
#: ids per lookup query (a filter of ``RowKey eq`` terms; well under the URL limits)
LOOKUP_BATCH = 50


class TableLike(Protocol):
    """The part of ``azure.data.tables.TableClient`` used here."""

    def get_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> Any: ...
    def create_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any: ...
    def update_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any: ...
    def query_entities(self, query_filter: str, **kwargs: Any) -> Iterable[Any]: ...
    def submit_transaction(self, operations: Any, **kwargs: Any) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class RowVersion:
    """What the table holds for one incident: its last update time, the API's text of it
    (``version``, "" on rows written before it was kept) and the row's ETag."""

    last_update: datetime
    etag: str
    version: str = ""


def version_text(incident: Incident) -> str:
    """The API's own last-update text of a version (exact, 7 digits)."""
    key = "lastUpdateTime" if incident.api == "legacy" else "lastUpdateDateTime"
    return str(incident.raw.get(key) or "")


def is_stored(row: RowVersion | None, incident: Incident) -> bool:
    """Whether the table already has this version or a newer one."""
    if row is None:
        return False
    if row.version and row.version == version_text(incident):
        return True
    return row.last_update >= incident.last_update


def _stamp(value: datetime) -> str:
    # fixed-width UTC with microseconds, so stored stamps also compare correctly as strings
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_list(value: Any) -> str:
    return json.dumps([str(v) for v in value] if isinstance(value, list) else [])


def _soc_columns(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Columns of the newer Graph fields a SOC filters on (defender-api.md 0.1.6)."""
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


class IncidentTable:
    """Reads and conditionally writes the latest state of incidents."""

    def __init__(self, table: TableLike) -> None:
        self._table = table

    def stored_version(self, tenant: str, incident_id: str) -> datetime | None:
        """Last update time of the stored row, or None when the incident is not stored."""
        entity = self._get(tenant, incident_id)
        return None if entity is None else parse_utc(str(entity["LastUpdateTime"]))

    def lookup(self, tenant: str, incident_ids: Iterable[str]) -> dict[str, RowVersion]:
        """The rows of these incidents that exist (one query per ``LOOKUP_BATCH`` ids).

        Raises:
            StorageError: the query failed.
        """
        ids = sorted(set(incident_ids))
        found: dict[str, RowVersion] = {}
        for start in range(0, len(ids), LOOKUP_BATCH):
            batch = ids[start : start + LOOKUP_BATCH]
            terms = " or ".join(f"RowKey eq @r{n}" for n in range(len(batch)))
            parameters: dict[str, Any] = {f"r{n}": rid for n, rid in enumerate(batch)}
            parameters["tenant"] = tenant
            try:
                # the SDK substitutes @names split on spaces: keep the parentheses apart
                rows = list(
                    self._table.query_entities(
                        f"PartitionKey eq @tenant and ( {terms} )",
                        parameters=parameters,
                        select=["RowKey", "LastUpdateTime", "Version"],
                    )
                )
            except AzureError as exc:
                raise StorageError(
                    f"could not query the incident table: {type(exc).__name__}"
                ) from exc
            for row in rows:
                try:
                    found[str(row["RowKey"])] = RowVersion(
                        parse_utc(str(row["LastUpdateTime"])),
                        str(row.metadata["etag"]),
                        str(row.get("Version") or ""),
                    )
                except (KeyError, ValueError) as exc:
                    raise StorageError(
                        f"row {row.get('RowKey')} of tenant {tenant} in the incident table is "
                        "corrupt (no valid LastUpdateTime); delete it to have it stored again"
                    ) from exc
        return found

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
            operations: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
            planned: list[StoredVersion] = []
            for version in chunk:
                row = known.get(version.incident.id)
                if is_stored(row, version.incident):
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
                # another writer touched one of these rows: decide the whole chunk again
                known.update(self.lookup(tenant, (v.incident.id for v in chunk)))
                continue
            except AzureError as exc:
                raise StorageError(f"could not write incident rows: {type(exc).__name__}") from exc
            for version, result in zip(planned, results, strict=True):
                etag = result.get("etag") if isinstance(result, dict) else None
                incident = version.incident
                known[incident.id] = RowVersion(
                    incident.last_update, str(etag or ""), version_text(incident)
                )
            return len(planned)
        raise ConflictError(f"rows of tenant {tenant} kept changing while being written")

    def _get(self, tenant: str, incident_id: str) -> Any:
        try:
            return self._table.get_entity(tenant, incident_id)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StorageError(
                f"could not read table row {incident_id}: {type(exc).__name__}"
            ) from exc
