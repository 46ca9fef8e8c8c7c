"""Read back what the app stored in Azurite, for comparison with the emulator's truth."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from typing import Any

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobLeaseClient, BlobServiceClient


def archived_lines(connection_string: str, tenant: str) -> list[dict[str, Any]]:
    """Every NDJSON line stored for a tenant, across all its blobs."""
    blobs = BlobServiceClient.from_connection_string(connection_string)
    container = blobs.get_container_client("defender-incidents")
    lines: list[dict[str, Any]] = []
    for blob in container.list_blobs(name_starts_with=f"incidents/tenant={tenant}/"):
        assert blob.name.endswith(".ndjson.gz"), blob.name
        data = gzip.decompress(container.download_blob(blob.name).readall())
        lines.extend(json.loads(line) for line in data.decode("utf-8").splitlines())
    return lines


def blob_names(connection_string: str, tenant: str) -> list[str]:
    blobs = BlobServiceClient.from_connection_string(connection_string)
    container = blobs.get_container_client("defender-incidents")
    return sorted(
        b.name for b in container.list_blobs(name_starts_with=f"incidents/tenant={tenant}/")
    )


def table_rows(connection_string: str, tenant: str) -> dict[str, dict[str, Any]]:
    """The latest-state rows of a tenant, by incident id."""
    tables = TableServiceClient.from_connection_string(connection_string)
    table = tables.get_table_client("DefenderIncidents")
    rows = table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant})
    return {row["RowKey"]: dict(row) for row in rows}


def incident_key(raw: dict[str, Any]) -> tuple[str, str]:
    """(id, last update) of a raw incident of either API."""
    if "incidentId" in raw:
        return str(raw["incidentId"]), str(raw["lastUpdateTime"])
    return str(raw["id"]), str(raw["lastUpdateDateTime"])


def duplicates(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Versions stored more than once."""
    counts = Counter(incident_key(line) for line in lines)
    return [key for key, n in counts.items() if n > 1]


def break_lease(conn: str, tenant: str) -> None:
    """What the passing of a lease's duration does, without the wait: the lease lapses."""
    blob = BlobServiceClient.from_connection_string(conn).get_blob_client(
        "defender-state", f"locks/{tenant}"
    )
    try:
        BlobLeaseClient(blob).break_lease(0)
    except Exception:  # noqa: BLE001 - no lock blob or no lease yet: nothing to lapse
        return
