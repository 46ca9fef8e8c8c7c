"""The documented value sets of incident fields, and how each API surface spells them. Pure.

Callers (CLI, HTTP API) may write a value in any case and with either of the spellings Microsoft
documents; ``canonical_*`` turns it into one canonical name (Graph's camelCase schema enum) or
raises ``ConfigError`` listing what is allowed, and ``for_api`` gives the spelling one surface
expects on the wire.

Determinations: the canonical names are those of today's Graph schema (``compromisedAccount``,
``notMalicious``, ``notEnoughDataToValidate``, ``confirmedActivity``: msgraph-sdk-python
``models/security/alert_determination.py``; docs/defender-service.md#determination-values). The
older names (``compromisedUser``, ``clean``, ``insufficientData``, ``confirmedUserActivity``)
are gone from the schema; they are still accepted from users and from stored data and mapped
(``current_determination``), never sent to Graph.

Sources:

- legacy update: https://learn.microsoft.com/defender-xdr/api-update-incidents (status, and the
  determinations allowed per classification: ``CompromisedAccount``, ``ConfirmedActivity``,
  ``NoEnoughDataToValidate`` ...)
- legacy resource: https://learn.microsoft.com/defender-xdr/api-incident (``CompromisedUser``,
  ``ConfirmedUserActivity``, ``InsufficientData``: the same values under other names)
- Graph: https://learn.microsoft.com/graph/api/resources/security-incident (camelCase enums),
  https://learn.microsoft.com/graph/api/resources/security-alert (the ``alertDetermination``
  table) and the schema as generated into msgraph-sdk-python
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from shared.core.errors import ConfigError

if TYPE_CHECKING:  # the model imports this module to map determinations it reads
    from shared.core.surfaces import ApiKind

#: incident statuses a caller may filter on or set (``awaitingAction`` is read-only on Graph)
STATUSES = ("active", "inProgress", "resolved", "redirected")
#: statuses accepted as filters (reads may also show ``awaitingAction``)
FILTER_STATUSES = (*STATUSES, "awaitingAction")
#: incident severities; the legacy API spells ``unknown`` as ``UnSpecified``
SEVERITIES = ("unknown", "informational", "low", "medium", "high")
#: classifications a caller may set
CLASSIFICATIONS = ("truePositive", "informationalExpectedActivity", "falsePositive")

#: determinations allowed for each classification (legacy update page), canonical names
DETERMINATIONS_BY_CLASSIFICATION: Mapping[str, tuple[str, ...]] = {
    "truePositive": (
        "multiStagedAttack",
        "maliciousUserActivity",
        "compromisedAccount",
        "malware",
        "phishing",
        "unwantedSoftware",
        "other",
    ),
    "informationalExpectedActivity": (
        "securityTesting",
        "lineOfBusinessApplication",
        "confirmedActivity",
        "other",
    ),
    "falsePositive": ("notMalicious", "notEnoughDataToValidate", "other"),
}
DETERMINATIONS = tuple(
    dict.fromkeys(d for ds in DETERMINATIONS_BY_CLASSIFICATION.values() for d in ds)
)
#: every member of Graph's ``alertDetermination`` today
#: (docs/defender-service.md#determination-values); reads may show the ones a caller cannot set
#: (``unknown``, ``apt``, ...)
_ALL_DETERMINATIONS = (
    "unknown",
    "apt",
    "malware",
    "securityPersonnel",
    "securityTesting",
    "unwantedSoftware",
    "other",
    "multiStagedAttack",
    "compromisedAccount",
    "phishing",
    "maliciousUserActivity",
    "notMalicious",
    "notEnoughDataToValidate",
    "confirmedActivity",
    "lineOfBusinessApplication",
    "unknownFutureValue",
)

#: older or other documented spellings (compared by ``_key``) → today's schema names
_DETERMINATION_SYNONYMS: Mapping[str, str] = {
    "compromiseduser": "compromisedAccount",
    "confirmeduseractivity": "confirmedActivity",
    "insufficientdata": "notEnoughDataToValidate",
    "noenoughdatatovalidate": "notEnoughDataToValidate",  # the legacy update page's spelling
    "clean": "notMalicious",
}

#: the legacy update endpoint's spelling of the values whose names differ (its PATCH page; the
#: legacy API keeps the older "Clean" for a false positive that is not malicious)
_LEGACY_DETERMINATION: Mapping[str, str] = {
    "notEnoughDataToValidate": "NoEnoughDataToValidate",
    "notMalicious": "Clean",
}


def _key(value: str) -> str:
    """Compare case-insensitively, ignoring separators (``in-progress`` = ``InProgress``)."""
    return "".join(ch for ch in value.lower() if ch.isalnum())


#: today's determination names by ``_key`` (the first of a key wins): every incident read
#: maps its determination, so the names are keyed once here, not on every read
_DETERMINATION_BY_KEY: Mapping[str, str] = {_key(d): d for d in reversed(_ALL_DETERMINATIONS)}
#: the names that map to themselves: what a read nearly always holds, answered without a key
_SETTLED_DETERMINATIONS = frozenset(
    d
    for d in _ALL_DETERMINATIONS
    if _key(d) not in _DETERMINATION_SYNONYMS and _DETERMINATION_BY_KEY[_key(d)] == d
)


def _pick(name: str, value: str, allowed: Iterable[str], synonyms: Mapping[str, str]) -> str:
    options = tuple(allowed)
    key = _key(value)
    for option in options:
        if _key(option) == key:
            return option
    if key in synonyms and synonyms[key] in options:
        return synonyms[key]
    raise ConfigError(f"{name} '{value}' is not one of: {', '.join(options)}")


def canonical_status(value: str, *, for_filter: bool = False) -> str:
    """``Active``/``active``/``in-progress`` → ``active``/``inProgress``.

    Raises:
        ConfigError: not a documented status.
    """
    if _key(value) == "new":  # an alert status, often typed by mistake for incidents
        raise ConfigError("status 'new' is an alert status; incidents use: " + ", ".join(STATUSES))
    return _pick("status", value, FILTER_STATUSES if for_filter else STATUSES, {})


def canonical_severity(value: str) -> str:
    """``High``/``high`` → ``high``; ``UnSpecified`` → ``unknown``."""
    return _pick("severity", value, SEVERITIES, {"unspecified": "unknown"})


def canonical_classification(value: str) -> str:
    """``TruePositive``/``truepositive`` → ``truePositive``."""
    return _pick("classification", value, CLASSIFICATIONS, {})


def canonical_determination(value: str, classification: str | None = None) -> str:
    """Either documented spelling → the canonical name, checked against ``classification``.

    Raises:
        ConfigError: not a documented determination, or not one allowed for ``classification``.
    """
    if classification is None:
        return _pick("determination", value, DETERMINATIONS, _DETERMINATION_SYNONYMS)
    allowed = DETERMINATIONS_BY_CLASSIFICATION[classification]
    try:
        return _pick("determination", value, allowed, _DETERMINATION_SYNONYMS)
    except ConfigError:
        raise ConfigError(
            f"determination '{value}' is not allowed with classification '{classification}' "
            f"(allowed: {', '.join(allowed)})"
        ) from None


def current_determination(value: str | None) -> str | None:
    """A determination read from an API or from storage, in today's schema name.

    The older names map to the new ones (``compromisedUser`` → ``compromisedAccount``, any
    case); a value this code does not know is kept as it is, never refused: the service may add
    members (``unknownFutureValue`` and later) and reads must not fail on them.
    """
    if value is None or value in _SETTLED_DETERMINATIONS:
        return value
    key = _key(value)
    if key in _DETERMINATION_SYNONYMS:
        return _DETERMINATION_SYNONYMS[key]
    return _DETERMINATION_BY_KEY.get(key) or value


def for_api(api: ApiKind, field: str, canonical: str) -> str:
    """The spelling of a canonical enum value that ``api`` expects for ``field``.

    Graph takes the canonical camelCase names; the legacy API takes PascalCase, with the
    determination names of its update page and ``UnSpecified`` for an unknown severity.
    """
    if api == "graph":
        return canonical
    if field == "determination" and canonical in _LEGACY_DETERMINATION:
        return _LEGACY_DETERMINATION[canonical]
    if field == "severity" and canonical == "unknown":
        return "UnSpecified"
    return canonical[0].upper() + canonical[1:]
