"""Counters and the recent-request log behind `/_emulator/stats` and `/_emulator/requests`.

Only metadata is kept: endpoint, tenant, status, host, and whether an Authorization header was
a bearer token; never a token, secret or body.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One line of the request log."""

    time: str
    method: str
    host: str
    path: str
    query: str
    endpoint: str
    tenant: str | None
    status: int
    authorization: str

    def to_json(self) -> dict[str, Any]:
        """The record as the admin API shows it."""
        return {
            "time": self.time,
            "method": self.method,
            "host": self.host,
            "path": self.path,
            "query": self.query,
            "endpoint": self.endpoint,
            "tenant": self.tenant,
            "status": self.status,
            "authorization": self.authorization,
        }


class Stats:
    """Request counts by (endpoint, tenant, status), token counts, a bounded request log."""

    def __init__(self, log_size: int = 5000) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str | None, int]] = Counter()
        self._tokens: Counter[tuple[str, str, str, str]] = Counter()
        self._log: deque[RequestRecord] = deque(maxlen=log_size)

    def record_request(self, record: RequestRecord) -> None:
        """Count a request and append it to the log."""
        with self._lock:
            self._requests[(record.endpoint, record.tenant, record.status)] += 1
            self._log.append(record)

    def record_token(self, grant: str, tenant: str, client_id: str, resource: str) -> None:
        """Count an issued token."""
        with self._lock:
            self._tokens[(grant, tenant, client_id, resource)] += 1

    def clear(self) -> None:
        """Forget everything (admin reset)."""
        with self._lock:
            self._requests.clear()
            self._tokens.clear()
            self._log.clear()

    def snapshot(self) -> dict[str, Any]:
        """`{"requests": [...], "tokens": [...]}` sorted for stable output."""
        with self._lock:
            requests = [
                {"endpoint": e, "tenant": t, "status": s, "count": n}
                for (e, t, s), n in sorted(
                    self._requests.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2])
                )
            ]
            tokens = [
                {"grant": g, "tenant": t, "client_id": c, "resource": r, "count": n}
                for (g, t, c, r), n in sorted(self._tokens.items())
            ]
        return {"requests": requests, "tokens": tokens}

    def log(self) -> list[dict[str, Any]]:
        """The recent requests, oldest first."""
        with self._lock:
            return [r.to_json() for r in self._log]
