"""Pure classification of API answers into data or one of our typed errors.

Error bodies (docs/defender-service.md#errors): legacy ``{"error": {"code", "message", "target"}}``
where ``target`` is a tracking id; Graph ``{"error": {"code", "message", "innerError":
{"request-id", "client-request-id", "date"}}}``. A 429 carries ``Retry-After`` seconds, and the
legacy body says which quota was hit ("maximum allowed 45 per 00:01:00").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shared.core import jsonio
from shared.core.errors import (
    BadRequestError,
    ForbiddenError,
    HuntingLimitError,
    HuntingQuotaError,
    NotFoundError,
    ThrottledError,
    TransientError,
    UnauthorizedError,
    UnexpectedResponseError,
)

#: every permission the app's features need, so a 403 message can be matched to one
KNOWN_ROLES = (
    "Incident.ReadWrite.All",
    "Incident.Read.All",
    "AdvancedHunting.Read.All",
    "SecurityIncident.ReadWrite.All",
    "SecurityIncident.Read.All",
    "SecurityAlert.ReadWrite.All",
    "SecurityAlert.Read.All",
    "ThreatHunting.Read.All",
)

_QUOTA = re.compile(r"per (\d+):(\d\d):(\d\d)")
#: advanced hunting's documented result-size answer (HTTP 400): "Query execution has exceeded
#: the allowed result size. Optimize your query by limiting the number of results and try again."
#: (https://learn.microsoft.com/defender-endpoint/api/run-advanced-query-api)
_RESULT_SIZE = re.compile(r"exceeded the allowed result size", re.IGNORECASE)
#: the 3-minute timeout "returns an error" whose status and wording are not documented
#: (https://learn.microsoft.com/defender-xdr/api-advanced-hunting): recognize the usual words
_TIMEOUT = re.compile(
    r"time ?out|timed out|time limit|execution time|exceeded the allowed (?:time|duration)",
    re.IGNORECASE,
)
#: "429 ... reaching quota limit either by number of requests or by CPU" (same pages)
_CPU = re.compile(r"\bcpu\b", re.IGNORECASE)
_MAX_MESSAGE = 300


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _error_parts(body: Any) -> tuple[str | None, str | None, str | None]:
    """(code, message, request id) from either API's error body."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None, None, None
    err = body["error"]
    code = err.get("code") if isinstance(err.get("code"), str) else None
    message = err.get("message") if isinstance(err.get("message"), str) else None
    request_id = err.get("target") if isinstance(err.get("target"), str) else None
    inner = err.get("innerError") or err.get("innererror")
    if isinstance(inner, dict) and isinstance(inner.get("request-id"), str):
        request_id = inner["request-id"]
    return code, message, request_id


def retry_after_seconds(headers: Mapping[str, str], message: str | None) -> float | None:
    """The wait a 429 asks for: ``Retry-After`` seconds, else the quota window in the message."""
    raw = _lower_headers(headers).get("retry-after", "").strip()
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass  # an HTTP-date form is allowed by RFC 9110 but not used by these APIs
    if message:
        match = _QUOTA.search(message)
        if match:
            h, m, s = (int(g) for g in match.groups())
            return float(h * 3600 + m * 60 + s)
    return None


def decode_json(status: int, body: bytes) -> Any:
    """Decode a body as JSON; None when empty.

    Raises:
        TransientError: a success answer whose JSON is cut off or malformed (a truncated
            transfer is the usual cause, so it is worth another try).
    """
    if not body.strip():
        return None
    try:
        return jsonio.loads(body)  # json.loads, faster where exactly equal (shared.core.jsonio)
    except ValueError:
        if 200 <= status < 300:
            raise TransientError(
                f"HTTP {status} with a body that is not complete JSON", status=status
            ) from None
        return None


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    required_role: str | None = None,
    client_request_id: str | None = None,
    hunting: bool = False,
) -> Any:
    """Return the decoded JSON of a success, or raise the typed error for a failure.

    ``required_role`` names the permission the operation needs, for a 403 whose message names
    none; ``client_request_id`` is the id we sent, the correlation id when the answer has none.
    ``hunting``: an advanced hunting answer, whose limits get their own types
    (``HuntingQuotaError`` for the CPU quota, ``HuntingLimitError`` for the timeout and the
    result size) so that the caller neither retries a query that cannot pass nor gives up on
    one that only has to wait.

    Raises:
        UpstreamError: a subclass chosen by status (see ``shared.core.errors``).
    """
    data = decode_json(status, body)
    if 200 <= status < 300:
        return data
    code, message, request_id = _error_parts(data)
    h = _lower_headers(headers)
    request_id = request_id or h.get("request-id") or h.get("x-ms-request-id")
    correlation_id = (
        h.get("client-request-id") or h.get("x-ms-correlation-request-id") or client_request_id
    )
    text = (message or "").strip()[:_MAX_MESSAGE]
    detail = f": {text}" if text else ""
    common: dict[str, Any] = {
        "status": status,
        "api_code": code,
        "request_id": request_id,
        "correlation_id": correlation_id,
    }
    if status == 429:
        wait = retry_after_seconds(headers, message)
        if hunting and _CPU.search(text):
            raise HuntingQuotaError(
                f"advanced hunting is blocked: the tenant's CPU quota is used up{detail}; "
                "queries run again after the next 15-minute cycle",
                quota=text,
                retry_after=wait,
                **common,
            )
        raise ThrottledError(f"throttled by the API (HTTP 429){detail}", retry_after=wait, **common)
    if hunting and status in (400, 408, 504) and _RESULT_SIZE.search(text):
        raise HuntingLimitError(
            f"the hunting result is larger than the service allows{detail}; return fewer rows "
            "or columns (take, project, summarize)",
            limit="result_size",
            **common,
        )
    if hunting and status in (400, 408, 504) and _TIMEOUT.search(text):
        raise HuntingLimitError(
            f"the hunting query ran longer than the service's 3-minute limit{detail}; narrow "
            "it (a shorter time range, filters first) instead of retrying",
            limit="timeout",
            **common,
        )
    if status == 400:
        raise BadRequestError(f"the API refused the request{detail}", **common)
    if status == 401:
        raise UnauthorizedError(
            f"the API refused the token (HTTP 401){detail}; check the token's audience, tenant "
            "and expiry",
            **common,
        )
    if status == 403:
        role = next((r for r in KNOWN_ROLES if r.lower() in text.lower()), required_role)
        hint = f"; grant the app '{role}' and admin-consent it" if role else ""
        raise ForbiddenError(
            f"permission denied (HTTP 403){detail}{hint}", missing_role=role, **common
        )
    if status == 404:
        raise NotFoundError(f"not found (HTTP 404){detail}", **common)
    if status == 408 or status >= 500:
        raise TransientError(f"the API is unavailable (HTTP {status}){detail}", **common)
    raise UnexpectedResponseError(f"unexpected HTTP {status} from the API{detail}", **common)
