"""Validation and application of incident updates (legacy PATCH, Graph PATCH, Graph comments).

Pure: takes the current `Incident` and a parsed JSON body, returns the new `Incident` or raises
`UpdateError` with a message for a 400. Contract: the legacy PATCH (status, assignedTo,
classification, determination, tags, comment; case-sensitive names; `comment` appends:
https://learn.microsoft.com/defender-xdr/api-update-incidents) and the Graph PATCH (camelCase
values, `customTags`: https://learn.microsoft.com/graph/api/security-incident-update).

Determinations: the legacy API documents two spellings (the PATCH page's and the incident
resource page's); both are accepted there and the resource-page names are stored (the model's
names). Graph accepts only today's schema names (msgraph-sdk-python `alert_determination.py`):
the four older names are refused like any value that is not a member of the
enum, and what it accepts is stored so that it renders back exactly as sent
(`emulator.render.DETERMINATION_TO_GRAPH` is the one mapping both ways).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from emulator import render
from emulator.model import Comment, Incident
from emulator.render import DETERMINATION_FROM_GRAPH, GRAPH_DETERMINATIONS

LEGACY_STATUSES = ("Active", "Resolved", "InProgress", "Redirected")
LEGACY_CLASSIFICATIONS = ("TruePositive", "InformationalExpectedActivity", "FalsePositive")

# Documented determinations per classification, PATCH-page spellings plus the
# resource-page spellings; "Other" fits every classification.
_BY_CLASSIFICATION: Mapping[str, frozenset[str]] = {
    "TruePositive": frozenset(
        {
            "MultiStagedAttack",
            "MaliciousUserActivity",
            "CompromisedAccount",
            "CompromisedUser",
            "Malware",
            "Phishing",
            "UnwantedSoftware",
            "Other",
        }
    ),
    "InformationalExpectedActivity": frozenset(
        {
            "SecurityTesting",
            "LineOfBusinessApplication",
            "ConfirmedActivity",
            "ConfirmedUserActivity",
            "Other",
        }
    ),
    "FalsePositive": frozenset(
        {
            "Clean",
            "NoEnoughDataToValidate",
            "NotEnoughDataToValidate",
            "InsufficientData",
            "NotMalicious",
            "Other",
        }
    ),
}
# PATCH-page (and Graph PATCH-page) spellings -> the resource-page names that are stored.
_CANONICAL = {
    "CompromisedAccount": "CompromisedUser",
    "ConfirmedActivity": "ConfirmedUserActivity",
    "NoEnoughDataToValidate": "InsufficientData",
    "NotEnoughDataToValidate": "InsufficientData",
    "NotMalicious": "Clean",
}
# Graph status/classification values accepted by PATCH (the incident resource's enums).
_GRAPH_STATUSES = ("active", "resolved", "inProgress", "redirected")
_GRAPH_CLASSIFICATIONS = (
    "unknown",
    "truePositive",
    "informationalExpectedActivity",
    "falsePositive",
)
# Members of the Graph enums that exist but a PATCH cannot set, and why.
_NOT_SETTABLE = {
    "unknownFutureValue": "is the evolvable-enum sentinel and cannot be set",
    "awaitingAction": "can only be set by Microsoft Defender Experts (security-incident.md)",
}
# Graph's schema also has apt and securityPersonnel, which describe true positives
# (security-alert.md, alertDetermination values); the legacy PATCH page dropped them.
_GRAPH_EXTRA = {"TruePositive": frozenset({"Apt", "SecurityPersonnel"})}


class UpdateError(ValueError):
    """The update body is invalid; the message is returned to the caller."""


def _pascal(value: str) -> str:
    return value[:1].upper() + value[1:]


def _stamp(incident: Incident, now: datetime) -> datetime:
    # lastUpdateTime must move forward even if the injected clock stands still.
    previous = incident.last_update_time
    return now if now > previous else previous + timedelta(milliseconds=1)


def _string(body: Mapping[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise UpdateError(f"'{key}' must be a string")
    return value


def _tags(body: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = body[key]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise UpdateError(f"'{key}' must be a list of strings")
    return tuple(value)


def _verdict(
    incident: Incident,
    classification: str | None,
    determination: str | None,
    extra: Mapping[str, frozenset[str]] | None = None,
    *,
    graph: bool = False,
) -> tuple[str, str]:
    """New (classification, determination), checked against the documented pairs; messages
    name the values as the caller's surface spells them (`graph`: Graph's names)."""

    def shown(value: str) -> str:
        return (render.graph_determination(value) or value) if graph else value

    def shown_class(value: str) -> str:
        return (render.graph_enum(value) or value) if graph else value

    new_class = classification or incident.classification
    pairs = {k: v | (extra or {}).get(k, frozenset()) for k, v in _BY_CLASSIFICATION.items()}
    if determination is None:
        keep = incident.determination
        if classification is not None and keep not in pairs.get(new_class, ()):
            keep = "NotAvailable"
        return new_class, keep
    if determination == "NotAvailable":
        return new_class, determination
    allowed = pairs.get(new_class)
    if allowed is None:
        classes = ", ".join(shown_class(c) for c in _BY_CLASSIFICATION)
        raise UpdateError(
            f"determination '{shown(determination)}' needs a classification ({classes})"
        )
    if determination not in allowed:
        # Graph: one name per member; legacy: every accepted spelling.
        valid = sorted({shown(_CANONICAL.get(d, d)) for d in allowed} if graph else allowed)
        raise UpdateError(
            f"determination '{shown(determination)}' is not valid with classification "
            f"'{shown_class(new_class)}' (valid: {', '.join(valid)})"
        )
    return new_class, _CANONICAL.get(determination, determination)


def _resolve_alerts(incident: Incident, at: datetime) -> Incident:
    """Resolving an incident resolves its alerts (as the portal does)."""
    alerts = tuple(
        a
        if a.status == "Resolved"
        else replace(a, status="Resolved", resolved_time=at, last_updated_time=at)
        for a in incident.alerts
    )
    return replace(incident, alerts=alerts)


def apply_legacy_patch(incident: Incident, body: Any, author: str, now: datetime) -> Incident:
    """`PATCH /api/incidents/{id}` semantics.

    Raises:
        UpdateError: unknown property (names are case-sensitive), wrong type or value.
    """
    if not isinstance(body, Mapping) or not body:
        raise UpdateError("the body must be a non-empty JSON object")
    allowed = {"status", "assignedTo", "classification", "determination", "tags", "comment"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise UpdateError(
            f"unknown or read-only property {', '.join(repr(u) for u in unknown)} "
            f"(updatable, case-sensitive: {', '.join(sorted(allowed))})"
        )
    at = _stamp(incident, now)
    changes: dict[str, Any] = {}
    if "status" in body:
        status = _string(body, "status")
        if status not in LEGACY_STATUSES:
            raise UpdateError(f"status '{status}' is not one of {', '.join(LEGACY_STATUSES)}")
        changes["status"] = status
    if "assignedTo" in body:
        value = body["assignedTo"]
        if value is not None and not isinstance(value, str):
            raise UpdateError("'assignedTo' must be a string or null")
        changes["assigned_to"] = value or None  # "" unassigns, as clients send it
    classification = None
    if "classification" in body:
        classification = _string(body, "classification")
        if classification not in LEGACY_CLASSIFICATIONS:
            raise UpdateError(
                f"classification '{classification}' is not one of "
                f"{', '.join(LEGACY_CLASSIFICATIONS)}"
            )
    determination = _string(body, "determination") if "determination" in body else None
    if classification is not None or determination is not None:
        changes["classification"], changes["determination"] = _verdict(
            incident, classification, determination
        )
    if "tags" in body:
        changes["tags"] = _tags(body, "tags")
    if "comment" in body:
        text = _string(body, "comment")
        if not text.strip():
            raise UpdateError("'comment' must not be empty")
        changes["comments"] = (*incident.comments, Comment(text, author, at))
    updated = replace(incident, last_update_time=at, last_modified_by=author, **changes)
    if changes.get("status") == "Resolved" and incident.status != "Resolved":
        updated = _resolve_alerts(updated, at)
    return updated


def _graph_enum(body: Mapping[str, Any], key: str, values: tuple[str, ...]) -> str:
    """The member of a Graph enum that `body[key]` names (case-insensitively, as the emulator
    has always accepted the docs' PascalCase examples).

    A value that is no member is refused with the .NET enum-parse wording Graph's OData stack
    surfaces ("Requested value '...' was not found."; UNCERTAIN: no primary source shows the
    exact text for these properties, see emulator/README.md).
    """
    raw = _string(body, key)
    for value in values:
        if value.lower() == raw.lower():
            return value
    for member, why in _NOT_SETTABLE.items():
        if member.lower() == raw.lower():
            raise UpdateError(f"'{member}' {why}.")
    raise UpdateError(f"Requested value '{raw}' was not found.")


def apply_graph_patch(incident: Incident, body: Any, author: str, now: datetime) -> Incident:
    """`PATCH /security/incidents/{id}` semantics, made by `author` (`lastModifiedBy`).

    Raises:
        UpdateError: unknown property, wrong type or value.
    """
    if not isinstance(body, Mapping) or not body:
        raise UpdateError("the body must be a non-empty JSON object")
    allowed = {
        "assignedTo",
        "classification",
        "determination",
        "status",
        "customTags",
        "description",
        "resolvingComment",
        "@odata.type",
    }
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise UpdateError(
            f"property {', '.join(repr(u) for u in unknown)} does not exist on type "
            "'microsoft.graph.security.incident' or cannot be updated"
        )
    at = _stamp(incident, now)
    changes: dict[str, Any] = {}
    if "status" in body:
        changes["status"] = _pascal(_graph_enum(body, "status", _GRAPH_STATUSES))
    if "assignedTo" in body:
        value = body["assignedTo"]
        if value is not None and not isinstance(value, str):
            raise UpdateError("'assignedTo' must be a string or null")
        changes["assigned_to"] = value or None
    if "description" in body:
        changes["description"] = _string(body, "description")
    if "resolvingComment" in body:
        # "User input that explains the resolution" (msgraph-sdk-python incident.py): free text.
        value = body["resolvingComment"]
        if value is not None and not isinstance(value, str):
            raise UpdateError("'resolvingComment' must be a string or null")
        changes["resolving_comment"] = value
    if "customTags" in body:
        changes["tags"] = _tags(body, "customTags")
    classification = None
    if "classification" in body:
        value = _graph_enum(body, "classification", _GRAPH_CLASSIFICATIONS)
        classification = _pascal(value)
    determination = None
    if "determination" in body:
        value = _graph_enum(body, "determination", GRAPH_DETERMINATIONS)
        determination = DETERMINATION_FROM_GRAPH.get(value) or _pascal(value)
    if classification == "Unknown":
        changes["classification"], changes["determination"] = "Unknown", "NotAvailable"
    elif classification is not None or determination is not None:
        changes["classification"], changes["determination"] = _verdict(
            incident, classification, determination, _GRAPH_EXTRA, graph=True
        )
    updated = replace(incident, last_update_time=at, last_modified_by=author, **changes)
    if changes.get("status") == "Resolved" and incident.status != "Resolved":
        updated = _resolve_alerts(updated, at)
    return updated


def add_comment(incident: Incident, body: Any, author: str, now: datetime) -> Incident:
    """`POST /security/incidents/{id}/comments`: append one alertComment
    (https://learn.microsoft.com/graph/api/security-incident-post-comments).

    Raises:
        UpdateError: the body has no non-empty `comment` string.
    """
    if not isinstance(body, Mapping):
        raise UpdateError("the body must be a JSON object")
    unknown = sorted(set(body) - {"comment", "@odata.type"})
    if unknown:
        raise UpdateError(f"unknown property {', '.join(repr(u) for u in unknown)}")
    if "comment" not in body:
        raise UpdateError("'comment' is required")
    text = _string(body, "comment")
    if not text.strip():
        raise UpdateError("'comment' must not be empty")
    at = _stamp(incident, now)
    return replace(
        incident,
        comments=(*incident.comments, Comment(text, author, at)),
        last_update_time=at,
        last_modified_by=author,
    )
