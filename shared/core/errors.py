"""The one exception hierarchy of Defender Bridge, typed by what the caller does about it.

::

    BridgeError                      base: catch this to handle every failure raised by shared/
    ├── ConfigError                  a setting or argument is missing or malformed: fix, don't retry
    │   └── CallbackRefusedError     a push callback URL (or where it resolves) is not allowed
    ├── AuthError                    no token: fix the identity, app registration, secret or consent
    │   ├── SecretAccessError        Key Vault refused or lacks the credential (403/404)
    │   ├── ConsentError             the app is not consented/known in a tenant: an admin must act
    │   └── CallerTokenError         a caller's token is expired, malformed or for another app (401)
    ├── UpstreamError                Defender / Graph answered with a failure (carries ids)
    │   ├── TransientError           worth retrying later: 5xx, timeouts, resets
    │   │   └── ThrottledError       429: wait ``retry_after`` seconds
    │   │       └── HuntingQuotaError  hunting CPU allocation spent: wait for the next cycle
    │   ├── UnauthorizedError        401 from the API: token audience/tenant/expiry
    │   ├── ForbiddenError           403: the token lacks a role (``missing_role`` names it)
    │   ├── NotFoundError            404: no such incident
    │   ├── BadRequestError          400: the API's message says what is wrong
    │   │   └── HuntingLimitError    the query ran too long or its result is too big: narrow it
    │   └── UnexpectedResponseError  the answer does not match the documented contract
    ├── StorageError                 Azure Storage failed (not a conflict)
    ├── LeaseLostError               a run lost its tenant's lease mid-run and stopped: a failure
    ├── ConflictError                another run holds the tenant or moved its state: skip this run
    └── TenantFailedError            a queued tenant's ingestion failed: the queue retries it

``OUTCOMES`` (at the end) maps each kind to the HTTP status and the exit status the faces
answer with: one table, read by ``shared.api`` and ``shared.cli``.

Messages never contain a secret, token, assertion or connection string: SDK errors are
translated at the boundary (``raise ... from``) into these types with messages we write.
"""

from __future__ import annotations

from dataclasses import dataclass


class BridgeError(Exception):
    """Base class of every error raised on purpose by ``shared``."""

    #: short machine-readable code used by the HTTP API and JSON summaries
    code = "error"


class ConfigError(BridgeError):
    """Settings or arguments are missing or malformed; retrying will not help."""

    code = "configuration"

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class CallbackRefusedError(ConfigError):
    """A push callback URL, or an address its host resolves to, is not allowed: nothing is sent.

    ``retryable`` is True when the refusal may pass (the host did not resolve just now); the
    message names the host at most, never the URL (its query holds a credential).
    """

    code = "callback_refused"

    def __init__(self, problem: str, *, retryable: bool = False) -> None:
        super().__init__(problem)
        self.retryable = retryable


class AuthError(BridgeError):
    """A token could not be obtained.

    ``error`` and ``correlation_id`` come from Entra ID when it answered (never the secret).
    """

    code = "authentication"

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        error_codes: tuple[int, ...] = (),
        correlation_id: str | None = None,
        tenant: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.error_codes = error_codes
        self.correlation_id = correlation_id
        self.tenant = tenant


class SecretAccessError(AuthError):
    """Key Vault did not give us the app credential (missing, forbidden, unreachable)."""

    code = "secret_access"


class ConsentError(AuthError):
    """The app is not consented in (or unknown to) a tenant; ``action`` says what to do."""

    code = "consent_required"

    def __init__(self, message: str, *, action: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.action = action


class CallerTokenError(AuthError):
    """The caller's token (user context) cannot be exchanged: expired, malformed, or issued for
    another audience. An HTTP front end answers 401 and the caller signs in again."""

    code = "invalid_caller_token"


class UpstreamError(BridgeError):
    """The Defender or Graph API answered with a failure, or could not be reached."""

    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        api_code: str | None = None,
        request_id: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.api_code = api_code
        self.request_id = request_id
        self.correlation_id = correlation_id


class TransientError(UpstreamError):
    """A failure that may pass: 5xx, timeouts, connection resets, truncated bodies."""

    code = "upstream_unavailable"


class ThrottledError(TransientError):
    """429: the quota is spent; ``retry_after`` is the wait the service asked for (seconds)."""

    code = "throttled"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class UnauthorizedError(UpstreamError):
    """401 from the API: the token was refused (wrong audience, tenant or expired)."""

    code = "unauthorized"


class ForbiddenError(UpstreamError):
    """403: the caller lacks a permission; ``missing_role`` names it when known."""

    code = "forbidden"

    def __init__(self, message: str, *, missing_role: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.missing_role = missing_role


class NotFoundError(UpstreamError):
    """404: the incident (or route) does not exist."""

    code = "not_found"


class BadRequestError(UpstreamError):
    """400: the API refused the request; the message is the API's own."""

    code = "bad_request"


class HuntingQuotaError(ThrottledError):
    """429 because the tenant spent its advanced-hunting CPU allocation: every query is blocked
    until the next 15-minute cycle (``retry_after`` when the service says). ``quota`` is the
    service's own description of the limit.
    https://learn.microsoft.com/defender-xdr/api-advanced-hunting"""

    code = "hunting_quota"

    def __init__(self, message: str, *, quota: str = "", **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.quota = quota


class HuntingLimitError(BadRequestError):
    """The query hit a per-query limit of advanced hunting: ``limit`` is ``"timeout"`` (it ran
    longer than the 3-minute server limit) or ``"result_size"`` (its result is over 50 MB).
    The same query fails the same way again: narrow it (shorter time range, fewer columns,
    ``summarize``) instead of retrying."""

    code = "hunting_limit"

    def __init__(self, message: str, *, limit: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.limit = limit


class UnexpectedResponseError(UpstreamError):
    """The API answered something outside its documented contract."""

    code = "unexpected_response"


class StorageError(BridgeError):
    """Azure Storage failed for a reason other than a concurrency conflict."""

    code = "storage"


class LeaseLostError(BridgeError):
    """The tenant's lease was lost during a run (expired and taken, or broken): the run stopped
    writing at once. A failure to report, not a skip; the next run resumes at the checkpoint."""

    code = "lease_lost"


class ConflictError(BridgeError):
    """Another run holds the tenant's lock or changed its state first; this run should skip."""

    code = "conflict"


class TenantFailedError(BridgeError):
    """The queue handler's ingestion of one tenant failed; raised so the Functions host retries
    the message (and, after ``maxDequeueCount`` attempts, moves it to the poison queue)."""

    code = "tenant_failed"

    def __init__(self, tenant: str, message: str, *, error_code: str | None = None) -> None:
        super().__init__(f"tenant {tenant}: {message}")
        self.tenant = tenant
        self.error_code = error_code


# ---------------------------------------------------------------------------- what faces answer

#: exit statuses of the command line: success, the operation failed, bad arguments or settings
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the faces answer for one kind of error: the HTTP API's status and code, and the
    command line's exit status.

    Attributes:
        status: the HTTP status (``user_status`` instead when the call acted as a user).
        code: the HTTP error code (None: the exception's own ``code``).
        exit: the CLI's exit status.
        retry_after: ``Retry-After`` seconds to send (None: none; ``THROTTLE``: the
            service's own wait, at least 1 second).
        challenge: send ``WWW-Authenticate: Bearer`` (the caller's token was refused).
        action: add the exception's ``action`` (what an admin must do) to the message.
        hidden: the message may name internals: answer a generic one (see the logs).
    """

    status: int
    code: str | None = None
    exit: int = EXIT_FAILED
    user_status: int | None = None
    retry_after: int | None = None
    challenge: bool = False
    action: bool = False
    hidden: bool = False


#: ``Retry-After`` taken from a ``ThrottledError``'s own wait
THROTTLE = -1

#: the one mapping of errors to what the faces answer: the first class an error is an instance
#: of decides, so subclasses come before their bases. Read by ``shared.api`` (status, code,
#: headers) and ``shared.cli`` (exit status).
OUTCOMES: tuple[tuple[type[BridgeError], Outcome], ...] = (
    (ConfigError, Outcome(400, "invalid_request", exit=EXIT_USAGE)),
    (CallerTokenError, Outcome(401, challenge=True)),
    (ConsentError, Outcome(403, action=True)),
    (AuthError, Outcome(502, "upstream_authentication")),
    (ThrottledError, Outcome(429, retry_after=THROTTLE)),
    (TransientError, Outcome(503, retry_after=30)),
    (NotFoundError, Outcome(404)),
    (BadRequestError, Outcome(400, "upstream_bad_request")),
    # the caller's own permissions (user context) or the app's (a deployment problem)
    (ForbiddenError, Outcome(502, user_status=403)),
    (UpstreamError, Outcome(502)),
    (StorageError, Outcome(503, retry_after=30)),
    (ConflictError, Outcome(409)),
    (BridgeError, Outcome(500, "internal_error", hidden=True)),
)


def outcome_of(exc: BridgeError) -> Outcome:
    """The faces' answer to ``exc`` (see ``OUTCOMES``)."""
    return next(outcome for kind, outcome in OUTCOMES if isinstance(exc, kind))
