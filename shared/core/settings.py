"""App settings: their names, one typed frozen object in sections, and a parser that reports
every problem at once.

App settings reach a Function as environment variables, so ``Settings.from_env`` parses any
mapping (``os.environ`` in production, a dict in tests). Nothing here reads the environment at
import time; ``load()`` does it on first use.

How it is built, so that each fact is written once:

- **Names.** Each environment name is one ``*_SETTING`` constant (messages and tests use them);
  ``READ_ELSEWHERE`` lists the few that the Functions host, the worker or the telemetry read
  instead.
- **Declarations.** Each setting is declared once, on the field of the section that holds it:
  ``lookback: timedelta = setting(INGEST_LOOKBACK_DAYS_SETTING, _in(_DAY, _int(1, 180)), "30")``
  gives its name, its parser with the range and the unit conversion (whole days in the
  setting, a ``timedelta`` in the field; mypy checks the field's type against the parser's),
  and its default *as a user writes it*, parsed at import by the same parser (so a default is
  always in range, and the README's default column is checked against it). A default that
  depends on other settings is a function of the ``Basis`` instead (the cloud, the API
  surface, the raw mapping): the cloud's hosts and push host suffixes, the surface's page
  size, the consent callback on ``API_PUBLIC_URL`` or ``WEBSITE_HOSTNAME``. ``secret=True``
  keeps a value out of ``repr``. ``DECLARATIONS`` lists every declaration in order;
  ``tests/unit/test_sample_settings.py`` reads it, so the README's settings table and
  ``local.settings.sample.json`` cannot miss a setting.
- **Sections.** Frozen dataclasses by concern, composed into one frozen ``Settings``:
  ``identity`` (who the app is, its credential), ``defender`` (API surface, cloud hosts, client
  limits), ``storage``, ``ingest``, ``fanout`` (partner scale), ``http`` (the HTTP API and its
  signing keys), ``push``, ``logs``, ``local`` (the emulator, never set in Azure). Code reads
  ``settings.ingest.page_size``; what spans sections is a property of ``Settings``
  (``tenants``, ``emulator``, ``api_audiences``). Only ``from_env`` builds them.
- **The parse.** Generic over the declarations: each value is read; a missing required one or
  a malformed one is a problem named by its setting (the reason never echoes the value: some
  are secrets) and its default stands in so the parse goes on. Then each of ``RULES`` (the
  rules across settings, one function each: one way to storage, Graph's page-size cap,
  federated needs ``AZURE_CLIENT_ID``, a local push receiver only with the emulator CA, a
  previous signing key only with a current one, a certificate needs its name) may add one
  problem, retired settings still set are noted, and ``ConfigError`` lists every problem.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from shared.core.clouds import CLOUDS, Cloud
from shared.core.errors import ConfigError
from shared.core.guids import guid
from shared.core.surfaces import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, ApiKind

TENANT_ID_SETTING = "DEFENDER_TENANT_ID"
CLIENT_ID_SETTING = "DEFENDER_CLIENT_ID"
API_SETTING = "DEFENDER_API"
CLOUD_SETTING = "DEFENDER_CLOUD"
AUTHORITY_URL_SETTING = "DEFENDER_AUTHORITY_URL"
LEGACY_API_URL_SETTING = "DEFENDER_LEGACY_API_URL"
GRAPH_API_URL_SETTING = "DEFENDER_GRAPH_API_URL"
KEY_VAULT_URL_SETTING = "KEY_VAULT_URL"
CLIENT_SECRET_NAME_SETTING = "DEFENDER_CLIENT_SECRET_NAME"  # noqa: S105 - a setting name
MANAGED_IDENTITY_CLIENT_ID_SETTING = "AZURE_CLIENT_ID"
AZURE_CREDENTIAL_SETTING = "AZURE_CREDENTIAL_KIND"
STORAGE_CONNECTION_STRING_SETTING = "DATA_STORAGE_CONNECTION_STRING"
STORAGE_ACCOUNT_SETTING = "DATA_STORAGE_ACCOUNT_NAME"
INGEST_TENANTS_SETTING = "INGEST_TENANTS"
INGEST_SCHEDULE_SETTING = "INGEST_SCHEDULE"
INGEST_LOOKBACK_DAYS_SETTING = "INGEST_LOOKBACK_DAYS"
INGEST_OVERLAP_MINUTES_SETTING = "INGEST_OVERLAP_MINUTES"
INGEST_PAGE_SIZE_SETTING = "INGEST_PAGE_SIZE"
HTTP_TIMEOUT_SETTING = "HTTP_TIMEOUT_SECONDS"
API_MAX_ATTEMPTS_SETTING = "API_MAX_ATTEMPTS"
API_TIME_BUDGET_SETTING = "API_TIME_BUDGET_SECONDS"
EMULATOR_CA_CERT_SETTING = "EMULATOR_CA_CERT"
# credentials: how the app proves itself to Entra ID
CREDENTIAL_KIND_SETTING = "DEFENDER_CREDENTIAL_KIND"
CERTIFICATE_NAME_SETTING = "DEFENDER_CERTIFICATE_NAME"
CREDENTIAL_CACHE_MINUTES_SETTING = "CREDENTIAL_CACHE_MINUTES"
CREDENTIAL_EXPIRY_WARNING_DAYS_SETTING = "CREDENTIAL_EXPIRY_WARNING_DAYS"
TENANT_TABLE_SETTING = "TENANT_REGISTRY_TABLE"
FEATURES_SETTING = "DEFENDER_FEATURES"
# API client limits; documented quotas as defaults, "calls/seconds" pairs
RATE_LIMIT_INCIDENTS_SETTING = "API_RATE_LIMIT_INCIDENTS"
RATE_LIMIT_ALERTS_SETTING = "API_RATE_LIMIT_ALERTS"
RATE_LIMIT_HUNTING_SETTING = "API_RATE_LIMIT_HUNTING"
# partner scale: queue fan-out, poison handling, consent holds, concurrency
INGEST_FANOUT_SETTING = "INGEST_FANOUT"
INGEST_CONCURRENCY_SETTING = "INGEST_CONCURRENCY"
INGEST_MAX_DEQUEUE_COUNT_SETTING = "INGEST_MAX_DEQUEUE_COUNT"
INGEST_QUEUED_MARKER_MINUTES_SETTING = "INGEST_QUEUED_MARKER_MINUTES"
INGEST_CONSENT_RETRY_HOURS_SETTING = "INGEST_CONSENT_RETRY_HOURS"
INGEST_FAILURE_HOLD_MINUTES_SETTING = "INGEST_FAILURE_HOLD_MINUTES"
API_MAX_RETRY_WAIT_SETTING = "API_MAX_RETRY_WAIT_SECONDS"
#: read by the Functions host, not by Settings: the queue trigger's connection to the data
#: account (``connection="DATA_STORAGE"``): a connection string locally, or the queue endpoint
#: for an identity-based connection in Azure
#: (https://learn.microsoft.com/azure/azure-functions/functions-reference#configure-an-identity-based-connection)
QUEUE_CONNECTION_SETTING = "DATA_STORAGE"
QUEUE_SERVICE_URI_SETTING = "DATA_STORAGE__queueServiceUri"
# HTTP API
API_MAX_BODY_BYTES_SETTING = "API_MAX_BODY_BYTES"
#: how HTTP callers prove who they are: ``entra`` (an Entra ID access token the app validates,
#: the default) or ``key`` (the Functions host's function key alone, every role and tenant)
API_AUTH_MODE_SETTING = "API_AUTH_MODE"
#: the audience of callers' tokens (the app registration's Application ID URI)
API_APP_ID_URI_SETTING = "API_APP_ID_URI"
#: settings an older version read and this one does not, with what replaced them: a deployment
#: that still sets one is told at start-up and by ``check`` (never silently obeyed)
RETIRED_SETTINGS: dict[str, str] = {
    "API_REQUIRE_CLIENT_PRINCIPAL": (
        "X-MS-CLIENT-PRINCIPAL is no longer read: every caller needs an Entra ID access token "
        "for this API (API_AUTH_MODE=entra, the default), whatever this setting says; remove it "
        "(API_AUTH_MODE=key keeps key-only access for a single-team deployment)"
    ),
}
API_TENANT_ROLES_SETTING = "API_TENANT_ROLES"
API_ALLOW_FREE_KQL_SETTING = "API_ALLOW_FREE_KQL"
API_SYNC_BUDGET_SETTING = "API_SYNC_BUDGET_SECONDS"
API_RETRY_AFTER_SETTING = "API_RETRY_AFTER_SECONDS"
#: how long a 202's poll link (a signed capability for one hunting job) stays valid
API_POLL_LINK_MINUTES_SETTING = "API_POLL_LINK_MINUTES"
API_PUBLIC_URL_SETTING = "API_PUBLIC_URL"
API_SIGNING_KEY_SETTING = "API_SIGNING_KEY"
API_PUSH_HOST_SUFFIXES_SETTING = "API_PUSH_HOST_SUFFIXES"
API_PUSH_MAX_ATTEMPTS_SETTING = "API_PUSH_MAX_ATTEMPTS"
# push rebuilt: deliveries off the ingestion path, checked targets, sealed callbacks
API_SIGNING_KEY_PREVIOUS_SETTING = "API_SIGNING_KEY_PREVIOUS"
API_PUSH_ALLOW_LOCAL_RECEIVER_SETTING = "API_PUSH_ALLOW_LOCAL_RECEIVER"
API_PUSH_TIMEOUT_SETTING = "API_PUSH_TIMEOUT_SECONDS"
API_PUSH_RETRY_SETTING = "API_PUSH_RETRY_SECONDS"
API_PUSH_MAX_RETRY_AFTER_SETTING = "API_PUSH_MAX_RETRY_AFTER_SECONDS"
API_PUSH_GONE_GRACE_SETTING = "API_PUSH_GONE_GRACE_MINUTES"
API_PUSH_DELIVER_OWN_UPDATES_SETTING = "API_PUSH_DELIVER_OWN_UPDATES"
API_CONSENT_STATE_MINUTES_SETTING = "API_CONSENT_STATE_MINUTES"
API_PAGE_MAX_CALLS_SETTING = "API_INCIDENTS_PAGE_MAX_CALLS"
API_CALLER_RATE_LIMIT_SETTING = "API_CALLER_RATE_LIMIT"
API_CALLER_HUNTING_RATE_LIMIT_SETTING = "API_CALLER_HUNTING_RATE_LIMIT"
# admin consent: where Entra sends an admin after admin consent
CONSENT_REDIRECT_URI_SETTING = "DEFENDER_CONSENT_REDIRECT_URI"
#: set by App Service / Functions to the app's default host name (not one of our settings)
#: https://learn.microsoft.com/azure/app-service/reference-app-settings#app-environment
WEBSITE_HOSTNAME = "WEBSITE_HOSTNAME"
#: the HTTP API's consent callback route (shared/api builds it)
CONSENT_CALLBACK_PATH = "/api/consent/callback"
#: without WEBSITE_HOSTNAME (local runs): the callback on Core Tools' default port; Entra allows
#: http redirect URIs only for localhost
#: (https://learn.microsoft.com/entra/identity-platform/reply-url#localhost-exceptions)
LOCAL_CONSENT_REDIRECT_URI = f"http://localhost:7071{CONSENT_CALLBACK_PATH}"
# ingestion by time slices
INGEST_SAFETY_LAG_SETTING = "INGEST_SAFETY_LAG_SECONDS"
INGEST_TIME_BUDGET_SETTING = "INGEST_TIME_BUDGET_SECONDS"
INGEST_LEASE_SETTING = "INGEST_LEASE_SECONDS"
INGEST_LAG_WARNING_SETTING = "INGEST_LAG_WARNING_MINUTES"
#: read by shared.telemetry (set by the platform when the app has Application Insights)
APPLICATIONINSIGHTS_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
#: the level of the Azure SDK, MSAL and urllib3 loggers (shared.core.logs): WARNING unless raised
#: for a diagnosis; the app's own loggers are not affected
LOG_LEVEL_AZURE_SDK_SETTING = "LOG_LEVEL_AZURE_SDK"
#: read by the Python worker, not by Settings: the size of the thread pool that runs the
#: synchronous functions (infra/ sets it; shared.usecases.doctor checks it against host.json's
#: batches)
PYTHON_THREADPOOL_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"
#: the settings above that ``Settings`` does not parse (the Functions host, the Python worker
#: and ``shared.telemetry`` read them); every other ``*_SETTING`` is declared on a section
READ_ELSEWHERE = (
    QUEUE_CONNECTION_SETTING,
    QUEUE_SERVICE_URI_SETTING,
    APPLICATIONINSIGHTS_SETTING,
    PYTHON_THREADPOOL_SETTING,
)

CredentialKind = Literal["managed-identity", "developer"]
AppCredentialKind = Literal["secret", "certificate", "federated"]
Feature = Literal["ingest", "update", "hunting"]
FanoutMode = Literal["queue", "inline"]
ApiAuthMode = Literal["entra", "key"]
#: a rate limit: at most ``calls`` in any ``seconds``-long window
RateLimit = tuple[tuple[int, float], ...]

_T = TypeVar("_T")
_NCRONTAB = re.compile(r"^\S+( \S+){5}$")  # six fields: second minute hour day month weekday


# --- value parsers: each returns the value or raises ValueError with a reason ---------------


def _guid(raw: str) -> str:
    value = guid(raw)
    if value is None:
        raise ValueError("must be a GUID like 00000000-0000-0000-0000-000000000000")
    return value


def parse_tenant_list(raw: str) -> tuple[str, ...]:
    """Comma-separated tenant GUIDs, normalized and deduplicated (ValueError if one is bad)."""
    items = [part.strip() for part in raw.split(",") if part.strip()]
    out: list[str] = []
    for index, item in enumerate(items, 1):
        try:
            tid = _guid(item)
        except ValueError:
            raise ValueError(f"item {index} is not a tenant GUID") from None
        if tid not in out:
            out.append(tid)
    return tuple(out)


def _https_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("must be an https:// URL")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    return raw.rstrip("/")


def parse_redirect_uri(raw: str) -> str:
    """An OAuth redirect URI Entra accepts: https, or http on localhost only, no fragment
    (https://learn.microsoft.com/entra/identity-platform/reply-url)."""
    parts = urlsplit(raw)
    local = parts.hostname in ("localhost", "127.0.0.1")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and local)):
        raise ValueError("must be an https:// URL (http:// only for localhost)")
    if parts.fragment or "#" in raw:
        raise ValueError("must not carry a fragment")
    return raw


def _choice(options: Mapping[str, _T]) -> Callable[[str], _T]:
    def parse(raw: str) -> _T:
        key = raw.lower()
        if key not in options:
            raise ValueError(f"must be one of {', '.join(sorted(options))}")
        return options[key]

    return parse


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return value

    return parse


def _float(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number from {low:g} to {high:g}") from None
        if not low <= value <= high:
            raise ValueError(f"must be a number from {low:g} to {high:g}")
        return value

    return parse


def _secret_name(raw: str) -> str:
    # Key Vault object names: 1-127 alphanumerics and dashes
    # https://learn.microsoft.com/azure/key-vault/general/about-keys-secrets-certificates#object-identifiers
    if not re.fullmatch(r"[0-9A-Za-z-]{1,127}", raw):
        raise ValueError("must be 1-127 letters, digits and dashes (a Key Vault secret name)")
    return raw


def _storage_account(raw: str) -> str:
    if not re.fullmatch(r"[a-z0-9]{3,24}", raw):
        raise ValueError("must be a storage account name: 3-24 lowercase letters and digits")
    return raw


def _connection_string(raw: str) -> str:
    if raw == "UseDevelopmentStorage=true":
        return raw
    keys = {part.split("=", 1)[0].strip().lower() for part in raw.split(";") if "=" in part}
    if "accountname" not in keys and "blobendpoint" not in keys:
        raise ValueError("is not an Azure Storage connection string (no AccountName/BlobEndpoint)")
    return raw


def parse_ncrontab(raw: str) -> str:
    """A six-field NCRONTAB expression (the timer trigger's schedule), as given."""
    if not _NCRONTAB.match(raw):
        raise ValueError("must be an NCRONTAB expression with six fields, e.g. '0 */5 * * * *'")
    return raw


#: the levels a log-level setting accepts, by name
LOG_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}


def parse_log_level(raw: str) -> int:
    """A level name (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``, ``CRITICAL``; any case)."""
    level = LOG_LEVELS.get(raw.strip().upper())
    if level is None:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _existing_file(raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise ValueError("must be the path of an existing CA certificate file (PEM)")
    return path


def _table_name(raw: str) -> str:
    # https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", raw):
        raise ValueError("must be a table name: 3-63 letters and digits, starting with a letter")
    return raw


def _features(raw: str) -> tuple[Feature, ...]:
    known = ("ingest", "update", "hunting")
    items = [part.strip().lower() for part in raw.split(",") if part.strip()]
    unknown = [item for item in items if item not in known]
    if unknown or not items:
        raise ValueError(f"must be a comma-separated list of {', '.join(known)}")
    return tuple(dict.fromkeys(items))  # type: ignore[arg-type]


def _rate_limit(raw: str) -> RateLimit:
    """``"50/60,1500/3600"``: at most 50 calls per 60 s and 1,500 per 3,600 s."""
    limits: list[tuple[int, float]] = []
    for part in raw.split(","):
        calls, sep, seconds = part.strip().partition("/")
        try:
            pair = (int(calls), float(seconds))
        except ValueError:
            pair = (0, 0.0)
        if not sep or pair[0] < 1 or pair[1] <= 0:
            raise ValueError(
                "must be calls/seconds pairs separated by commas, e.g. 50/60,1500/3600"
            )
        limits.append(pair)
    return tuple(limits)


# --- HTTP API ---------------------------------------------------------------------------------


def _bool(raw: str) -> bool:
    key = raw.lower()
    if key in ("true", "1", "yes", "on"):
        return True
    if key in ("false", "0", "no", "off"):
        return False
    raise ValueError("must be true or false")


def parse_tenant_roles(raw: str) -> dict[str, tuple[str, ...]]:
    """``API_TENANT_ROLES``: ``Role=tid,tid;Other=tid`` (ValueError naming the bad part)."""
    out: dict[str, tuple[str, ...]] = {}
    for index, part in enumerate(p.strip() for p in raw.split(";")):
        if not part:
            continue
        role, sep, tids = part.partition("=")
        tenants = tuple(_guid_or_empty(t) for t in tids.split(",") if t.strip())
        if not sep or not role.strip() or not tenants or "" in tenants:
            raise ValueError(
                f"entry {index + 1} must be Role=tenant-guid[,tenant-guid...] (entries split by ;)"
            )
        out[role.strip()] = tenants
    return out


def _guid_or_empty(raw: str) -> str:
    return guid(raw) or ""


def _app_id_uri(raw: str) -> str:
    # https://learn.microsoft.com/entra/identity-platform/reference-app-manifest#identifieruris-attribute
    parts = urlsplit(raw)
    if (
        parts.scheme not in ("api", "https")
        or not parts.netloc
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in raw)
        or len(raw) > 255
    ):
        raise ValueError(
            "must be the app registration's Application ID URI, e.g. api://<client id> or "
            "https://<verified domain>/<name>"
        )
    return raw.rstrip("/")


def parse_public_url(raw: str) -> str:
    """An origin the app is reached at (``API_PUBLIC_URL``, the connector's ``--url``).

    Raises:
        ValueError: not an http(s) origin, or with a path, query or fragment.
    """
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(
            "must be the app's public https:// origin, e.g. https://bridge.example.com"
        )
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError("must be an origin only (no path, query or fragment)")
    return f"{parts.scheme}://{parts.netloc}"


#: the longest a synchronous POST /hunting may wait for its hunt: multitenant Logic Apps gives
#: up on an outbound request after 120 s and its retry policy sends it again (a second hunt),
#: so the answer (the budget, plus authentication and storage before it) must come well before
#: https://learn.microsoft.com/azure/logic-apps/logic-apps-limits-and-config#timeout-duration
MAX_SYNC_BUDGET = 90.0


def _sync_budget(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= MAX_SYNC_BUDGET:
        raise ValueError(
            f"must be a number from 0 to {MAX_SYNC_BUDGET:g}: multitenant Logic Apps gives up on "
            "a call after 120 s and sends it again, which would start a second hunt"
        )
    return value


def _signing_key(raw: str) -> str:
    # the value is a secret: the reason never echoes it
    if len(raw) < 32:
        raise ValueError(
            "must be at least 32 characters (use a Key Vault reference to a random secret)"
        )
    return raw


def _host_suffixes(raw: str) -> tuple[str, ...]:
    items = tuple(p.strip().lower() for p in raw.split(",") if p.strip())
    if not items or any(not re.fullmatch(r"\.?[a-z0-9]([a-z0-9.-]*[a-z0-9])?", i) for i in items):
        raise ValueError("must be comma-separated host names or suffixes, e.g. .logic.azure.com")
    # a suffix of one label (".net") would admit half the internet
    if any(i.startswith(".") and "." not in i[1:] for i in items):
        raise ValueError("a suffix must have at least two labels, e.g. .logic.azure.com")
    return items


# --- declarations: one per setting, on the field of its section --------------------------------


@dataclass(frozen=True, slots=True)
class Basis:
    """What a default may depend on: the cloud, the API surface (each its parsed value, or its
    default when unset or malformed) and the raw mapping."""

    cloud: Cloud
    api: ApiKind
    env: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Declared(Generic[_T]):
    """One setting: its environment name, its parser, and its default."""

    name: str
    #: raw text -> typed value (range checks and unit conversion included); ValueError with a
    #: reason that never echoes the value
    parse: Callable[[str], _T]
    #: the default as a user writes it (None: no fixed default)
    raw_default: str | None
    #: ``parse(raw_default)``, or None
    default: _T | None
    #: a default that depends on other settings (instead of ``raw_default``)
    derive: Callable[[Basis], _T] | None
    required: bool
    #: kept out of ``repr`` (it is also never echoed by a problem, like every value)
    secret: bool

    def fallback(self, basis: Basis) -> _T | None:
        """The value when the setting is unset or malformed: derived, or a fresh parse of the
        fixed default (so no two parses share a mutable default), or None."""
        if self.derive is not None:
            return self.derive(basis)
        return None if self.raw_default is None else self.parse(self.raw_default)

    def lenient(self, env: Mapping[str, str]) -> _T | None:
        """The value in ``env``, or the fixed default when it is unset or malformed (for a
        reader that must not fail, such as logging set up before the settings are parsed)."""
        raw = (env.get(self.name) or "").strip()
        try:
            return self.parse(raw) if raw else self.default
        except ValueError:
            return self.default


_DECLARED = "setting"


def setting(
    name: str,
    parse: Callable[[str], _T],
    default: str | None = None,
    *,
    derive: Callable[[Basis], _T] | None = None,
    required: bool = False,
    secret: bool = False,
) -> _T:
    """Declare a section's field as the setting ``name`` (see the module docstring).

    ``default`` is written as a user would write the value; it is parsed here, at import, so
    a default out of its own range fails every test at once.
    """
    declared = Declared(
        name=name,
        parse=parse,
        raw_default=default,
        default=None if default is None else parse(default),
        derive=derive,
        required=required,
        secret=secret,
    )
    # like dataclasses.field(), typed as the value it stands for
    return typing.cast(_T, field(repr=not secret, metadata={_DECLARED: declared}))


def _in(unit: timedelta, parse: Callable[[str], int]) -> Callable[[str], timedelta]:
    """A setting given as a whole number of ``unit`` (its name says which), read as a span."""
    return lambda raw: parse(raw) * unit


_SECOND = timedelta(seconds=1)
_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)


def _consent_callback(basis: Basis) -> str:
    """The HTTP API's consent callback: on ``API_PUBLIC_URL`` (behind a proxy), else on
    ``WEBSITE_HOSTNAME`` (App Service), else on Core Tools' local port."""
    try:
        public = (basis.env.get(API_PUBLIC_URL_SETTING) or "").strip()
        if public:
            return parse_public_url(public) + CONSENT_CALLBACK_PATH
    except ValueError:
        pass  # reported by API_PUBLIC_URL's own parse
    host = (basis.env.get(WEBSITE_HOSTNAME) or "").strip()
    if re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", host):
        return f"https://{host}{CONSENT_CALLBACK_PATH}"
    return LOCAL_CONSENT_REDIRECT_URI


# --- the sections -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentitySettings:
    """Who the app is, where its credential lives, and how it proves itself to Entra ID."""

    tenant_id: str = setting(TENANT_ID_SETTING, _guid, required=True)
    client_id: str = setting(CLIENT_ID_SETTING, _guid, required=True)
    key_vault_url: str = setting(KEY_VAULT_URL_SETTING, _https_url, required=True)
    credential_kind: AppCredentialKind = setting(
        CREDENTIAL_KIND_SETTING,
        _choice({k: k for k in ("secret", "certificate", "federated")}),
        "secret",
    )
    client_secret_name: str = setting(
        CLIENT_SECRET_NAME_SETTING, _secret_name, "defender-client-secret"
    )
    certificate_name: str | None = setting(CERTIFICATE_NAME_SETTING, _secret_name)
    #: a user-assigned managed identity (None: the system-assigned one)
    managed_identity_client_id: str | None = setting(MANAGED_IDENTITY_CLIENT_ID_SETTING, _guid)
    azure_credential: CredentialKind = setting(
        AZURE_CREDENTIAL_SETTING,
        _choice({k: k for k in ("managed-identity", "developer")}),
        "managed-identity",
    )
    credential_cache: timedelta = setting(
        CREDENTIAL_CACHE_MINUTES_SETTING, _in(_MINUTE, _int(1, 1440)), "60"
    )
    credential_expiry_warning: timedelta = setting(
        CREDENTIAL_EXPIRY_WARNING_DAYS_SETTING, _in(_DAY, _int(0, 365)), "30"
    )
    #: where Entra sends an admin after admin consent
    consent_redirect_uri: str = setting(
        CONSENT_REDIRECT_URI_SETTING, parse_redirect_uri, derive=_consent_callback
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DefenderSettings:
    """The Defender API surface, its cloud's hosts, and the client's limits."""

    api: ApiKind = setting(API_SETTING, _choice({k: k for k in ("graph", "legacy")}), "graph")
    cloud: Cloud = setting(CLOUD_SETTING, _choice(CLOUDS), "public")
    authority_url: str = setting(
        AUTHORITY_URL_SETTING, _https_url, derive=lambda b: b.cloud.authority_url
    )
    legacy_api_url: str = setting(
        LEGACY_API_URL_SETTING, _https_url, derive=lambda b: b.cloud.legacy_api_url
    )
    graph_api_url: str = setting(
        GRAPH_API_URL_SETTING, _https_url, derive=lambda b: b.cloud.graph_api_url
    )
    features: tuple[Feature, ...] = setting(FEATURES_SETTING, _features, "ingest")
    http_timeout: float = setting(HTTP_TIMEOUT_SETTING, _float(1.0, 230.0), "30")
    max_attempts: int = setting(API_MAX_ATTEMPTS_SETTING, _int(1, 20), "6")
    time_budget: float = setting(API_TIME_BUDGET_SETTING, _float(1.0, 3600.0), "300")
    #: the longest single wait (Retry-After or a rate-limit slot) a call sleeps through
    max_retry_wait: float = setting(API_MAX_RETRY_WAIT_SETTING, _float(0.0, 3600.0), "30")
    # Microsoft's documented quotas, per tenant and app:
    # incidents 50/min and 1,500/hour (https://learn.microsoft.com/defender-xdr/api-list-incidents),
    # hunting 45/min and 1,500/hour (https://learn.microsoft.com/defender-xdr/api-advanced-hunting),
    # Graph alerts 150/min (https://learn.microsoft.com/graph/throttling-limits)
    rate_limit_incidents: RateLimit = setting(
        RATE_LIMIT_INCIDENTS_SETTING, _rate_limit, "50/60,1500/3600"
    )
    rate_limit_alerts: RateLimit = setting(RATE_LIMIT_ALERTS_SETTING, _rate_limit, "150/60")
    rate_limit_hunting: RateLimit = setting(
        RATE_LIMIT_HUNTING_SETTING, _rate_limit, "45/60,1500/3600"
    )

    @property
    def api_url(self) -> str:
        """Base URL of the configured Defender API surface."""
        return self.graph_api_url if self.api == "graph" else self.legacy_api_url

    @property
    def api_scope(self) -> str:
        """The scope to request for the configured API (the cloud's resource, whatever the URL)."""
        return self.cloud.graph_scope if self.api == "graph" else self.cloud.legacy_scope

    @property
    def rate_limits(self) -> dict[str, RateLimit]:
        """The client-side quotas per tenant, by call family."""
        return {
            "incidents": self.rate_limit_incidents,
            "alerts": self.rate_limit_alerts,
            "hunting": self.rate_limit_hunting,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageSettings:
    """Where the app keeps its data (one of a connection string or an account name)."""

    connection_string: str | None = setting(
        STORAGE_CONNECTION_STRING_SETTING, _connection_string, secret=True
    )
    account_name: str | None = setting(STORAGE_ACCOUNT_SETTING, _storage_account)
    tenant_table: str = setting(TENANT_TABLE_SETTING, _table_name, "DefenderTenants")


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestSettings:
    """What the ingestion timer reads, how far back, how much at a time, and for how long."""

    #: ``INGEST_TENANTS`` as given (``Settings.tenants`` adds the home tenant when empty)
    listed_tenants: tuple[str, ...] = setting(INGEST_TENANTS_SETTING, parse_tenant_list, "")
    schedule: str = setting(INGEST_SCHEDULE_SETTING, parse_ncrontab, "0 */5 * * * *")
    lookback: timedelta = setting(INGEST_LOOKBACK_DAYS_SETTING, _in(_DAY, _int(1, 180)), "30")
    overlap: timedelta = setting(INGEST_OVERLAP_MINUTES_SETTING, _in(_MINUTE, _int(0, 1440)), "10")
    # legacy's cap (100) is the range; Graph's smaller cap is a rule (RULES) with its reason
    page_size: int = setting(
        INGEST_PAGE_SIZE_SETTING,
        _int(1, MAX_PAGE_SIZE["legacy"]),
        derive=lambda b: DEFAULT_PAGE_SIZE[b.api],
    )
    safety_lag: timedelta = setting(INGEST_SAFETY_LAG_SETTING, _in(_SECOND, _int(0, 3600)), "60")
    # below host.json's functionTimeout (10 minutes), with room to finish the last slice
    time_budget: timedelta = setting(
        INGEST_TIME_BUDGET_SETTING, _in(_SECOND, _int(10, 3600)), "480"
    )
    lease_seconds: int = setting(INGEST_LEASE_SETTING, _int(15, 60), "60")
    lag_warning: timedelta = setting(INGEST_LAG_WARNING_SETTING, _in(_MINUTE, _int(1, 43200)), "60")


@dataclass(frozen=True, slots=True, kw_only=True)
class FanoutSettings:
    """Partner scale: queue fan-out, poison handling, consent holds, concurrency."""

    mode: FanoutMode = setting(
        INGEST_FANOUT_SETTING, _choice({k: k for k in ("queue", "inline")}), "queue"
    )
    concurrency: int = setting(INGEST_CONCURRENCY_SETTING, _int(1, 64), "4")
    max_dequeue_count: int = setting(INGEST_MAX_DEQUEUE_COUNT_SETTING, _int(1, 100), "5")
    queued_marker: timedelta = setting(
        INGEST_QUEUED_MARKER_MINUTES_SETTING, _in(_MINUTE, _int(5, 1440)), "60"
    )
    consent_retry: timedelta = setting(
        INGEST_CONSENT_RETRY_HOURS_SETTING, _in(_HOUR, _int(1, 168)), "6"
    )
    failure_hold: timedelta = setting(
        INGEST_FAILURE_HOLD_MINUTES_SETTING, _in(_MINUTE, _int(1, 10080)), "60"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpApiSettings:
    """The HTTP API: who it admits, what it accepts, and the keys of its signed links."""

    max_body_bytes: int = setting(API_MAX_BODY_BYTES_SETTING, _int(1024, 1_048_576), "65536")
    auth_mode: ApiAuthMode = setting(
        API_AUTH_MODE_SETTING, _choice({k: k for k in ("entra", "key")}), "entra"
    )
    #: None: ``api://<client_id>``, the default the portal proposes (``Settings.api_audiences``)
    app_id_uri: str | None = setting(API_APP_ID_URI_SETTING, _app_id_uri)
    tenant_roles: dict[str, tuple[str, ...]] = setting(
        API_TENANT_ROLES_SETTING, parse_tenant_roles, ""
    )
    allow_free_kql: bool = setting(API_ALLOW_FREE_KQL_SETTING, _bool, "false")
    sync_budget: float = setting(API_SYNC_BUDGET_SETTING, _sync_budget, "20")
    retry_after: int = setting(API_RETRY_AFTER_SETTING, _int(1, 600), "5")
    #: how long a 202's poll link (a signed capability for one hunting job) stays valid
    poll_link_lifetime: timedelta = setting(
        API_POLL_LINK_MINUTES_SETTING, _in(_MINUTE, _int(5, 1440)), "60"
    )
    public_url: str | None = setting(API_PUBLIC_URL_SETTING, parse_public_url)
    signing_key: str | None = setting(API_SIGNING_KEY_SETTING, _signing_key, secret=True)
    #: the previous signing key, while rotating it
    signing_key_previous: str | None = setting(
        API_SIGNING_KEY_PREVIOUS_SETTING, _signing_key, secret=True
    )
    consent_state_lifetime: timedelta = setting(
        API_CONSENT_STATE_MINUTES_SETTING, _in(_MINUTE, _int(1, 10080)), "60"
    )
    #: the most Defender requests one page of ``GET /incidents`` may make
    page_max_calls: int = setting(API_PAGE_MAX_CALLS_SETTING, _int(2, 50), "8")
    # what one caller may ask of the routes that call Defender (shared.api.ratelimit): a page
    # costs one or two Defender calls (at most API_INCIDENTS_PAGE_MAX_CALLS), so a caller at
    # these rates leaves most of a tenant's quota to ingestion and other callers
    caller_rate_limit: RateLimit = setting(
        API_CALLER_RATE_LIMIT_SETTING, _rate_limit, "20/60,300/3600"
    )
    caller_hunting_rate_limit: RateLimit = setting(
        API_CALLER_HUNTING_RATE_LIMIT_SETTING, _rate_limit, "5/60,60/3600"
    )

    @property
    def caller_limits(self) -> dict[str, RateLimit]:
        """The per-caller limits of the routes that call Defender, by family."""
        return {"incidents": self.caller_rate_limit, "hunting": self.caller_hunting_rate_limit}


@dataclass(frozen=True, slots=True, kw_only=True)
class PushSettings:
    """Push: deliveries off the ingestion path, to checked targets, with bounded retries."""

    host_suffixes: tuple[str, ...] = setting(
        API_PUSH_HOST_SUFFIXES_SETTING, _host_suffixes, derive=lambda b: b.cloud.push_host_suffixes
    )
    max_attempts: int = setting(API_PUSH_MAX_ATTEMPTS_SETTING, _int(1, 50), "8")
    timeout: float = setting(API_PUSH_TIMEOUT_SETTING, _float(1.0, 60.0), "10")
    retry: float = setting(API_PUSH_RETRY_SETTING, _float(1.0, 3600.0), "30")
    max_retry_after: float = setting(API_PUSH_MAX_RETRY_AFTER_SETTING, _float(0.0, 86400.0), "3600")
    gone_grace: timedelta = setting(API_PUSH_GONE_GRACE_SETTING, _in(_MINUTE, _int(0, 10080)), "60")
    deliver_own_updates: bool = setting(API_PUSH_DELIVER_OWN_UPDATES_SETTING, _bool, "false")
    #: emulator only (a rule): lets push deliver to https://localhost on any port
    allow_local_receiver: bool = setting(API_PUSH_ALLOW_LOCAL_RECEIVER_SETTING, _bool, "false")


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    """The Functions worker's and the CLI's logging."""

    azure_sdk_level: int = setting(LOG_LEVEL_AZURE_SDK_SETTING, parse_log_level, "WARNING")


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalSettings:
    """Local development against the emulator: never set in Azure."""

    #: trust this CA, and turn off Entra instance discovery and Key Vault challenge checks
    emulator_ca_cert: Path | None = setting(EMULATOR_CA_CERT_SETTING, _existing_file)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the app reads from its settings, parsed and checked, by concern."""

    identity: IdentitySettings
    defender: DefenderSettings
    storage: StorageSettings
    ingest: IngestSettings
    fanout: FanoutSettings
    http: HttpApiSettings
    push: PushSettings
    logs: LogSettings
    local: LocalSettings
    #: names of retired settings that are still set (see ``RETIRED_SETTINGS``)
    retired_settings: tuple[str, ...] = ()

    @property
    def emulator(self) -> bool:
        """True when pointed at the local emulator (test CA trusted, discovery checks off)."""
        return self.local.emulator_ca_cert is not None

    @property
    def tenants(self) -> tuple[str, ...]:
        """Tenants to ingest: ``INGEST_TENANTS``, or the home tenant alone."""
        return self.ingest.listed_tenants or (self.identity.tenant_id,)

    @property
    def api_audiences(self) -> tuple[str, str]:
        """The ``aud`` values a caller's token may carry: the Application ID URI (v1 tokens
        carry the resource as requested) and the client id (v2 tokens)."""
        client_id = self.identity.client_id
        return (self.http.app_id_uri or f"api://{client_id}", client_id)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Parse settings from a mapping of app settings.

        Raises:
            ConfigError: listing every missing or malformed setting, and every broken rule,
                at once, by name.
        """
        p = _Parser(env)
        values = {
            section: {f.name: p.read(f.metadata[_DECLARED]) for f in fields(kind)}
            for section, kind in _sections().items()
        }
        basis = Basis(cloud=p.value(CLOUD_SETTING), api=p.value(API_SETTING), env=env)
        for section, kind in _sections().items():
            for f in fields(kind):
                declared: Declared[Any] = f.metadata[_DECLARED]
                if values[section][f.name] is _UNSET:
                    values[section][f.name] = declared.fallback(basis)
        settings = cls(
            **{section: kind(**values[section]) for section, kind in _sections().items()},
            retired_settings=tuple(n for n in RETIRED_SETTINGS if (env.get(n) or "").strip()),
        )
        bad = frozenset(p.bad)
        p.problems += [problem for rule in RULES if (problem := rule(settings, bad))]
        if p.problems:
            raise ConfigError(p.problems)
        return settings


@functools.cache
def _sections() -> dict[str, type[Any]]:
    """``Settings``' sections by attribute name, in declaration order."""
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in fields(Settings) if f.name != "retired_settings"}


#: every declared setting, in order (the README and the sample file must list each)
DECLARATIONS: tuple[Declared[Any], ...] = tuple(
    f.metadata[_DECLARED] for kind in _sections().values() for f in fields(kind)
)


def declared(name: str) -> Declared[Any]:
    """The declaration of the setting ``name`` (KeyError when it is not declared)."""
    for declaration in DECLARATIONS:
        if declaration.name == name:
            return declaration
    raise KeyError(name)


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Parse the process environment (the Function's app settings)."""
    return Settings.from_env(os.environ if env is None else env)


# --- rules across settings: each returns its problem, or None ---------------------------------

_Rule = Callable[[Settings, frozenset[str]], str | None]


def _one_way_to_storage(s: Settings, bad: frozenset[str]) -> str | None:
    conn, account = s.storage.connection_string, s.storage.account_name
    if conn and account:
        return f"set only one of {STORAGE_CONNECTION_STRING_SETTING} and {STORAGE_ACCOUNT_SETTING}"
    if (
        not conn
        and not account
        and not bad & {STORAGE_CONNECTION_STRING_SETTING, STORAGE_ACCOUNT_SETTING}
    ):
        return (
            f"missing {STORAGE_ACCOUNT_SETTING} (or {STORAGE_CONNECTION_STRING_SETTING} "
            "for local storage)"
        )
    return None


def _graph_page_cap(s: Settings, bad: frozenset[str]) -> str | None:
    if s.defender.api == "graph" and s.ingest.page_size > MAX_PAGE_SIZE["graph"]:
        return (
            f"{INGEST_PAGE_SIZE_SETTING}: must be at most {MAX_PAGE_SIZE['graph']} with "
            f"{API_SETTING}=graph: Graph answers 400 \"The limit of '50' for Top query has "
            'been exceeded" to a larger $top on security incidents'
        )
    return None


def _federated_needs_user_assigned(s: Settings, bad: frozenset[str]) -> str | None:
    # https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity
    if s.identity.credential_kind == "federated" and not (
        s.identity.managed_identity_client_id or MANAGED_IDENTITY_CLIENT_ID_SETTING in bad
    ):
        return (
            f"missing {MANAGED_IDENTITY_CLIENT_ID_SETTING} (needed when "
            f"{CREDENTIAL_KIND_SETTING} is federated): only a user-assigned managed identity "
            "can be an app's federated credential, a system-assigned one is not supported; "
            "set it to that identity's client id"
        )
    return None


def _local_receiver_only_with_emulator(s: Settings, bad: frozenset[str]) -> str | None:
    # a local receiver is for the emulator only: never loosen push in Azure by default
    if s.push.allow_local_receiver and not s.emulator:
        return (
            f"{API_PUSH_ALLOW_LOCAL_RECEIVER_SETTING}: only with {EMULATOR_CA_CERT_SETTING} "
            "(the emulator): it lets push deliver to https://localhost on any port"
        )
    return None


def _previous_key_only_while_rotating(s: Settings, bad: frozenset[str]) -> str | None:
    if s.http.signing_key_previous and not s.http.signing_key:
        return (
            f"{API_SIGNING_KEY_PREVIOUS_SETTING}: set only while rotating "
            f"{API_SIGNING_KEY_SETTING} (which is missing)"
        )
    return None


def _certificate_needs_its_name(s: Settings, bad: frozenset[str]) -> str | None:
    if s.identity.credential_kind == "certificate" and not s.identity.certificate_name:
        return (
            f"missing {CERTIFICATE_NAME_SETTING} (needed when {CREDENTIAL_KIND_SETTING} is "
            "certificate)"
        )
    return None


#: the rules across settings, in the order their problems are listed; each is given the
#: parsed settings and the names of the settings that already have a problem
RULES: tuple[_Rule, ...] = (
    _one_way_to_storage,
    _graph_page_cap,
    _federated_needs_user_assigned,
    _local_receiver_only_with_emulator,
    _previous_key_only_while_rotating,
    _certificate_needs_its_name,
)


_UNSET: Any = object()


class _Parser:
    """Reads declared settings from a mapping, collecting every problem."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []
        self.bad: set[str] = set()
        self._values: dict[str, Any] = {}

    def read(self, declared: Declared[Any]) -> Any:
        """The parsed value, or ``_UNSET`` when the setting is unset or malformed."""
        name = declared.name
        raw = (self.env.get(name) or "").strip()
        value: Any = _UNSET
        if not raw:
            if declared.required:
                self.problems.append(f"missing {name}")
                self.bad.add(name)
        else:
            try:
                value = declared.parse(raw)
            except ValueError as exc:
                # the reason never echoes the value: some settings (connection strings) are secrets
                self.problems.append(f"{name}: {exc}")
                self.bad.add(name)
        self._values[name] = value
        return value

    def value(self, name: str) -> Any:
        """A setting read already, with a fixed default: its value, or that default."""
        value = self._values[name]
        return declared(name).default if value is _UNSET else value
