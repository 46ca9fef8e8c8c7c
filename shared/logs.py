"""Logging set-up and a last-line redaction filter.

Nothing in shared/ logs a secret on purpose; this filter is defence in depth for what third-party
libraries might log: bearer tokens and JWTs, client secrets and assertions in form bodies, storage
account keys and SAS signatures are masked before any handler sees the record.
"""

from __future__ import annotations

import logging
import re
import sys

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
    # the Azure SDKs log every request at INFO; keep them quiet unless debugging
    logging.getLogger("azure").setLevel(logging.WARNING if verbosity < 2 else logging.DEBUG)
    install_redaction(root)
