"""The process's HTTP session policy, in one place."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies, get_netrc_auth
from urllib3.util.retry import Retry

if TYPE_CHECKING:
    from requests.sessions import _Settings  # the stubs' name of what it returns

#: requests' own merge of a request's setting into the session's (typed here: it is not)
_merge: Callable[[Any, Any], Any] = merge_setting

USER_AGENT = "DefenderBridge/0.1"


def build_session(*, ca_cert: Path | None = None, pool_size: int = 32) -> requests.Session:
    """A session with a bounded pool and a single connect retry (like MSAL's own default).

    Status-based retries are not done here: ``DefenderClient.call`` owns them, so retries never
    stack. With ``ca_cert`` (emulator mode only) the session trusts exactly that CA and ignores
    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, which would otherwise override ``verify``
    (docs/local-cloud.md#ca-bundle-variables).
    """
    session = SteadyEnvironmentSession()
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


class SteadyEnvironmentSession(requests.Session):
    """A ``requests.Session`` that reads the environment once per origin, not on every request.

    With ``trust_env`` (the default) ``requests`` looks in the environment on every request:
    ``get_netrc_auth`` (the netrc files), ``get_environ_proxies`` (every variable, for
    ``*_proxy`` and ``no_proxy``) and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``. Profiling a
    backfill, that was about 5% of its CPU (a storage call is small; the Azure SDKs send theirs
    through such a session). Here each is looked up by the same ``requests`` functions, once
    per origin (scheme, host and port) and ``no_proxy`` argument, and kept for the session's
    life: a proxy, CA bundle or netrc entry in the environment is honoured exactly as before;
    one changed while the process runs applies to the next process (the Functions host
    restarts on a change of app settings).
    """

    def __init__(self) -> None:
        super().__init__()
        self._steady_lock = threading.Lock()
        self._proxies: dict[tuple[str, str, str | None], dict[str, str]] = {}
        self._netrc: dict[tuple[str, str], tuple[str, str] | None] = {}
        self._bundle: tuple[str | None] | None = None

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if self.trust_env and not request.auth and not self.auth:
            parts = urlsplit(_text(request.url))
            # a URL with its own user info is authenticated by it, not by netrc: left to requests
            if parts.username is None and parts.password is None:
                key = (parts.scheme, parts.netloc)
                if key not in self._netrc:
                    found = get_netrc_auth(request.url)
                    with self._steady_lock:
                        self._netrc[key] = found
                # a callable that changes nothing stands for "no netrc entry" (requests would
                # look again when ``auth`` is empty)
                request.auth = self._netrc[key] or _unchanged
        return super().prepare_request(request)

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> _Settings:
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        # ``requests.Session.merge_environment_settings`` with ``trust_env``, the environment's
        # part looked up once
        no_proxy = proxies.get("no_proxy") if proxies is not None else None
        parts = urlsplit(_text(url))
        key = (parts.scheme, parts.netloc, no_proxy)
        found = self._proxies.get(key)
        if found is None:
            found = get_environ_proxies(_text(url), no_proxy=no_proxy)
            with self._steady_lock:
                self._proxies[key] = found
        if proxies is not None:
            for k, v in found.items():
                proxies.setdefault(k, v)
        if verify is True or verify is None:
            if self._bundle is None:
                bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                self._bundle = (bundle,)
            verify = self._bundle[0] or verify
        return {
            "proxies": _merge(proxies, self.proxies),
            "stream": _merge(stream, self.stream),
            "verify": _merge(verify, self.verify),
            "cert": _merge(cert, self.cert),
        }


def _text(url: Any) -> str:
    return url.decode("utf-8") if isinstance(url, bytes) else str(url)


def _unchanged(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request
