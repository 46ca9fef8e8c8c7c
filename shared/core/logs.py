"""Logging set-up and a last-line redaction filter.

Nothing in shared/ logs a secret on purpose; this filter is defence in depth for what third-party
libraries might log: bearer tokens and JWTs, client secrets and assertions in form bodies, storage
account keys and SAS signatures are masked before any handler sees the record, also when they
are percent-encoded (a callback URL inside another URL: ``sig%3D...``, ``%22access_token%22``),
written as headers (``x-functions-key: ...``, ``Authorization: Basic ...``, a headers dict), as
settings (``API_SIGNING_KEY=...``, any ``*_KEY``/``*_SECRET``/``*_TOKEN``/``*_HEADER`` name), in
a URL's user information, or as a PEM private key.

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
from typing import cast

from shared.core.settings import LOG_LEVEL_AZURE_SDK_SETTING, declared

#: a separator as written, percent-encoded, or encoded twice (a URL inside a URL)
_EQ = r"(?:=|%3[dD]|%253[dD])"
_ASSIGN = r"(?:=|%3[dD]|%253[dD]|:|%3[aA]|%253[aA])"
_QUOTE = r"(?:[\"']|%22|%27|%2522|%2527)"
_SPACE = r"(?:\s|%20|\+)*"
#: the start of a name: not inside a longer word, or right after an encoded ``&``, ``?``,
#: space, quote or comma (``%26sig%3D``)
_NAME_START = r"(?:(?<![A-Za-z0-9_-])|(?<=%2[026cC])|(?<=%3[fF]))"
#: a value runs to the next separator (as written or percent-encoded)
_VALUE = r"(?:(?!%2[0267cC]|%252[0267cC])[^&\s\"',;<>})\]])+"
#: names whose value is a secret wherever they appear as ``name=value`` or ``"name": "value"``
_CREDENTIAL_FIELDS = (
    r"client_secret|client_assertion|assertion|refresh_token|access_token|id_token|password|"
    r"passwd|pwd|secret|sig|signature|api[_-]?key|x-functions-key|functions[_-]?key|"
    r"subscription[_-]?key|signing[_-]?key|sas[_-]?token"
)
#: headers that carry credentials, as a log line (``Name: value``) or a dict repr
_CREDENTIAL_HEADERS = (
    r"authorization|proxy-authorization|x-functions-key|x-identity-header|x-defender-signature|"
    r"ocp-apim-subscription-key|x-api-key|api-key|cookie|set-cookie|x-ms-token-aad-[a-z-]+"
)

_PATTERNS = (
    # PEM private keys (a certificate credential read from Key Vault)
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"),
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),  # JWTs
    re.compile(r"(?i)(bearer(?:\s+|%20|\+))[A-Za-z0-9._~+/=-]+"),
    # header forms: ``Authorization: Basic ...``, ``{'x-functions-key': '...'}``
    re.compile(
        rf"(?i)({_QUOTE}?\b(?:{_CREDENTIAL_HEADERS}){_QUOTE}?\s*(?::|%3[aA])\s*{_QUOTE}?)"
        r"(?:(?!%22|%27)[^\"'\r\n])+"
    ),
    # ``name=value``, ``"name": "value"``, percent-encoded or not
    re.compile(
        rf"(?i)({_NAME_START}{_QUOTE}?(?:{_CREDENTIAL_FIELDS}){_QUOTE}?{_SPACE}{_ASSIGN}{_SPACE}"
        rf"{_QUOTE}?){_VALUE}"
    ),
    # the function key in a query string (``?code=``): only with ``=``, so that a JSON error
    # ``"code": "429"`` stays readable
    re.compile(rf"(?i)({_NAME_START}code{_EQ}){_VALUE}"),
    # setting-shaped secrets: ``API_SIGNING_KEY=...``, ``"DEFENDER_CLIENT_SECRET": "..."``
    re.compile(
        r"(?<![A-Za-z0-9_])([\"']?[A-Z][A-Z0-9_]*(?:KEY|SECRET|PASSWORD|TOKEN|SIGNATURE|"
        r"CONNECTION_STRING|HEADER|CREDENTIALS?)[\"']?\s*[=:]\s*)(?:\"[^\"]*\"|'[^']*'|[^\s,;]+)"
    ),
    # storage and Service Bus connection strings, SAS
    re.compile(r"(?i)((?:AccountKey|SharedAccessKey|SharedAccessSignature)(?:=|%3[dD]))[^;\s&]+"),
    # a password in a URL's user information: ``https://user:password@host``
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(?=@)"),
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
        """Render the message once, mask it, and drop the arguments; mask the exception too.

        Some handlers read the exception itself rather than the formatted text (the
        Application Insights handler sends its message and stack trace as attributes), so the
        record's exception is replaced by one of the same type name whose message is masked.
        """
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            kind, error, trace = record.exc_info
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            if not isinstance(error, RedactedError):
                masked = _redacted_type(type(error))(redact(str(error)))
                record.exc_info = (type(masked), masked, trace)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RedactedError(Exception):
    """Stands in for a logged exception whose message was masked (same type name)."""


def _redacted_type(kind: type[BaseException]) -> type[RedactedError]:
    return type(kind.__name__, (RedactedError,), {"__module__": kind.__module__})


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
    """``LOG_LEVEL_AZURE_SDK``, or its declared default (WARNING) when it is unset or does not
    parse; the settings parse reports a bad value as a problem with the others."""
    level = declared(LOG_LEVEL_AZURE_SDK_SETTING).lenient(os.environ if env is None else env)
    return cast(int, level)  # the declaration has a fixed default, so never None


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
