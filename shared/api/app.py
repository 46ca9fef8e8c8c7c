"""The HTTP API bound to the process's composition root: what every face calls.

``answer(request)`` reads the settings' API options and the process's authenticator (none when
settings are broken, so ``/health`` still answers and the rest is a 503) and dispatches with the
lazily built backend.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.api.http import Request, Response
from shared.api.routes import handle, options_from
from shared.errors import ConfigError

log = logging.getLogger(__name__)


def answer(request: Request, *, in_process: bool = False) -> Response:
    """Answer one request with the process's services."""
    from shared import bootstrap

    options: dict[str, Any] = {}
    # with broken settings only the anonymous routes answer (the others: 503, the reason in
    # the log: nobody could be authenticated to be told)
    try:
        services = bootstrap.services()
        options = options_from(services.settings)
        options["authenticate"] = services.authenticator().authenticate
    except ConfigError as exc:
        log.error("HTTP API: settings: %s", exc)
    return handle(
        request,
        lambda: bootstrap.services().api_backend(in_process=in_process),
        **options,
    )
