"""App settings: their names, one typed frozen object, and a parser that reports every problem.

App settings reach a Function as environment variables, so ``Settings.from_env`` parses any
mapping (``os.environ`` in production, a dict in tests). Nothing here reads the environment at
import time; ``load()`` does it on first use.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Literal, TypeVar
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

CredentialKind = Literal["managed-identity", "developer"]
AppCredentialKind = Literal["secret", "certificate", "federated"]
Feature = Literal["ingest", "update", "hunting"]
FanoutMode = Literal["queue", "inline"]
ApiAuthMode = Literal["entra", "key"]
#: a rate limit: at most ``calls`` in any ``seconds``-long window
RateLimit = tuple[tuple[int, float], ...]

#: Microsoft's documented quotas, per tenant and app:
#: incidents 50/min and 1,500/hour (https://learn.microsoft.com/defender-xdr/api-list-incidents),
#: hunting 45/min and 1,500/hour (https://learn.microsoft.com/defender-xdr/api-advanced-hunting),
#: Graph alerts 150/min (https://learn.microsoft.com/graph/throttling-limits)
DEFAULT_RATE_LIMITS: dict[str, RateLimit] = {
    "incidents": ((50, 60.0), (1500, 3600.0)),
    "hunting": ((45, 60.0), (1500, 3600.0)),
    "alerts": ((150, 60.0),),
}

#: what one HTTP caller may ask of the routes that call Defender (``shared.api.ratelimit``):
#: a page costs one or two Defender calls (at most ``API_INCIDENTS_PAGE_MAX_CALLS``), so a
#: caller at these rates leaves most of a tenant's quota to ingestion and other callers
DEFAULT_CALLER_LIMITS: dict[str, RateLimit] = {
    "incidents": ((20, 60.0), (300, 3600.0)),
    "hunting": ((5, 60.0), (60, 3600.0)),
}

_T = TypeVar("_T")
_NCRONTAB = re.compile(r"^\S+( \S+){5}$")  # six fields: second minute hour day month weekday


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the app reads from its settings, parsed and checked."""

    tenant_id: str
    client_id: str
    key_vault_url: str
    storage_connection_string: str | None = field(default=None, repr=False)
    storage_account_name: str | None = None
    client_secret_name: str = "defender-client-secret"  # noqa: S105 - the name, not the value
    managed_identity_client_id: str | None = None
    azure_credential: CredentialKind = "managed-identity"
    api: ApiKind = "graph"
    cloud: Cloud = CLOUDS["public"]
    authority_url: str = CLOUDS["public"].authority_url
    legacy_api_url: str = CLOUDS["public"].legacy_api_url
    graph_api_url: str = CLOUDS["public"].graph_api_url
    ingest_tenants: tuple[str, ...] = ()
    ingest_schedule: str = "0 */5 * * * *"
    lookback: timedelta = timedelta(days=30)
    overlap: timedelta = timedelta(minutes=10)
    page_size: int = DEFAULT_PAGE_SIZE["graph"]
    http_timeout: float = 30.0
    api_max_attempts: int = 6
    api_time_budget: float = 300.0
    emulator_ca_cert: Path | None = None
    credential_kind: AppCredentialKind = "secret"
    certificate_name: str | None = None
    credential_cache: timedelta = timedelta(minutes=60)
    credential_expiry_warning: timedelta = timedelta(days=30)
    tenant_table: str = "DefenderTenants"
    features: tuple[Feature, ...] = ("ingest",)
    rate_limits: dict[str, RateLimit] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    # partner scale
    fanout: FanoutMode = "queue"
    concurrency: int = 4
    max_dequeue_count: int = 5
    queued_marker: timedelta = timedelta(minutes=60)
    consent_retry: timedelta = timedelta(hours=6)
    failure_hold: timedelta = timedelta(minutes=60)
    api_max_retry_wait: float = 30.0
    # HTTP API
    api_max_body_bytes: int = 65_536
    api_auth_mode: ApiAuthMode = "entra"
    #: None: ``api://<client_id>``, the default the portal proposes
    api_app_id_uri: str | None = None
    #: names of retired settings that are still set (see ``RETIRED_SETTINGS``)
    retired_settings: tuple[str, ...] = ()
    api_tenant_roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    api_allow_free_kql: bool = False
    api_sync_budget: float = 20.0
    api_retry_after: int = 5
    api_poll_link_lifetime: timedelta = timedelta(minutes=60)
    api_public_url: str | None = None
    api_signing_key: str | None = field(default=None, repr=False)
    api_push_host_suffixes: tuple[str, ...] = CLOUDS["public"].push_host_suffixes
    api_push_max_attempts: int = 8
    api_signing_key_previous: str | None = field(default=None, repr=False)
    api_push_allow_local_receiver: bool = False
    api_push_timeout: float = 10.0
    api_push_retry: float = 30.0
    api_push_max_retry_after: float = 3600.0
    api_push_gone_grace: timedelta = timedelta(minutes=60)
    api_push_deliver_own_updates: bool = False
    api_consent_state_lifetime: timedelta = timedelta(minutes=60)
    #: the most Defender requests one page of ``GET /incidents`` may make
    api_page_max_calls: int = 8
    #: per-caller limits of the routes that call Defender, by family
    api_caller_limits: dict[str, RateLimit] = field(
        default_factory=lambda: dict(DEFAULT_CALLER_LIMITS)
    )
    consent_redirect_uri: str = LOCAL_CONSENT_REDIRECT_URI
    # ingestion by time slices
    safety_lag: timedelta = timedelta(seconds=60)
    time_budget: timedelta = timedelta(seconds=480)
    lease_seconds: int = 60
    lag_warning: timedelta = timedelta(minutes=60)
    # the Functions worker's logging
    log_level_azure_sdk: int = logging.WARNING

    @property
    def emulator(self) -> bool:
        """True when pointed at the local emulator (test CA trusted, discovery checks off)."""
        return self.emulator_ca_cert is not None

    @property
    def api_url(self) -> str:
        """Base URL of the configured Defender API surface."""
        return self.graph_api_url if self.api == "graph" else self.legacy_api_url

    @property
    def api_scope(self) -> str:
        """The scope to request for the configured API (the cloud's resource, whatever the URL)."""
        return self.cloud.graph_scope if self.api == "graph" else self.cloud.legacy_scope

    @property
    def api_audiences(self) -> tuple[str, str]:
        """The ``aud`` values a caller's token may carry: the Application ID URI (v1 tokens
        carry the resource as requested) and the client id (v2 tokens)."""
        return (self.api_app_id_uri or f"api://{self.client_id}", self.client_id)

    @property
    def tenants(self) -> tuple[str, ...]:
        """Tenants to ingest: ``INGEST_TENANTS``, or the home tenant alone."""
        return self.ingest_tenants or (self.tenant_id,)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Parse settings from a mapping of app settings.

        Raises:
            ConfigError: listing every missing or malformed setting at once, by name.
        """
        p = _Parser(env)
        tenant_id = p.required(TENANT_ID_SETTING, _guid)
        client_id = p.required(CLIENT_ID_SETTING, _guid)
        cloud = p.optional(CLOUD_SETTING, _choice(CLOUDS), CLOUDS["public"])
        key_vault_url = p.required(KEY_VAULT_URL_SETTING, _https_url)
        api: ApiKind = p.optional(
            API_SETTING, _choice({"graph": "graph", "legacy": "legacy"}), "graph"
        )
        conn = p.optional(STORAGE_CONNECTION_STRING_SETTING, _connection_string, None)
        account = p.optional(STORAGE_ACCOUNT_SETTING, _storage_account, None)
        if conn and account:
            p.problems.append(
                f"set only one of {STORAGE_CONNECTION_STRING_SETTING} and {STORAGE_ACCOUNT_SETTING}"
            )
        elif (
            not conn
            and not account
            and not p.has_problem_with(STORAGE_CONNECTION_STRING_SETTING, STORAGE_ACCOUNT_SETTING)
        ):
            p.problems.append(
                f"missing {STORAGE_ACCOUNT_SETTING} (or {STORAGE_CONNECTION_STRING_SETTING} "
                "for local storage)"
            )
        # legacy's cap (100) is the range; Graph's smaller cap gets its own reason
        page_size = p.optional(
            INGEST_PAGE_SIZE_SETTING, _int(1, MAX_PAGE_SIZE["legacy"]), DEFAULT_PAGE_SIZE[api]
        )
        if api == "graph" and page_size > MAX_PAGE_SIZE["graph"]:
            p.problems.append(
                f"{INGEST_PAGE_SIZE_SETTING}: must be at most {MAX_PAGE_SIZE['graph']} with "
                f"{API_SETTING}=graph: Graph answers 400 \"The limit of '50' for Top query has "
                'been exceeded" to a larger $top on security incidents'
            )
            page_size = MAX_PAGE_SIZE["graph"]
        host = (env.get(WEBSITE_HOSTNAME) or "").strip()
        default_redirect = (
            f"https://{host}{CONSENT_CALLBACK_PATH}"
            if re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", host)
            else LOCAL_CONSENT_REDIRECT_URI
        )
        try:  # the app's public origin (behind a proxy) wins over the default host name
            public = (env.get(API_PUBLIC_URL_SETTING) or "").strip()
            if public:
                default_redirect = parse_public_url(public) + CONSENT_CALLBACK_PATH
        except ValueError:
            pass  # reported by its own parse below
        settings = cls(
            tenant_id=tenant_id or "",
            client_id=client_id or "",
            key_vault_url=key_vault_url or "",
            storage_connection_string=conn,
            storage_account_name=account,
            client_secret_name=p.optional(
                CLIENT_SECRET_NAME_SETTING, _secret_name, "defender-client-secret"
            ),
            managed_identity_client_id=p.optional(MANAGED_IDENTITY_CLIENT_ID_SETTING, _guid, None),
            azure_credential=p.optional(
                AZURE_CREDENTIAL_SETTING,
                _choice({"managed-identity": "managed-identity", "developer": "developer"}),
                "managed-identity",
            ),
            api=api,
            cloud=cloud,
            authority_url=p.optional(AUTHORITY_URL_SETTING, _https_url, cloud.authority_url),
            legacy_api_url=p.optional(LEGACY_API_URL_SETTING, _https_url, cloud.legacy_api_url),
            graph_api_url=p.optional(GRAPH_API_URL_SETTING, _https_url, cloud.graph_api_url),
            ingest_tenants=p.optional(INGEST_TENANTS_SETTING, parse_tenant_list, ()),
            ingest_schedule=p.optional(INGEST_SCHEDULE_SETTING, parse_ncrontab, "0 */5 * * * *"),
            lookback=timedelta(days=p.optional(INGEST_LOOKBACK_DAYS_SETTING, _int(1, 180), 30)),
            overlap=timedelta(
                minutes=p.optional(INGEST_OVERLAP_MINUTES_SETTING, _int(0, 1440), 10)
            ),
            page_size=page_size,
            http_timeout=p.optional(HTTP_TIMEOUT_SETTING, _float(1.0, 230.0), 30.0),
            api_max_attempts=p.optional(API_MAX_ATTEMPTS_SETTING, _int(1, 20), 6),
            api_time_budget=p.optional(API_TIME_BUDGET_SETTING, _float(1.0, 3600.0), 300.0),
            emulator_ca_cert=p.optional(EMULATOR_CA_CERT_SETTING, _existing_file, None),
            credential_kind=p.optional(
                CREDENTIAL_KIND_SETTING,
                _choice({k: k for k in ("secret", "certificate", "federated")}),
                "secret",
            ),
            certificate_name=p.optional(CERTIFICATE_NAME_SETTING, _secret_name, None),
            credential_cache=timedelta(
                minutes=p.optional(CREDENTIAL_CACHE_MINUTES_SETTING, _int(1, 1440), 60)
            ),
            credential_expiry_warning=timedelta(
                days=p.optional(CREDENTIAL_EXPIRY_WARNING_DAYS_SETTING, _int(0, 365), 30)
            ),
            tenant_table=p.optional(TENANT_TABLE_SETTING, _table_name, "DefenderTenants"),
            features=p.optional(FEATURES_SETTING, _features, ("ingest",)),
            rate_limits={
                "incidents": p.optional(
                    RATE_LIMIT_INCIDENTS_SETTING, _rate_limit, DEFAULT_RATE_LIMITS["incidents"]
                ),
                "alerts": p.optional(
                    RATE_LIMIT_ALERTS_SETTING, _rate_limit, DEFAULT_RATE_LIMITS["alerts"]
                ),
                "hunting": p.optional(
                    RATE_LIMIT_HUNTING_SETTING, _rate_limit, DEFAULT_RATE_LIMITS["hunting"]
                ),
            },
            api_max_body_bytes=p.optional(
                API_MAX_BODY_BYTES_SETTING, _int(1024, 1_048_576), 65_536
            ),
            api_auth_mode=p.optional(
                API_AUTH_MODE_SETTING, _choice({"entra": "entra", "key": "key"}), "entra"
            ),
            api_app_id_uri=p.optional(API_APP_ID_URI_SETTING, _app_id_uri, None),
            retired_settings=tuple(n for n in RETIRED_SETTINGS if (env.get(n) or "").strip()),
            api_tenant_roles=p.optional(API_TENANT_ROLES_SETTING, _tenant_roles, {}),
            api_allow_free_kql=p.optional(API_ALLOW_FREE_KQL_SETTING, _bool, False),
            api_sync_budget=p.optional(API_SYNC_BUDGET_SETTING, _sync_budget, 20.0),
            api_retry_after=p.optional(API_RETRY_AFTER_SETTING, _int(1, 600), 5),
            api_poll_link_lifetime=timedelta(
                minutes=p.optional(API_POLL_LINK_MINUTES_SETTING, _int(5, 1440), 60)
            ),
            api_public_url=p.optional(API_PUBLIC_URL_SETTING, parse_public_url, None),
            api_signing_key=p.optional(API_SIGNING_KEY_SETTING, _signing_key, None),
            api_push_host_suffixes=p.optional(
                API_PUSH_HOST_SUFFIXES_SETTING, _host_suffixes, cloud.push_host_suffixes
            ),
            api_push_max_attempts=p.optional(API_PUSH_MAX_ATTEMPTS_SETTING, _int(1, 50), 8),
            api_consent_state_lifetime=timedelta(
                minutes=p.optional(API_CONSENT_STATE_MINUTES_SETTING, _int(1, 10080), 60)
            ),
            api_page_max_calls=p.optional(API_PAGE_MAX_CALLS_SETTING, _int(2, 50), 8),
            api_caller_limits={
                "incidents": p.optional(
                    API_CALLER_RATE_LIMIT_SETTING, _rate_limit, DEFAULT_CALLER_LIMITS["incidents"]
                ),
                "hunting": p.optional(
                    API_CALLER_HUNTING_RATE_LIMIT_SETTING,
                    _rate_limit,
                    DEFAULT_CALLER_LIMITS["hunting"],
                ),
            },
            consent_redirect_uri=p.optional(
                CONSENT_REDIRECT_URI_SETTING, parse_redirect_uri, default_redirect
            ),
        )
        if settings.credential_kind == "federated" and not (
            settings.managed_identity_client_id
            or p.has_problem_with(MANAGED_IDENTITY_CLIENT_ID_SETTING)
        ):
            # https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity
            p.problems.append(
                f"missing {MANAGED_IDENTITY_CLIENT_ID_SETTING} (needed when "
                f"{CREDENTIAL_KIND_SETTING} is federated): only a user-assigned managed identity "
                "can be an app's federated credential, a system-assigned one is not supported; "
                "set it to that identity's client id"
            )
        settings = replace(
            settings,
            fanout=p.optional(
                INGEST_FANOUT_SETTING, _choice({"queue": "queue", "inline": "inline"}), "queue"
            ),
            concurrency=p.optional(INGEST_CONCURRENCY_SETTING, _int(1, 64), 4),
            max_dequeue_count=p.optional(INGEST_MAX_DEQUEUE_COUNT_SETTING, _int(1, 100), 5),
            queued_marker=timedelta(
                minutes=p.optional(INGEST_QUEUED_MARKER_MINUTES_SETTING, _int(5, 1440), 60)
            ),
            consent_retry=timedelta(
                hours=p.optional(INGEST_CONSENT_RETRY_HOURS_SETTING, _int(1, 168), 6)
            ),
            failure_hold=timedelta(
                minutes=p.optional(INGEST_FAILURE_HOLD_MINUTES_SETTING, _int(1, 10080), 60)
            ),
            api_max_retry_wait=p.optional(API_MAX_RETRY_WAIT_SETTING, _float(0.0, 3600.0), 30.0),
        )
        settings = replace(
            settings,
            safety_lag=timedelta(seconds=p.optional(INGEST_SAFETY_LAG_SETTING, _int(0, 3600), 60)),
            # below host.json's functionTimeout (10 minutes), with room to finish the last slice
            time_budget=timedelta(
                seconds=p.optional(INGEST_TIME_BUDGET_SETTING, _int(10, 3600), 480)
            ),
            lease_seconds=p.optional(INGEST_LEASE_SETTING, _int(15, 60), 60),
            lag_warning=timedelta(
                minutes=p.optional(INGEST_LAG_WARNING_SETTING, _int(1, 43200), 60)
            ),
            log_level_azure_sdk=p.optional(
                LOG_LEVEL_AZURE_SDK_SETTING, parse_log_level, logging.WARNING
            ),
        )
        settings = replace(
            settings,
            api_signing_key_previous=p.optional(
                API_SIGNING_KEY_PREVIOUS_SETTING, _signing_key, None
            ),
            api_push_allow_local_receiver=p.optional(
                API_PUSH_ALLOW_LOCAL_RECEIVER_SETTING, _bool, False
            ),
            api_push_timeout=p.optional(API_PUSH_TIMEOUT_SETTING, _float(1.0, 60.0), 10.0),
            api_push_retry=p.optional(API_PUSH_RETRY_SETTING, _float(1.0, 3600.0), 30.0),
            api_push_max_retry_after=p.optional(
                API_PUSH_MAX_RETRY_AFTER_SETTING, _float(0.0, 86400.0), 3600.0
            ),
            api_push_gone_grace=timedelta(
                minutes=p.optional(API_PUSH_GONE_GRACE_SETTING, _int(0, 10080), 60)
            ),
            api_push_deliver_own_updates=p.optional(
                API_PUSH_DELIVER_OWN_UPDATES_SETTING, _bool, False
            ),
        )
        if settings.api_push_allow_local_receiver and not settings.emulator:
            # a local receiver is for the emulator only: never loosen push in Azure by default
            p.problems.append(
                f"{API_PUSH_ALLOW_LOCAL_RECEIVER_SETTING}: only with {EMULATOR_CA_CERT_SETTING} "
                "(the emulator): it lets push deliver to https://localhost on any port"
            )
        if settings.api_signing_key_previous and not settings.api_signing_key:
            p.problems.append(
                f"{API_SIGNING_KEY_PREVIOUS_SETTING}: set only while rotating "
                f"{API_SIGNING_KEY_SETTING} (which is missing)"
            )
        if settings.credential_kind == "certificate" and not settings.certificate_name:
            p.problems.append(
                f"missing {CERTIFICATE_NAME_SETTING} (needed when {CREDENTIAL_KIND_SETTING} is "
                "certificate)"
            )
        if p.problems:
            raise ConfigError(p.problems)
        return settings


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Parse the process environment (the Function's app settings)."""
    return Settings.from_env(os.environ if env is None else env)


# --- parsing helpers: each returns the value or raises ValueError with a reason ---------------


class _Parser:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []
        self._bad: set[str] = set()

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def required(self, name: str, parse: Callable[[str], _T]) -> _T | None:
        raw = self._raw(name)
        if raw is None:
            self.problems.append(f"missing {name}")
            self._bad.add(name)
            return None
        return self._parse(name, raw, parse)

    def optional(self, name: str, parse: Callable[[str], _T], default: _T) -> _T:
        raw = self._raw(name)
        if raw is None:
            return default
        value = self._parse(name, raw, parse)
        return default if value is None else value

    def _parse(self, name: str, raw: str, parse: Callable[[str], _T]) -> _T | None:
        try:
            return parse(raw)
        except ValueError as exc:
            # the reason never echoes the value: some settings (connection strings) are secrets
            self.problems.append(f"{name}: {exc}")
            self._bad.add(name)
            return None

    def has_problem_with(self, *names: str) -> bool:
        return any(n in self._bad for n in names)


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


def _tenant_roles(raw: str) -> dict[str, tuple[str, ...]]:
    return parse_tenant_roles(raw)


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
