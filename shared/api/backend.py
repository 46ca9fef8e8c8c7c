"""What the route handlers need from the outside world, as one injected object.

``shared.api.app.backend()`` wires the real one (API clients, storage, queues);
tests use the same wiring against the emulator and Azurite. Handlers never build clients.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.core.clock import Clock

if TYPE_CHECKING:
    from shared.api.access import Principal
    from shared.api.ratelimit import CallerLimiter
    from shared.core.settings import Settings
    from shared.ports import ConsentNonces, Defender, Jobs, SubscriptionAdmin
    from shared.storage.values import IngestRequest, Job
    from shared.usecases.fanout import TenantStatus
    from shared.usecases.push.delivery import Callbacks


@dataclass
class Backend:
    """The collaborators of the HTTP API.

    Attributes:
        registered: ids of the enabled tenants of the registry (setting + table).
        client_for: the app-context API client of a tenant.
        user_client_for: ``(caller, tenant)`` → a client acting on behalf of that caller (with
            the token they were authenticated by).
        enqueue_ingest: puts a ``defender-ingest`` message.
        jobs: the hunting job store.
        submit_job: ``(job_id, delay_seconds)``: hands a job to the worker (queue or in-process).
        background: runs a callable on a worker thread (synchronous hunts under a time budget).
        subscriptions: the push subscription store.
        callbacks: the push callback check (parse, allow-list, resolve and check addresses).
        mark_own_update: ``(tenant, incident id, started)`` after the bridge updated an
            incident (push loop protection; never raises).
        record_consent: ``(tenant, when)``: records an admin consent in the tenant registry;
            True when the tenant is served (a paused tenant stays paused).
        prove_consent: ``tenant`` -> the application roles of a token asked of Entra now in
            that tenant (raises ``ConsentError``/``AuthError`` when none can be had).
        consent_states: the store of consent-link nonces already used.
        caller_limits: the per-caller limits of the routes that call Defender (this
            process's; ``shared.api.ratelimit``).
        ingest_status: ``tenant`` -> its ingestion status line (queued, running, idle, held,
            and its last run), for ``POST /ingest``'s Location.
    """

    settings: Settings
    clock: Clock
    registered: Callable[[], tuple[str, ...]]
    client_for: Callable[[str], Defender]
    user_client_for: Callable[[Principal, str], Defender]
    enqueue_ingest: Callable[[IngestRequest], None]
    jobs: Jobs
    submit_job: Callable[[str, int], None]
    background: Callable[[Callable[[], Any]], Future[Any]]
    subscriptions: SubscriptionAdmin
    callbacks: Callbacks
    mark_own_update: Callable[[str, str, datetime], None]
    record_consent: Callable[[str, datetime], bool]
    prove_consent: Callable[[str], tuple[str, ...]]
    consent_states: Callable[[], ConsentNonces]
    caller_limits: CallerLimiter
    ingest_status: Callable[[str], TenantStatus]
    #: jobs running in this process (user context), so a poll can tell "still running here"
    local_jobs: dict[str, Job] | None = None
