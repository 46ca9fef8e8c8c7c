"""The process's HTTP session policy, in one place."""

from __future__ import annotations

from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

USER_AGENT = "DefenderBridge/0.1"


def build_session(*, ca_cert: Path | None = None, pool_size: int = 32) -> requests.Session:
    """A session with a bounded pool and a single connect retry (like MSAL's own default).

    Status-based retries are not done here: ``DefenderClient.call`` owns them, so retries never
    stack. With ``ca_cert`` (emulator mode only) the session trusts exactly that CA and ignores
    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, which would otherwise override ``verify``
    (docs/local-cloud.md#ca-bundle-variables).
    """
    session = requests.Session()
    adapter = HTTPAdapter(
        pool_connections=pool_size,
        pool_maxsize=pool_size,
        # respect_retry_after_header=False: otherwise urllib3 treats a 429/503 carrying
        # Retry-After as retryable whatever status=0 says, and raises RetryError instead of
        # handing the answer (and its Retry-After) to the client, which owns status retries
        max_retries=Retry(
            total=1,
            connect=1,
            read=0,
            status=0,
            other=0,
            redirect=0,
            respect_retry_after_header=False,
            raise_on_status=False,
        ),
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    if ca_cert is not None:
        session.trust_env = False
        session.verify = str(ca_cert)
    return session
