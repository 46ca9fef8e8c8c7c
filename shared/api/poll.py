"""Poll links: a short-lived signed capability to read one hunting job. Pure.

A 202's ``Location`` must work for whoever polls it, however little they re-send. Logic Apps
re-sends the action's ``authentication`` (a managed identity's token: fine, the token decides),
but a caller may re-send nothing at all; and App Service Authentication in front answers 401
to a request without a token before the app sees it. So the link itself carries a valet key
(https://learn.microsoft.com/azure/architecture/patterns/valet-key):
``/api/hunting/status?job=<id>&tenant=<tenant>&exp=<unix seconds>&sig=<mac>``, where ``sig`` is
HMAC-SHA256, under a key derived from ``API_SIGNING_KEY`` for this purpose alone, of the job
id, the tenant the job acts in and the expiry. It reads that one job's state and answer until
it expires, nothing else. The route's path is fixed and excluded from App Service
Authentication (an exact path: docs/logic-apps.md); the job id travels in the query.

The expiry is the job's creation plus ``API_POLL_LINK_MINUTES``, so every 202 of a job names
the same link. The ``sig`` is compared in constant time, verified before anything is read from
storage, never logged (``shared.core.logs`` masks ``sig=`` values) and never repeated in an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PURPOSE = b"poll-link"
#: ``exp`` far beyond any lifetime the settings allow is refused unverified
MAX_EXPIRY = datetime(2200, 1, 1, tzinfo=UTC)
_JOB = re.compile(r"[0-9a-f]{32}")
_SIG = re.compile(r"[A-Za-z0-9_-]{43}")
_EXP = re.compile(r"[0-9]{1,12}")


class LinkError(ValueError):
    """A poll link that does not open its job (expired, altered, or not one of ours)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Link:
    """A poll link's query: which job, in which tenant, until when, and its signature."""

    job: str
    tenant: str
    expires: int
    sig: str

    def query(self) -> dict[str, str]:
        """The query parameters of the link."""
        return {"job": self.job, "tenant": self.tenant, "exp": str(self.expires), "sig": self.sig}


def _key(signing_key: str) -> bytes:
    return hmac.new(signing_key.encode("utf-8"), PURPOSE, hashlib.sha256).digest()


def _mac(signing_key: str, job: str, tenant: str, expires: int) -> str:
    message = f"hunting-job|{job}|{tenant}|{expires}".encode()
    digest = hmac.new(_key(signing_key), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue(signing_key: str, job: str, tenant: str, created: datetime, lifetime: timedelta) -> Link:
    """The link of a job created at ``created`` (the same link for every 202 of the job)."""
    expires = int((created + lifetime).timestamp())
    return Link(job, tenant, expires, _mac(signing_key, job, tenant, expires))


def verify(
    signing_key: str, *, job: str, tenant: str, expires: str, sig: str, now: datetime
) -> Link:
    """The link these query values make, if it is ours, intact and not expired.

    Raises:
        LinkError: ``invalid_poll_link`` (malformed, altered, or signed with another key) or
            ``poll_link_expired``; the message never repeats the signature.
    """
    invalid = LinkError(
        "invalid_poll_link",
        "this poll link is not valid (altered, or not issued by this deployment): poll with an "
        "Entra ID token, or use the Location exactly as the 202 gave it",
    )
    if not (_JOB.fullmatch(job) and _EXP.fullmatch(expires) and _SIG.fullmatch(sig)):
        raise invalid
    if not re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", tenant):
        raise invalid
    when = int(expires)
    if when > MAX_EXPIRY.timestamp():
        raise invalid
    expected = _mac(signing_key, job, tenant, when)
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        raise invalid
    if now.timestamp() >= when:
        ended = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise LinkError(
            "poll_link_expired",
            f"this poll link expired at {ended}: poll with an Entra ID token "
            f"(GET /api/hunting/jobs/{job}) or run the hunt again",
        )
    return Link(job, tenant, when, sig)
