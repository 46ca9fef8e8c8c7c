"""Graph-only fields and enum rules layered on the one model: evolvable enums, the newer incident
and alert fields, and the seeding of the newer members.

Three things live here so that `emulator.render` stays a plain mapping:

- **Evolvable enums.** Graph hides enum members added after `unknownFutureValue` unless the
  request sends `Prefer: include-unknown-enum-members`; without it they come back as
  `unknownFutureValue` (Graph best practices, "Handling future members in evolvable
  enumerations": https://learn.microsoft.com/graph/best-practices-concept). Which members come
  after the sentinel is read from
  Microsoft's own generated models (msgraph-sdk-python 1.65.0,
  `msgraph/generated/models/security/{incident_status,service_source,detection_source,
  evidence_remediation_status}.py`); every other enum the emulator renders has none.
- **Newer incident and alert fields** (`summary`, `priorityScore`, `resolvingComment`,
  `lastModifiedBy`, `systemTags`; alert `alertPolicyId`, `categories`, `productName`, ...):
  derived from the model, deterministically, so they are stable for a seed and follow the
  incident as it changes. Values a write sets (`resolvingComment`, `lastModifiedBy`) are
  stored on the model and win over the derivation.
- **Seeding of the newer members** (`seed_extras`): a few incidents awaiting a Defender
  Experts action and a few alerts from Microsoft Sentinel and Defender for Cloud, chosen by a
  hash of their ids (the seeding RNG is not consumed, so everything else seeded stays as it
  was).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace

from emulator.model import Alert, Incident

SENTINEL = "unknownFutureValue"
# The Prefer token that asks for members after the sentinel (Graph best practices).
INCLUDE_UNKNOWN = "include-unknown-enum-members"

# Members after `unknownFutureValue`, per Graph enum (msgraph-sdk-python 1.65.0 models).
EVOLVED: Mapping[str, frozenset[str]] = {
    "incidentStatus": frozenset({"awaitingAction"}),
    "serviceSource": frozenset(
        {
            "microsoftDefenderForCloud",
            "microsoftSentinel",
            "microsoftInsiderRiskManagement",
            "microsoftThreatIntelligence",
            "microsoftSecurityForAI",
        }
    ),
    "detectionSource": frozenset(
        {
            "microsoftDefenderForCloud",
            "microsoftDefenderForIoT",
            "microsoftDefenderForServers",
            "microsoftDefenderForStorage",
            "microsoftDefenderForDNS",
            "microsoftDefenderForDatabases",
            "microsoftDefenderForContainers",
            "microsoftDefenderForNetwork",
            "microsoftDefenderForAppService",
            "microsoftDefenderForKeyVault",
            "microsoftDefenderForResourceManager",
            "microsoftDefenderForApiManagement",
            "nrtAlerts",
            "scheduledAlerts",
            "microsoftDefenderThreatIntelligenceAnalytics",
            "builtInMl",
            "microsoftInsiderRiskManagement",
            "microsoftThreatIntelligence",
            "microsoftDefenderForAIServices",
            "securityCopilot",
            "microsoftSentinel",
        }
    ),
    "evidenceRemediationStatus": frozenset(
        {"active", "pendingApproval", "declined", "unremediated", "running", "partiallyRemediated"}
    ),
}


def wants_unknown_members(prefer_headers: Sequence[str]) -> bool:
    """True when a `Prefer` header asks for `include-unknown-enum-members` (preferences are
    comma-separated, names case-insensitive: RFC 7240)."""
    for header in prefer_headers:
        for preference in header.split(","):
            if preference.split(";")[0].strip().lower() == INCLUDE_UNKNOWN:
                return True
    return False


def evolvable(enum: str, value: str | None, include_unknown: bool) -> str | None:
    """`value` as Graph sends it: a member added after the sentinel becomes the sentinel
    unless the caller asked for such members."""
    if value is None or include_unknown or value not in EVOLVED.get(enum, frozenset()):
        return value
    return SENTINEL


def _number(*parts: object) -> int:
    """A stable pseudo-random number from `parts` (not Python's salted `hash`)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


# ----------------------------------------------------------------------------- incidents

_SEVERITY_BASE = {"High": 62, "Medium": 34, "Low": 12, "Informational": 2, "UnSpecified": 0}


def priority_score(incident: Incident) -> int | None:
    """`priorityScore`: 0-100, > 85 top priority (security-incident.md). Null for an incident
    merged into another (it has no alerts left to score; Graph documents null as "pending or
    not available")."""
    if incident.status == "Redirected" or not incident.alerts:
        return None
    score = _SEVERITY_BASE.get(incident.severity, 0) + _number(incident.incident_id) % 20
    categories = {a.category for a in incident.alerts}
    if "Impact" in categories or "CredentialAccess" in categories:
        score += 12  # ransomware and credential theft weigh most in the documented factors
    score += 3 * (len(incident.alerts) - 1)
    return max(0, min(100, score))


def _assets(incident: Incident) -> list[str]:
    hosts = sorted({d.device_dns_name.split(".")[0] for a in incident.alerts for d in a.devices})
    users = sorted(
        {
            str(e.values.get("userPrincipalName"))
            for a in incident.alerts
            for e in a.entities
            if e.values.get("userPrincipalName")
        }
    )
    return hosts + users


def summary(incident: Incident) -> str | None:
    """`summary`: "the overview of an attack ... what occurred, impacted assets, and the type
    of attack", when applicable (security-incident.md): null without alerts."""
    alerts = incident.alerts
    if not alerts:
        return None
    first = min(a.first_activity for a in alerts)
    categories = sorted({a.category for a in alerts})
    assets = _assets(incident)
    impacted = ", ".join(assets[:4]) + (f" and {len(assets) - 4} more" if len(assets) > 4 else "")
    techniques = sorted({t for a in alerts for t in a.mitre_techniques})
    text = (
        f"Starting {first:%Y-%m-%d %H:%M} UTC, {len(alerts)} alert(s) showed "
        f"{', '.join(categories)} activity"
    )
    if impacted:
        text += f" affecting {impacted}"
    text += "."
    if techniques:
        text += f" Techniques observed: {', '.join(techniques)}."
    return text


_RESOLUTIONS = {
    "MultiStagedAttack": "Attack chain contained; affected devices isolated and reimaged.",
    "MaliciousUserActivity": "Insider activity confirmed; account disabled and HR informed.",
    "CompromisedUser": "Account compromise confirmed; password reset and sessions revoked.",
    "Malware": "Malware removed by AV; full scan clean.",
    "Phishing": "Phishing campaign purged from mailboxes; sender blocked.",
    "UnwantedSoftware": "Unwanted software uninstalled.",
    "SecurityTesting": "Authorised red-team exercise.",
    "LineOfBusinessApplication": "Known line-of-business application behaviour.",
    "ConfirmedUserActivity": "Confirmed with the user: expected activity.",
    "Clean": "Benign: no malicious activity found.",
    "InsufficientData": "Closed: not enough data to validate.",
}


def resolving_comment(incident: Incident) -> str | None:
    """`resolvingComment`: what the resolver wrote; null until someone resolves with one."""
    return incident.resolving_comment


def seeded_resolving_comment(incident: Incident) -> str | None:
    """The comment an analyst left when the seeded history resolved an incident."""
    if incident.status != "Resolved":
        return None
    return _RESOLUTIONS.get(incident.determination, "Resolved after investigation.")


def last_modified_by(incident: Incident) -> str | None:
    """`lastModifiedBy`: "the identity that last modified the incident": the writer of the
    last API change, else the author of the last comment, else the assignee; null for an
    incident nobody has touched yet (emulator choice; Graph documents no value for that)."""
    if incident.last_modified_by is not None:
        return incident.last_modified_by
    if incident.comments:
        return incident.comments[-1].created_by
    return incident.assigned_to


def system_tags(incident: Incident) -> list[str]:
    """`systemTags` (read-only, e.g. "Defender Experts", security-incident-update.md example):
    the stored ones plus what the incident's content implies."""
    tags = set(incident.system_tags)
    if incident.status == "AwaitingAction":
        tags.add("Defender Experts")
    if any(a.category == "Impact" for a in incident.alerts):
        tags.add("Ransomware")
    phish = ("OfficeATP", "InitialAccess")
    if any((a.service_source, a.category) == phish for a in incident.alerts):
        tags.add("Credential Phish")
    return sorted(tags)


# ----------------------------------------------------------------------------- alerts

_PRODUCT_NAMES = {
    "MicrosoftDefenderForEndpoint": "Microsoft Defender for Endpoint",
    "MicrosoftDefenderATP": "Microsoft Defender for Endpoint",
    "OfficeATP": "Microsoft Defender for Office 365",
    "MicrosoftCloudAppSecurity": "Microsoft Defender for Cloud Apps",
    "AzureATP": "Microsoft Defender for Identity",
    "AzureAdIdentityProtection": "Microsoft Entra ID Protection",
    "Microsoft365Defender": "Microsoft Defender XDR",
    "MicrosoftSentinel": "Microsoft Sentinel",
    "MicrosoftDefenderForCloud": "Microsoft Defender for Cloud",
}
# Sources whose alerts come from a named policy or rule (alertPolicyId: "populated when there
# is a specific policy that generated the alert", security-alert.md).
_POLICY_SOURCES = frozenset({"OfficeATP", "MicrosoftCloudAppSecurity", "MicrosoftSentinel"})


def product_name(alert: Alert) -> str | None:
    """`productName`: the product that published the alert."""
    return _PRODUCT_NAMES.get(alert.service_source)


def alert_policy_id(alert: Alert) -> str | None:
    """`alertPolicyId`: one stable id per (source, alert title) policy; null for detections
    that no policy generated (endpoint, identity, cloud workload detections)."""
    if alert.service_source not in _POLICY_SOURCES:
        return None
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"policy:{alert.service_source}:{alert.title}"))


def remediation_status(alert: Alert) -> str:
    """Evidence `remediationStatus`, from the alert's automated investigation."""
    return {
        "SuccessfullyRemediated": "remediated",
        "PartiallyRemediated": "partiallyRemediated",
        "PendingApproval": "pendingApproval",
        "Running": "running",
    }.get(alert.investigation_state, "none")


# ----------------------------------------------------------------------------- seeding


def _to_sentinel(alert: Alert) -> Alert:
    # A Microsoft Sentinel scheduled analytics rule raising the same detection.
    return replace(alert, service_source="MicrosoftSentinel", detection_source="ScheduledAlerts")


def _to_defender_for_cloud(alert: Alert) -> Alert:
    # Defender for Servers (a Defender for Cloud plan) reporting on a server it protects.
    return replace(
        alert,
        service_source="MicrosoftDefenderForCloud",
        detection_source="MicrosoftDefenderForServers",
        investigation_id=None,
        investigation_state="UnsupportedAlertType",
    )


def _is_server_alert(alert: Alert) -> bool:
    return any(d.os_platform.startswith("WindowsServer") for d in alert.devices)


def seed_extras(incidents: Sequence[Incident]) -> list[Incident]:
    """Give seeded incidents what only newer Graph shows: about 1 in 12 active incidents
    awaiting a Defender Experts action (`awaitingAction`), about 1 in 8 cloud-app alerts raised
    by a Sentinel rule, about 1 in 3 server alerts raised by Defender for Cloud, and the
    resolving comment and last modifier of incidents the seeded history resolved. Every tenant
    with an active incident gets at least one awaiting action, and every tenant with a
    cloud-app alert at least one Sentinel alert, so the members are always visible."""
    out: list[Incident] = []
    for incident in incidents:
        alerts = tuple(
            _to_defender_for_cloud(a)
            if _is_server_alert(a) and _number(a.alert_id, "mdc") % 3 == 0
            else _to_sentinel(a)
            if a.service_source == "MicrosoftCloudAppSecurity" and _number(a.alert_id) % 8 == 0
            else a
            for a in incident.alerts
        )
        status = incident.status
        if status == "Active" and _number(incident.incident_id, "dex") % 12 == 0:
            status = "AwaitingAction"
        out.append(
            replace(
                incident,
                alerts=alerts,
                status=status,
                resolving_comment=seeded_resolving_comment(incident),
                last_modified_by=incident.assigned_to if incident.status == "Resolved" else None,
            )
        )
    if not any(i.status == "AwaitingAction" for i in out):
        active = next((n for n, i in enumerate(out) if i.status == "Active"), None)
        if active is not None:
            out[active] = replace(out[active], status="AwaitingAction")
    if not any(a.service_source == "MicrosoftSentinel" for i in out for a in i.alerts):
        for index, incident in enumerate(out):
            cloud = [a for a in incident.alerts if a.service_source == "MicrosoftCloudAppSecurity"]
            if cloud:
                alerts = tuple(_to_sentinel(a) if a is cloud[0] else a for a in incident.alerts)
                out[index] = replace(incident, alerts=alerts)
                break
    return out
