"""The HTTP API bound to the process's composition root: what every face calls.

``answer(request)`` reads the settings' API options (defaults when settings are broken, so
``/health`` still answers) and dispatches with the lazily built backend.
"""

from __future__ import annotations

import contextlib
from typing import Any

from shared.api.http import Request, Response
from shared.api.routes import handle, options_from
from shared.errors import ConfigError


def answer(request: Request, *, in_process: bool = False) -> Response:
    """Answer one request with the process's services."""
    from shared import bootstrap

    options: dict[str, Any] = {}
    # with broken settings the routes that need them answer 503 when they build the backend
    with contextlib.suppress(ConfigError):
        options = options_from(bootstrap.services().settings)
    return handle(
        request,
        lambda: bootstrap.services().api_backend(in_process=in_process),
        **options,
    )
