"""The storage wing: incident archive (blobs), latest-state table, watermarks and tenant locks."""

INCIDENT_CONTAINER = "defender-incidents"
STATE_CONTAINER = "defender-state"
INCIDENT_TABLE = "DefenderIncidents"
