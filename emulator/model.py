"""The emulator's one internal incident model; legacy and Graph shapes are renderings of it.

Field names and enum values follow the legacy Defender XDR API (PascalCase enums), because that
is the richer of the two documented shapes; `emulator.render` maps them to Graph
(camelCase enums, renamed fields), comparing the two resources
(https://learn.microsoft.com/defender-xdr/api-incident,
https://learn.microsoft.com/graph/api/resources/security-incident).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock: the real time, timezone-aware UTC."""
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """Render a DateTimeOffset the way the APIs do: UTC, 7 fractional digits, `Z`.

    The legacy API shows up to 7 digits (`2020-09-06T14:46:57.0733333Z` in the example of
    https://learn.microsoft.com/defender-xdr/api-list-incidents);
    Python keeps microseconds, so the 7th digit is always 0 and the value round-trips exactly.
    """
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond:06d}0Z"


def format_optional_time(value: datetime | None) -> str | None:
    """`format_time`, passing None through (nullable DateTimeOffset fields)."""
    return None if value is None else format_time(value)


@dataclass(frozen=True, slots=True)
class Comment:
    """An incident or alert comment (`comments[]`)."""

    comment: str
    created_by: str
    created_time: datetime


@dataclass(frozen=True, slots=True)
class Device:
    """A device attached to an alert (legacy `devices[]`, Graph `deviceEvidence`)."""

    mdatp_device_id: str
    aad_device_id: str | None
    device_dns_name: str
    os_platform: str
    version: str
    os_processor: str
    os_build: int
    health_status: str
    risk_score: str
    rbac_group_name: str
    rbac_group_id: int
    first_seen: datetime
    tags: tuple[str, ...] = ()
    defender_av_status: str = "Updated"
    onboarding_status: str = "Onboarded"
    ip_address: str | None = None
    logged_on_user: str | None = None


# Every key of a legacy entity; the API sends all of them, null where they do not apply
# (the entity table and examples of https://learn.microsoft.com/defender-xdr/api-list-incidents).
ENTITY_KEYS: tuple[str, ...] = (
    "entityType",
    "sha1",
    "sha256",
    "fileName",
    "filePath",
    "processId",
    "processCommandLine",
    "processCreationTime",
    "parentProcessId",
    "parentProcessCreationTime",
    "ipAddress",
    "url",
    "accountName",
    "domainName",
    "userSid",
    "aadUserId",
    "userPrincipalName",
    "mailboxDisplayName",
    "mailboxAddress",
    "clusterBy",
    "sender",
    "recipient",
    "subject",
    "deliveryAction",
    "securityGroupId",
    "securityGroupName",
    "registryHive",
    "registryKey",
    "registryValueType",
    "registryValue",
    "deviceId",
)


@dataclass(frozen=True, slots=True)
class Entity:
    """An alert entity: its type plus the legacy keys that apply to it (times already rendered)."""

    entity_type: str
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert; `incident_id` changes when its incident is merged into another."""

    alert_id: str
    provider_alert_id: str
    incident_id: int
    service_source: str
    creation_time: datetime
    last_updated_time: datetime
    resolved_time: datetime | None
    first_activity: datetime
    last_activity: datetime
    title: str
    description: str
    category: str
    status: str
    severity: str
    investigation_id: int | None
    investigation_state: str
    classification: str | None
    determination: str | None
    detection_source: str
    detector_id: str
    assigned_to: str | None
    actor_name: str | None
    threat_family_name: str | None
    mitre_techniques: tuple[str, ...]
    devices: tuple[Device, ...]
    entities: tuple[Entity, ...]
    recommended_actions: str = ""
    comments: tuple[Comment, ...] = ()


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident with its alerts (always embedded in the model; Graph expands on request)."""

    incident_id: int
    incident_name: str
    created_time: datetime
    last_update_time: datetime
    status: str
    severity: str
    classification: str = "Unknown"
    determination: str = "NotAvailable"
    assigned_to: str | None = None
    redirect_incident_id: int | None = None
    detection_source: str | None = None
    description: str = ""
    tags: tuple[str, ...] = ()
    system_tags: tuple[str, ...] = ()
    comments: tuple[Comment, ...] = ()
    alerts: tuple[Alert, ...] = field(default=())
    # Graph-only fields that a write sets (the newer fields of
    # https://learn.microsoft.com/graph/api/resources/security-incident). `None` means "not
    # set": `emulator.fields` then derives what Graph shows (or null).
    resolving_comment: str | None = None
    last_modified_by: str | None = None
