"""Poll links (``shared.api.poll``): a capability for one job, nothing more. The pure checks
(every part of the link is bound by the signature, the key is this purpose's own, expiry), then
the attacks through both faces: another job's id, another tenant, a token that does not allow
the job's tenant, a bad token beside a good link, an expired link, a key alone, no link; and the
signature never reaches a log line or an answer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.api.poll import LinkError, issue, verify
from tests.api.conftest import SIGNING_KEY, Answer, Face, caller, setenv, tenants
from tests.conftest import LocalCloud

KEY = "a-signing-key-of-at-least-32-characters-0123"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
JOB = "0123456789abcdef0123456789abcdef"
TENANT = "11111111-2222-3333-4444-555555555555"


def _check(link: dict[str, str], now: datetime = NOW, key: str = KEY) -> None:
    verify(
        key,
        job=link["job"],
        tenant=link["tenant"],
        expires=link["exp"],
        sig=link["sig"],
        now=now,
    )


def test_a_link_opens_until_it_expires() -> None:
    link = issue(KEY, JOB, TENANT, NOW, timedelta(minutes=60)).query()
    assert link["exp"] == str(int((NOW + timedelta(minutes=60)).timestamp()))
    _check(link)
    _check(link, NOW + timedelta(minutes=59, seconds=59))
    with pytest.raises(LinkError) as expired:
        _check(link, NOW + timedelta(minutes=60))
    assert expired.value.code == "poll_link_expired" and link["sig"] not in str(expired.value)
    # the same job's link is the same whenever it is asked for
    assert issue(KEY, JOB, TENANT, NOW, timedelta(minutes=60)).query() == link


@pytest.mark.parametrize(
    ("part", "value"),
    [
        ("job", "f" * 32),
        ("tenant", "99999999-2222-3333-4444-555555555555"),
        ("exp", "9999999999"),
        ("sig", "A" * 43),
        ("sig", ""),
        ("job", "../" + "0" * 29),
        ("exp", "-1"),
        ("exp", "99999999999999"),
        ("tenant", "common"),
    ],
)
def test_every_part_is_bound_by_the_signature(part: str, value: str) -> None:
    link = issue(KEY, JOB, TENANT, NOW, timedelta(minutes=60)).query()
    with pytest.raises(LinkError) as refused:
        _check({**link, part: value})
    assert refused.value.code == "invalid_poll_link" and link["sig"] not in str(refused.value)


def test_another_key_or_another_purpose_does_not_sign_a_link() -> None:
    link = issue(KEY, JOB, TENANT, NOW, timedelta(minutes=60)).query()
    with pytest.raises(LinkError):
        _check(link, key=KEY + "x")
    # the link's key is derived for this purpose: an HMAC under the setting itself is no link
    message = f"hunting-job|{JOB}|{TENANT}|{link['exp']}".encode()

    raw = base64.urlsafe_b64encode(hmac.new(KEY.encode(), message, hashlib.sha256).digest())
    with pytest.raises(LinkError):
        _check({**link, "sig": raw.rstrip(b"=").decode()})


# ---------------------------------------------------------------------- through the faces

ALERTS = {"template": "alerts-by-severity", "parameters": {"lookback": "30d", "limit": 5}}


#: jobs a test started: under serve they run on the server's threads, so each test waits for
#: its own to finish before the next one resets the storage they write to
_STARTED: list[tuple[Face, str]] = []


@pytest.fixture
def settle(cloud: LocalCloud, api_env: Any) -> Any:
    yield
    token = cloud.emulator.api_token("analyst")
    while _STARTED:
        face, job = _STARTED.pop()
        if face.name != "serve":
            continue  # under Functions a queued job waits for a worker: nothing runs
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answer = face.get(f"/hunting/jobs/{job}", token=token)
            if answer.status != 202:
                break
            time.sleep(0.2)


def _start(face: Face, tenant: str | None = None) -> tuple[str, dict[str, str]]:
    """A queued job and its poll link (query parameters)."""
    params = {"tenant": tenant} if tenant else None
    answer = face.request(
        "POST", "/hunting", params=params, json_body=ALERTS, headers={"Prefer": "respond-async"}
    )
    assert answer.status == 202, answer.body[:300]
    _STARTED.append((face, answer.json()["id"]))
    location = urlsplit(answer.header("Location") or "")
    assert location.path == "/api/hunting/status"
    return location.path, {k: v[0] for k, v in parse_qs(location.query).items()}


def _poll(face: Face, link: dict[str, str], **kw: Any) -> Answer:
    kw.setdefault("token", None)
    kw.setdefault("key", None)
    return face.get("/hunting/status", params=link, **kw)


def _refused(answer: Answer, status: int, code: str, sig: str) -> None:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.json()["error"]["code"] == code
    assert sig not in answer.body.decode()


@pytest.mark.e2e
@pytest.mark.usefixtures("settle")
def test_a_link_opens_its_own_job_only(face: Face, cloud: LocalCloud, api_env: Any) -> None:
    _, first = _start(face)
    _, second = _start(face)
    assert _poll(face, first).status == 202
    swapped = {**first, "job": second["job"]}
    _refused(_poll(face, swapped), 401, "invalid_poll_link", first["sig"])
    _, customer = tenants(cloud)
    moved = {**first, "tenant": customer}
    _refused(_poll(face, moved), 401, "invalid_poll_link", first["sig"])
    longer = {**first, "exp": str(int(first["exp"]) + 3600)}
    _refused(_poll(face, longer), 401, "invalid_poll_link", first["sig"])
    # nothing at all: neither a token nor a link
    _refused(_poll(face, {"job": first["job"]}), 401, "invalid_poll_link", first["sig"])


@pytest.mark.e2e
@pytest.mark.usefixtures("settle")
def test_an_expired_link_is_refused(face: Face, api_env: Any) -> None:
    _, link = _start(face)
    past = issue(SIGNING_KEY, link["job"], link["tenant"], NOW, timedelta(minutes=5))
    _refused(_poll(face, past.query()), 401, "poll_link_expired", past.sig)


@pytest.mark.e2e
@pytest.mark.usefixtures("settle")
def test_a_token_when_sent_decides(face: Face, cloud: LocalCloud, api_env: Any) -> None:
    """A token beside the link is validated and decides: a bad one is refused however good the
    link; one whose roles do not reach the job's tenant is refused; one that does opens the job
    without any link at all."""
    home, customer = tenants(cloud)
    _, link = _start(face, customer)
    expired = cloud.emulator.api_token("analyst", expired=True)
    _refused(_poll(face, link, token=expired, key=face.key), 401, "invalid_token", link["sig"])
    home_only = caller(cloud, "Hunting.Run", f"Tenant.{home}")
    forbidden = _poll(face, link, token=home_only, key=face.key)
    _refused(forbidden, 403, "tenant_forbidden", link["sig"])
    no_role = caller(cloud, "Incidents.Read", "Tenants.All", principal="reader")
    _refused(_poll(face, link, token=no_role, key=face.key), 403, "missing_role", link["sig"])
    analyst = cloud.emulator.api_token("analyst")
    bare = _poll(face, {"job": link["job"]}, token=analyst, key=face.key)
    assert bare.status == 202, bare.body[:300]


@pytest.mark.e2e
@pytest.mark.usefixtures("settle")
def test_a_key_alone_opens_no_job(
    face: Face, api_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll route is public at the host, so the host checks no key there: in key mode a
    key alone (real or not) must not open a job without its link."""
    _, link = _start(face)
    setenv(monkeypatch, API_AUTH_MODE="key")
    _refused(_poll(face, {"job": link["job"]}, key=face.key or "x"), 401, "invalid_poll_link", "-")
    assert _poll(face, link).status == 202  # the link still opens it


@pytest.mark.e2e
@pytest.mark.usefixtures("settle")
def test_without_a_signing_key_the_location_is_for_token_holders(
    face: Face, api_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_SIGNING_KEY")
    setenv(monkeypatch)
    answer = face.request("POST", "/hunting", json_body=ALERTS, headers={"Prefer": "respond-async"})
    assert answer.status == 202
    _STARTED.append((face, answer.json()["id"]))
    location = urlsplit(answer.header("Location") or "")
    job = location.path.rsplit("/", 1)[-1]
    assert location.path == f"/api/hunting/jobs/{job}" and not location.query
    refused = _poll(face, {"job": job})
    assert refused.status == 401 and refused.json()["error"]["code"] == "unauthenticated"


@pytest.mark.e2e
@pytest.mark.usefixtures("settle")
def test_the_signature_never_reaches_a_log(
    face: Face, api_env: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        _, link = _start(face)
        assert _poll(face, link).status == 202
        _poll(face, {**link, "job": uuid.uuid4().hex})
    assert link["sig"] not in caplog.text
