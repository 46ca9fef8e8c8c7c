"""The storage wing: the incident archive (blobs), the latest-state table and its transactions,
checkpoints, the write-ahead journal and tenant leases (``state``), and queues (``queue``);
their records, queue names and pure rules in ``values`` (no SDK).

Layout and why: docs/ingestion.md#storage-layout.
"""

from __future__ import annotations

INCIDENT_CONTAINER = "defender-incidents"
STATE_CONTAINER = "defender-state"
INCIDENT_TABLE = "DefenderIncidents"
