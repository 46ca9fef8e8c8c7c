"""The HTTP API bound to the process's composition root: what every face calls.

``answer(request)`` reads the settings' API options and the process's authenticator (none when
settings are broken, so ``/health`` still answers and the rest is a 503) and dispatches with the
lazily built backend. This module wires the HTTP face from ``shared.bootstrap.Services``: the
composition root knows nothing of HTTP, so the rules that are the HTTP API's own (who may act
as a user, a hunting job's hand-off) live here.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from shared import bootstrap
from shared.api.access import Authenticator, Principal, unauthenticated
from shared.api.backend import Backend
from shared.api.handlers import run_queued_job
from shared.api.http import ApiError, Request, Response
from shared.api.ratelimit import CallerLimiter
from shared.api.routes import handle, options_from
from shared.core.errors import ConfigError
from shared.core.invocation import InvocationExecutor
from shared.storage.values import HUNTING_QUEUE

if TYPE_CHECKING:
    from shared.ports import Defender

log = logging.getLogger(__name__)


def answer(request: Request, *, in_process: bool = False) -> Response:
    """Answer one request with the process's services."""
    options: dict[str, Any] = {}
    # with broken settings only the anonymous routes answer (the others: 503, the reason in
    # the log: nobody could be authenticated to be told)
    try:
        services = bootstrap.services()
        options = options_from(services.settings)
        options["authenticate"] = authenticator(services).authenticate
    except ConfigError as exc:
        log.error("HTTP API: settings: %s", exc)
    return handle(
        request,
        lambda: backend(bootstrap.services(), in_process=in_process),
        **options,
    )


def authenticator(services: bootstrap.Services) -> Authenticator:
    """The HTTP API's authentication (``shared.api.access``), one per process."""
    s = services.settings
    return services.once(
        "api.authenticator",
        lambda: Authenticator(
            mode=s.http.auth_mode,
            validator=services.caller_validator,
            tenant_roles=s.http.tenant_roles,
            audience=s.api_audiences[0],
        ),
    )


def user_client(services: bootstrap.Services, caller: Principal, tenant: str) -> Defender:
    """An API client acting on behalf of an HTTP caller (``context=user``) in ``tenant``, which
    must be the tenant of the caller's own token: a user acts only where they signed in.

    Raises:
        ApiError: 401 without the caller's token (a key-only caller); 403 for an app's token or
            another tenant.
    """
    claims, caller_token = caller.claims, caller.token
    if claims is None or caller_token is None:
        raise unauthenticated(
            "context=user needs the caller's Entra access token for this app in "
            "'Authorization: Bearer ...'",
            code="caller_token_required",
        )
    if not claims.is_user:
        raise ApiError(
            403,
            "not_a_user",
            "context=user acts as the signed-in user: this token is an app's or a managed "
            "identity's (use context=app)",
        )
    if claims.tenant != tenant:
        raise ApiError(
            403,
            "tenant_forbidden",
            f"the caller's token is from tenant {claims.tenant}, not {tenant}",
        )
    return services.obo_client(tenant, caller_token, claims)


def backend(services: bootstrap.Services, *, in_process: bool = False) -> Backend:
    """The HTTP API's collaborators (built once per process). ``in_process``: hunting jobs run
    on this process's threads (``serve``) instead of the ``defender-hunting`` queue
    (Functions)."""
    return services.once("api.backend", lambda: _build_backend(services, in_process))


def _build_backend(services: bootstrap.Services, in_process: bool) -> Backend:
    # background work of an HTTP call logs with that call's invocation id
    pool = InvocationExecutor(max_workers=8, thread_name_prefix="api")
    hunting_queue = services.queue(HUNTING_QUEUE)

    def submit(job_id: str, delay: int) -> None:
        if in_process:
            timer = threading.Timer(delay, run_queued_job, (built, job_id))
            timer.daemon = True
            timer.start()
        else:
            hunting_queue.send(json.dumps({"job": job_id}), delay_seconds=delay)

    def enqueue(request: Any) -> None:
        # through the fan-out, so a tenant already queued is not queued twice
        fanout = services.fanout()
        outcome = fanout.enqueue(request.tenant, reason=request.reason, since=request.since)
        if outcome != "queued":
            log.info("tenant %s not queued again: %s", request.tenant, outcome)

    built = Backend(
        settings=services.settings,
        clock=services.clock,
        registered=services.registered_tenants,
        client_for=services.client_for,
        user_client_for=lambda caller, tenant: user_client(services, caller, tenant),
        enqueue_ingest=enqueue,
        jobs=services.jobs(),
        submit_job=submit,
        background=pool.submit,
        subscriptions=services.subscriptions(),
        callbacks=services.push_callbacks(),
        mark_own_update=services.mark_own_update,
        record_consent=services.record_consent,
        prove_consent=lambda tenant: services.tokens.prove_consent(
            tenant, services.settings.defender.api_scope
        ),
        consent_states=services.consent_states,
        caller_limits=CallerLimiter(services.settings.http.caller_limits),
        ingest_status=lambda tenant: services.fanout().tenant_status(tenant),
    )
    return built
