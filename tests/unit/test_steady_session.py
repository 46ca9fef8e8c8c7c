"""SteadyEnvironmentSession: the environment's proxies, CA bundle and netrc, as requests reads
them, but looked up once per origin instead of on every request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from shared.defender import session as module
from shared.defender.session import SteadyEnvironmentSession

URLS = [
    "https://acct.blob.core.windows.net/c/b?comp=lease",
    "https://acct.blob.core.windows.net/c/other",
    "http://127.0.0.1:10000/devstoreaccount1/c",
    "https://graph.microsoft.com/v1.0/security/incidents",
    "https://internal.example.com:8443/x",
]

ENVIRONMENTS = {
    "nothing": {},
    "a proxy for everything": {"HTTPS_PROXY": "http://proxy:3128", "HTTP_PROXY": "http://p:80"},
    "a proxy with no_proxy": {
        "HTTPS_PROXY": "http://proxy:3128",
        "NO_PROXY": "127.0.0.1,.example.com",
    },
    "a CA bundle": {"REQUESTS_CA_BUNDLE": "/etc/custom-ca.pem"},
    "cURL's CA bundle": {"CURL_CA_BUNDLE": "/etc/curl-ca.pem"},
}


def _settings(
    session: requests.Session, url: str, verify: bool | str | None = None
) -> tuple[str | None, dict[str, Any]]:
    prepared = session.prepare_request(requests.Request("GET", url))
    merged = session.merge_environment_settings(prepared.url, {}, None, verify, None)
    return prepared.headers.get("Authorization"), dict(merged)


@pytest.mark.parametrize("env", list(ENVIRONMENTS.values()), ids=list(ENVIRONMENTS))
def test_it_honours_the_environment_exactly_as_requests_does(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [*ENVIRONMENTS["a proxy with no_proxy"], "HTTP_PROXY", "ALL_PROXY", "no_proxy"]:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine internal.example.com login me password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ours, plain = SteadyEnvironmentSession(), requests.Session()
    for _ in range(2):  # the second round is served from what the first looked up
        for url in URLS:
            for verify in (None, True, False, "/given.pem"):
                assert _settings(ours, url, verify) == _settings(plain, url, verify), url


def test_the_environment_is_read_once_per_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_proxies, real_netrc = requests.utils.get_environ_proxies, requests.utils.get_netrc_auth

    def proxies(url: str, no_proxy: str | None = None) -> dict[str, str]:
        calls.append("proxies")
        return real_proxies(url, no_proxy=no_proxy)

    def netrc(url: str) -> tuple[str, str] | None:
        calls.append("netrc")
        return real_netrc(url)

    monkeypatch.setattr(module, "get_environ_proxies", proxies)
    monkeypatch.setattr(module, "get_netrc_auth", netrc)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    session = SteadyEnvironmentSession()
    for _ in range(50):
        _, merged = _settings(session, URLS[0])
        assert merged["proxies"] == {"https": "http://proxy:3128"}
    assert calls == ["netrc", "proxies"]


def test_a_url_with_user_info_keeps_its_own_credentials() -> None:
    prepared = SteadyEnvironmentSession().prepare_request(
        requests.Request("GET", "https://user:pw@host.example/x")
    )
    plain = requests.Session().prepare_request(
        requests.Request("GET", "https://user:pw@host.example/x")
    )
    assert prepared.headers["Authorization"] == plain.headers["Authorization"]


def test_without_trust_env_requests_decides() -> None:
    session = SteadyEnvironmentSession()
    session.trust_env = False
    assert _settings(session, URLS[0]) == _settings(_untrusting(), URLS[0])


def _untrusting() -> requests.Session:
    plain = requests.Session()
    plain.trust_env = False
    return plain
