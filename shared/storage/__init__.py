"""The storage wing: the incident archive (blobs), the latest-state table and its transactions,
checkpoints, the write-ahead journal and tenant leases (``state``), and queues (``queue``).

Layout and why: docs/ingestion.md#storage-layout.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

INCIDENT_CONTAINER = "defender-incidents"
STATE_CONTAINER = "defender-state"
INCIDENT_TABLE = "DefenderIncidents"


def create_container_if_not_exists(container: ContainerClient) -> None:
    """Create the blob container unless it is there already: the blob counterpart of the
    table SDK's ``create_table_if_not_exists``. Other Azure errors propagate, for the caller to
    translate."""
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        container.create_container()
