"""Push's pure parts: the callback parser and address policy, keys and signatures, message
packing, filters, and the delivery decisions (verdicts, Retry-After, backoff, breaker)."""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.core.errors import CallbackRefusedError
from shared.push.keys import PushKeys, SealError, sign, verify
from shared.push.messages import (
    BREAKER_FAILURES,
    MAX_MESSAGE_BYTES,
    Answer,
    BadMessageError,
    Breaker,
    Filter,
    backoff,
    changes,
    deliveries,
    delivery_id,
    judge,
    parse,
    retry_after,
)
from shared.push.target import (
    CallbackTarget,
    address_problem,
    check_addresses,
    host_allowed,
    parse_callback,
)

ALLOWED = (".logic.azure.com", ".environment.api.powerplatform.com", "localhost")
T = "11111111-1111-1111-1111-111111111111"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "url",
    [
        # Logic Apps multitenant (listCallbackUrl, with and without the explicit port)
        "https://prod-03.westus.logic.azure.com:443/workflows/c4ed9335bc864140a11f4508d19acea3/"
        "triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun"
        "&sv=1.0&sig=abc_-DEF",
        "https://prod-03.westus.logic.azure.com/workflows/x/triggers/manual/run?sig=a",
        # Power Automate's newer trigger host
        "https://default64661b8d1758459ca270b19fe3578e.a7.environment.api.powerplatform.com:443/"
        "powerautomate/automations/direct/workflows/c3/triggers/manual/paths/invoke?api-version=1",
        "HTTPS://PROD-1.EASTUS.LOGIC.AZURE.COM/hook",
        "https://xn--80ak6aa92e.logic.azure.com/hook",  # a punycode label that round-trips
    ],
)
def test_real_callback_urls_parse(url: str) -> None:
    target = parse_callback(url, allowed=ALLOWED, allow_local=False)
    assert target.port == 443 and target.host == target.host.lower()
    assert "sig" not in repr(target) and "sig" not in target.redacted()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1\\x.logic.azure.com/hook", "backslash"),
        ("https://x.logic.azure.com@127.0.0.1/hook", "credentials"),
        ("https://127.0.0.1:443@x.logic.azure.com/hook", "credentials"),
        ("https://127.0.0.1/hook", "IP address"),
        ("https://2130706433/hook", "IP address"),
        ("https://0x7f.1/hook", "IP address"),
        ("https://0177.0.0.1/hook", "IP address"),
        ("https://127.1/hook", "IP address"),
        ("https://[::1]/hook", "IP address"),
        ("https://[::ffff:127.0.0.1]:443/hook", "IP address"),
        ("https://x.logic.azure.com./hook", "dot"),
        ("https://x\u3002logic.azure.com/hook", "ASCII"),
        ("https://x\uff0elogic.azure.com/hook", "ASCII"),
        ("https://xn--zz.logic.azure.com/hook", "IDNA"),
        ("https://ab--c.logic.azure.com/hook", "IDNA"),
        ("https://x.logic.azure.com:8443/hook", "443"),
        ("https://x.logic.azure.com:/hook", "port"),
        ("https://x.logic.azure.com:99999/hook", "port"),
        ("http://x.logic.azure.com/hook", "https"),
        ("https://x.logic.azure.com/a b", "ASCII"),
        ("https://x.logic.azure.com/a\x00", "ASCII"),
        ("https://x.logic.azure.com/#frag", "fragment"),
        ("https://x.logic.azure.com/%zz", "percent"),
        ("https://x.logic.azure.com/a<b", "escape"),
        ("https://evillogic.azure.com/hook", "not allowed"),
        ("https://logic.azure.com/hook", "not allowed"),
        ("https://logic.azure.com.evil.net/hook", "not allowed"),
        ("https://localhost:8443/hook", "443"),  # the local receiver is off here
        ("https://" + "a" * 2100 + ".logic.azure.com/", "longer"),
        ("", "non-empty"),
    ],
)
def test_bypass_spellings_are_refused(url: str, reason: str) -> None:
    with pytest.raises(CallbackRefusedError, match=reason) as info:
        parse_callback(url, allowed=ALLOWED, allow_local=False)
    assert "/hook" not in str(info.value)  # never echoes the URL


def test_an_allow_list_naming_an_ip_still_refuses_ip_literals() -> None:
    with pytest.raises(CallbackRefusedError, match="IP address"):
        parse_callback("https://127.0.0.1/hook", allowed=("127.0.0.1",), allow_local=True)


def test_local_receiver_is_localhost_on_any_port_and_loopback_only() -> None:
    target = parse_callback("https://localhost:8443/hook", allowed=ALLOWED, allow_local=True)
    assert target.local and target.port == 8443 and target.authority == "localhost:8443"
    assert check_addresses(target, lambda h, p: ["127.0.0.1", "::1"])
    with pytest.raises(CallbackRefusedError, match="loopback"):
        check_addresses(target, lambda h, p: ["10.0.0.1"])
    # another name resolving to loopback is not the local receiver
    other = parse_callback("https://x.logic.azure.com/hook", allowed=ALLOWED, allow_local=True)
    with pytest.raises(CallbackRefusedError, match="loopback"):
        check_addresses(other, lambda h, p: ["127.0.0.1"])


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("168.63.129.16", "metadata"),
        ("100.64.0.1", "shared"),
        ("100.100.100.200", "metadata"),
        ("192.0.0.192", "metadata"),
        ("192.0.0.5", "private"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to refuse
        ("198.18.0.1", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd00:ec2::254", "metadata"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "IPv6 form of a loopback"),
        ("::ffff:169.254.169.254", "IPv6 form of a cloud metadata"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("64:ff9b::a9fe:a9fe", "translation"),
        ("2002:7f00:1::1", "tunnelling"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "tunnelling"),
        ("2001:db8::1", "private"),  # documentation prefix
    ],
)
def test_non_public_addresses_are_refused(address: str, problem: str) -> None:
    found = address_problem(ipaddress.ip_address(address))
    assert found is not None and problem in found


@pytest.mark.parametrize("address", ["8.8.8.8", "20.42.1.1", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_one_bad_answer_refuses_the_host_and_failures_to_resolve_are_retryable() -> None:
    target = CallbackTarget("x.logic.azure.com", 443, "/h")
    assert [str(a) for a in check_addresses(target, lambda h, p: ["8.8.8.8"])] == ["8.8.8.8"]
    with pytest.raises(CallbackRefusedError, match="private") as bad:
        check_addresses(target, lambda h, p: ["8.8.8.8", "10.0.0.1"])
    assert not bad.value.retryable

    def broken(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    with pytest.raises(CallbackRefusedError, match="does not resolve") as info:
        check_addresses(target, broken)
    assert info.value.retryable
    with pytest.raises(CallbackRefusedError, match="not an address"):
        check_addresses(target, lambda h, p: ["not-an-ip"])
    with pytest.raises(CallbackRefusedError, match="does not resolve"):
        check_addresses(target, lambda h, p: [])


def test_host_allowed() -> None:
    assert host_allowed("prod-12.westeurope.logic.azure.com", (".logic.azure.com",))
    assert not host_allowed("logic.azure.com", (".logic.azure.com",))
    assert not host_allowed("evillogic.azure.com", (".logic.azure.com",))
    assert host_allowed("myapp.azurewebsites.net", ("myapp.azurewebsites.net",))
    assert not host_allowed("other.azurewebsites.net", ("myapp.azurewebsites.net",))


def test_keys_seal_bind_rotate_and_sign() -> None:
    keys = PushKeys("k" * 40)
    url = "https://x.logic.azure.com/hook?sig=secret"
    sealed = keys.seal(url, "a" * 32)
    assert "secret" not in sealed and sealed != keys.seal(url, "a" * 32)  # a fresh nonce
    assert keys.open(sealed, "a" * 32) == url
    with pytest.raises(SealError):
        keys.open(sealed, "b" * 32)  # bound to its subscription
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SealError):
        keys.open(tampered, "a" * 32)
    rotated = PushKeys("n" * 40, previous="k" * 40)
    assert rotated.open(sealed, "a" * 32) == url and not rotated.current(sealed)
    assert keys.lookups(url)[0] in rotated.lookups(url) and len(rotated.lookups(url)) == 2
    with pytest.raises(SealError, match="API_SIGNING_KEY_PREVIOUS"):
        PushKeys("n" * 40).open(sealed, "a" * 32)
    assert keys.new_id(url) == PushKeys("k" * 40).new_id(url) != rotated.new_id(url)
    assert "k" * 40 not in repr(keys)

    secret, body, delivery = keys.secret("a" * 32), b'{"x":1}', "d" * 32
    header = sign(secret, 1_700_000_000, delivery, body)
    assert re.fullmatch(r"t=1700000000,v1=[0-9a-f]{64}", header)
    assert verify(secret, header, delivery, body, now=1_700_000_100)
    assert not verify(secret, header, delivery, body, now=1_700_000_400)  # replayed too late
    assert not verify(secret, header, "e" * 32, body, now=1_700_000_000)
    assert not verify(secret, header, delivery, b'{"x":2}', now=1_700_000_000)
    assert not verify("other", header, delivery, body, now=1_700_000_000)
    assert not verify(secret, "v1=abc", delivery, body, now=1_700_000_000)


def test_the_receiver_snippet_in_the_docs_verifies_our_signatures() -> None:
    """docs/push.md's Python receiver check runs against a real signature."""
    text = (ROOT / "docs" / "push.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert code is not None
    scope: dict[str, object] = {}
    exec(code.group(1), scope)  # noqa: S102 - our own documentation's code
    check = scope["check_delivery"]
    secret, body, delivery = "s" * 64, b'{"event":"created"}', "d" * 32
    now = int(NOW.timestamp())
    headers = {
        "X-Defender-Signature": sign(secret, now, delivery, body),
        "X-Defender-Delivery": delivery,
    }
    seen: set[str] = set()
    assert check(secret, headers, body, seen, now=now) is True  # type: ignore[operator]
    assert check(secret, headers, body, seen, now=now) is False  # type: ignore[operator]
    forged = {**headers, "X-Defender-Delivery": "e" * 32}
    assert check(secret, forged, body, set(), now=now) is False  # type: ignore[operator]
    assert check(secret, headers, body, set(), now=now + 3600) is False  # type: ignore[operator]


def test_filter_matches_rows() -> None:
    flt = Filter("medium", ("active",), ("VIP",), (T,))
    row = {"severity": "high", "status": "active", "tags": ["vip"]}
    assert flt.matches(T, row)
    assert not flt.matches(T, {**row, "severity": "low"})
    assert not flt.matches(T, {**row, "status": "resolved"})
    assert not flt.matches(T, {**row, "tags": []})
    assert not flt.matches("22222222-2222-2222-2222-222222222222", row)
    assert Filter().matches(T, {"severity": "unknown", "tags": None})
    assert Filter.from_json(flt.to_json()) == flt


def _item(n: int, title: str = "t") -> dict[str, object]:
    row = {"id": str(n), "title": title, "lastUpdate": "2026-12-01T00:00:00Z", "tags": []}
    return {"incident": row, "version": "2026-12-01T00:00:00.1234567Z", "event": "created"}


def test_messages_stay_under_the_queue_limit_and_refer_to_what_cannot_fit() -> None:
    items = [_item(n, "x" * 900) for n in range(200)]
    texts = changes(T, items)
    assert len(texts) > 1
    assert all(len(t.encode()) <= MAX_MESSAGE_BYTES for t in texts)
    assert all(len(t.encode()) * 4 / 3 < 64 * 1024 for t in texts)  # base64 on the queue
    parsed = [parse(t) for t in texts]
    assert [i["incident"]["id"] for p in parsed for i in p["items"]] == [str(n) for n in range(200)]
    huge = changes(T, [_item(1, "y" * 60_000)])
    (only,) = [parse(t) for t in huge]
    assert only["items"] == [
        {"ref": {"id": "1", "version": "2026-12-01T00:00:00.1234567Z"}, "event": "created"}
    ]
    again = deliveries("a" * 32, T, [_item(1)], attempt=3, since=NOW)
    assert parse(again[0])["attempt"] == 3 and parse(again[0])["sub"] == "a" * 32


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        json.dumps({"v": 2, "kind": "changes", "tenant": T, "items": []}),
        json.dumps({"v": 1, "kind": "other", "tenant": T, "items": []}),
        json.dumps({"v": 1, "kind": "changes", "tenant": T, "items": [{"x": 1}]}),
        json.dumps({"v": 1, "kind": "deliver", "tenant": T, "items": []}),
    ],
)
def test_malformed_messages_are_named(text: str) -> None:
    with pytest.raises(BadMessageError):
        parse(text)


def test_delivery_ids_are_stable_per_subscription_and_version() -> None:
    one = delivery_id("a" * 32, T, "42", "v1")
    assert one == delivery_id("a" * 32, T, "42", "v1")
    assert (
        len({one, delivery_id("b" * 32, T, "42", "v1"), delivery_id("a" * 32, T, "42", "v2")}) == 3
    )


def test_verdicts() -> None:
    base = {"attempt": 1, "base": 30.0, "max_retry_after": 600.0}
    assert judge(Answer(202), **base).outcome == "delivered"  # type: ignore[arg-type]
    for status in (401, 403, 404, 410):
        assert judge(Answer(status), **base).outcome == "gone"  # type: ignore[arg-type]
    for status in (400, 413, 415, 422):
        assert judge(Answer(status), **base).outcome == "rejected"  # type: ignore[arg-type]
    for status in (301, 302, 307, 408, 500, 502):
        assert judge(Answer(status), **base).outcome == "retry"  # type: ignore[arg-type]
    assert judge(Answer(None, error="timeout"), **base).reason == "timeout"  # type: ignore[arg-type]
    busy = judge(Answer(429, retry_after=120), **base)  # type: ignore[arg-type]
    assert busy.outcome == "retry" and busy.delay == 120
    assert judge(Answer(503, retry_after=5), **base).delay == 30  # type: ignore[arg-type]
    assert judge(Answer(429, retry_after=86_400), **base).delay == 600  # type: ignore[arg-type]
    assert judge(Answer(429), attempt=3, base=30.0, max_retry_after=600.0).delay == 120


def test_retry_after_forms_and_backoff() -> None:
    assert retry_after("120", NOW) == 120.0
    assert retry_after("Mon, 01 Dec 2026 12:01:30 GMT", NOW) == 90.0
    assert retry_after("Mon, 01 Dec 2026 11:00:00 GMT", NOW) == 0.0
    for bad in (None, "soon", "-5", "1.5"):
        assert retry_after(bad, NOW) is None
    assert [backoff(n, 30) for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff(30, 30) == 3600


def test_breaker_opens_after_consecutive_failures_and_probes_once_open() -> None:
    breaker = Breaker()
    for _ in range(BREAKER_FAILURES - 1):
        breaker = breaker.failed(NOW, 10)
        assert not breaker.is_open(NOW)
    breaker = breaker.failed(NOW, 10)
    assert breaker.is_open(NOW) and breaker.open_until == NOW + timedelta(seconds=10)
    later = NOW + timedelta(seconds=11)
    assert not breaker.is_open(later)
    again = breaker.failed(later, 10)  # the probe failed: open at once, twice as long
    assert again.open_until == later + timedelta(seconds=20)
