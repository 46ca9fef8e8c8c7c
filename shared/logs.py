"""Logging set-up and a last-line redaction filter.

Nothing in shared/ logs a secret on purpose; this filter is defence in depth for what third-party
libraries might log: bearer tokens and JWTs, client secrets and assertions in form bodies, storage
account keys and SAS signatures are masked before any handler sees the record.

Inside the Functions worker the SDK loggers are kept at WARNING (``configure_worker_logging``):
the worker sets the root logger to INFO and forwards every record to the host, which bills it
as an Application Insights trace, and at INFO azure-core logs each request and response.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping

from shared.settings import LOG_LEVEL_AZURE_SDK_SETTING, parse_log_level

_PATTERNS = (
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),  # JWTs
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(
        r"(?i)((?:client_secret|client_assertion|assertion|refresh_token|access_token|"
        r"code|password)[\"']?\s*[=:]\s*[\"']?)[^&\s\"',;]+"
    ),
    re.compile(r"(?i)(AccountKey=)[^;\s]+"),
    re.compile(r"(?i)(SharedAccessSignature=)[^;\s]+"),
    re.compile(r"(?i)([?&]sig=)[^&\s]+"),
)
MASK = "***"


def redact(text: str) -> str:
    """Mask anything that looks like a credential in ``text``."""
    for pattern in _PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        else:
            text = pattern.sub(MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with credentials masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, mask it, and drop the arguments."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of ``logger`` (root by default), once."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def configure_cli_logging(verbosity: int) -> None:
    """stderr logging for the CLI: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # the Azure SDKs log every request at INFO: quiet unless LOG_LEVEL_AZURE_SDK or -vv
    set_sdk_log_level(sdk_log_level() if verbosity < 2 else logging.DEBUG)
    install_redaction(root)


#: Third-party loggers that speak at INFO on every call: azure-core's HTTP logging policy (a
#: request line and a response line, with headers, for each storage, Key Vault and managed
#: identity call), azure-identity (each token it gets), MSAL and urllib3. The children are named
#: as well as ``azure`` so a level set on one of them elsewhere cannot reopen it.
SDK_LOGGERS = (
    "azure",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.identity",
    "msal",
    "urllib3",
)


def sdk_log_level(env: Mapping[str, str] | None = None) -> int:
    """``LOG_LEVEL_AZURE_SDK`` (default WARNING). A value that does not parse gives WARNING
    here; the settings parse reports it as a problem with the others."""
    raw = (os.environ if env is None else env).get(LOG_LEVEL_AZURE_SDK_SETTING) or ""
    if not raw.strip():
        return logging.WARNING
    try:
        return parse_log_level(raw)
    except ValueError:
        return logging.WARNING


def set_sdk_log_level(level: int) -> None:
    """Put every logger of ``SDK_LOGGERS`` at ``level``."""
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level != level:  # setLevel clears every logger's level cache
            logger.setLevel(level)


def configure_worker_logging(env: Mapping[str, str] | None = None) -> None:
    """Logging inside the Functions worker, at the start of every invocation (cheap, idempotent).

    The worker owns the handlers and the root level (INFO): it is left alone, so the app's own
    INFO lines still reach the host. The SDK loggers get their own level, which the worker's
    set-up never touches (it sets only the root and its own loggers), and redaction is put on
    the worker's handlers.
    """
    set_sdk_log_level(sdk_log_level(env))
    install_redaction()
