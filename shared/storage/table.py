"""The latest-state table: one row per incident (PartitionKey tenant, RowKey incident id).

Rows hold summary columns and where the incident's full JSON lives. Writes are conditional on
the row's ETag, and a row is only replaced by a strictly newer version, so concurrent or
out-of-order writers never move an incident back in time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

from shared.clock import parse_utc
from shared.errors import ConflictError, StorageError
from shared.storage.archive import StoredVersion

_MAX_CONFLICT_RETRIES = 5


class TableLike(Protocol):
    """The part of ``azure.data.tables.TableClient`` used here."""

    def get_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> Any: ...
    def create_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any: ...
    def update_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any: ...


def _stamp(value: datetime) -> str:
    # fixed-width UTC with microseconds, so stored stamps also compare correctly as strings
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class IncidentTable:
    """Reads and conditionally writes the latest state of incidents."""

    def __init__(self, table: TableLike) -> None:
        self._table = table

    def stored_version(self, tenant: str, incident_id: str) -> datetime | None:
        """Last update time of the stored row, or None when the incident is not stored."""
        entity = self._get(tenant, incident_id)
        return None if entity is None else parse_utc(str(entity["LastUpdateTime"]))

    def upsert_newer(
        self, tenant: str, stored: Iterable[StoredVersion], ingested_at: datetime
    ) -> int:
        """Write each version unless the table already has it or a newer one.

        Returns:
            how many rows were written.

        Raises:
            StorageError: the table could not be read or written.
            ConflictError: a row kept changing under us (another writer is very busy).
        """
        written = 0
        for version in stored:
            if self._upsert_one(tenant, version, ingested_at):
                written += 1
        return written

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
        entity = {
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
