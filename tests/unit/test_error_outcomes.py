"""The one table of error outcomes: what the HTTP API and the CLI answer for each kind of error."""

from __future__ import annotations

import pytest

from shared.api.handlers import api_error
from shared.core.errors import (
    EXIT_FAILED,
    EXIT_USAGE,
    OUTCOMES,
    AuthError,
    BridgeError,
    CallerTokenError,
    ConfigError,
    ConflictError,
    ConsentError,
    ForbiddenError,
    HuntingQuotaError,
    NotFoundError,
    StorageError,
    ThrottledError,
    TransientError,
    UnexpectedResponseError,
    outcome_of,
)


def test_subclasses_come_before_their_bases() -> None:
    """A base listed before its subclass would shadow it: the table is ordered to prevent it."""
    kinds = [kind for kind, _ in OUTCOMES]
    for i, kind in enumerate(kinds):
        for later in kinds[i + 1 :]:
            assert not issubclass(later, kind), f"{later.__name__} is shadowed by {kind.__name__}"
    assert kinds[-1] is BridgeError


@pytest.mark.parametrize(
    ("exc", "status", "code", "exit_status"),
    [
        (ConfigError("bad"), 400, "invalid_request", EXIT_USAGE),
        (CallerTokenError("expired"), 401, "invalid_caller_token", EXIT_FAILED),
        (
            ConsentError("no consent", action="an admin consents"),
            403,
            "consent_required",
            EXIT_FAILED,
        ),
        (AuthError("refused"), 502, "upstream_authentication", EXIT_FAILED),
        (HuntingQuotaError("spent", retry_after=5), 429, "hunting_quota", EXIT_FAILED),
        (TransientError("reset"), 503, "upstream_unavailable", EXIT_FAILED),
        (NotFoundError("gone"), 404, "not_found", EXIT_FAILED),
        (ForbiddenError("role"), 502, "forbidden", EXIT_FAILED),
        (UnexpectedResponseError("odd"), 502, "unexpected_response", EXIT_FAILED),
        (StorageError("down"), 503, "storage", EXIT_FAILED),
        (ConflictError("held"), 409, "conflict", EXIT_FAILED),
        (BridgeError("internal detail"), 500, "internal_error", EXIT_FAILED),
    ],
)
def test_each_kind_answers_its_status_and_exit(
    exc: BridgeError, status: int, code: str, exit_status: int
) -> None:
    answer = api_error(exc)
    assert (answer.status, answer.code) == (status, code)
    assert outcome_of(exc).exit == exit_status


def test_headers_and_messages() -> None:
    throttled = api_error(ThrottledError("slow down", retry_after=2.2))
    assert throttled.headers == {"Retry-After": "3"}
    assert api_error(ThrottledError("slow down")).headers == {"Retry-After": "60"}
    assert api_error(StorageError("down")).headers == {"Retry-After": "30"}
    assert api_error(CallerTokenError("expired")).headers == {"WWW-Authenticate": "Bearer"}
    assert api_error(ForbiddenError("role"), user=True).status == 403
    hidden = api_error(BridgeError("secret internals"))
    assert "secret internals" not in hidden.message
    consent = ConsentError("no consent", action="an admin consents")
    assert consent.action in api_error(consent).message
