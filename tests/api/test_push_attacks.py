"""Push cannot be pointed elsewhere: the bypass list sends nothing anywhere.

Each attack URL is refused when subscribing (both faces), and - planted straight into the
subscription table, as if an older version or a bug had let it in - refused again when sending:
ingestion of the home tenant and the push worker then run with a resolver that maps every name
to a ``Sink`` (a loopback address at 443 that counts connections) and a connect function that
counts every TCP connection attempt. Nothing may reach either. A control shows the harness
would see a delivery that got through: the local receiver (emulator only) does reach the sink.

On the code before this change the backslash URL was accepted (201) and ingestion made 260
connections to the sink (one per incident).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Face, setenv, tenants
from tests.api.pushkit import Hook, Sink, deliver, hook_server, ingest, sink_listener, trust
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e


def bypass_list(sink: Sink) -> dict[str, str]:
    ip, decimal = sink.ip, sink.decimal
    a, b, c, d = ip.split(".")
    return {
        "backslash": f"https://{ip}\\x.logic.azure.com/hook?sig=s",
        "backslash-at": f"https://{ip}\\@x.logic.azure.com/hook?sig=s",
        "userinfo": f"https://x.logic.azure.com@{ip}/hook?sig=s",
        "userinfo-port": f"https://{ip}:443@x.logic.azure.com/hook?sig=s",
        "idn-fullwidth-dot": f"https://{ip}\u3002x.logic.azure.com/hook?sig=s",
        "idn-bad-punycode": "https://xn--zz.logic.azure.com/hook?sig=s",
        "trailing-dot": "https://hook.logic.azure.com./hook?sig=s",
        "ipv6": f"https://[::ffff:{ip}]/hook?sig=s",
        "ipv6-hex": "https://[::ffff:7f00:1]/hook?sig=s",
        "decimal-ip": f"https://{decimal}/hook?sig=s",
        "octal-ip": f"https://0{int(a):o}.{b}.{c}.{d}/hook?sig=s",
        "hex-ip": f"https://0x{int(a):x}.{b}.{c}.{d}/hook?sig=s",
        "dotted-ip": f"https://{ip}/hook?sig=s",
        "other-port": "https://hook.logic.azure.com:8443/hook?sig=s",
        "name-to-loopback": "https://loopback.logic.azure.com/hook?sig=s",
        "name-to-metadata": "https://metadata.logic.azure.com/hook?sig=s",
        "name-to-wireserver": "https://wire.logic.azure.com/hook?sig=s",
        "name-to-private-v6": "https://v6.logic.azure.com/hook?sig=s",
    }


def resolver_for(sink: Sink) -> Callable[[str, int], list[str]]:
    """Every name resolves to the sink, except the names that test other addresses."""
    special = {
        "metadata.logic.azure.com": ["169.254.169.254"],
        "wire.logic.azure.com": ["168.63.129.16"],
        "v6.logic.azure.com": ["8.8.8.8", "fd00:ec2::254"],  # one bad answer is enough
    }
    return lambda host, port: special.get(host, [sink.ip])


@pytest.fixture
def sink() -> Iterator[Sink]:
    with sink_listener() as listener:
        yield listener


@pytest.fixture
def hook() -> Iterator[Hook]:
    with hook_server() as server:
        yield server


@pytest.fixture
def attack_env(
    api_env: dict[str, str], sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, int]]:
    """Every name resolves to the sink (``resolver_for``), every TCP connection attempt of a
    delivery is counted (the list returned), and the allow-list even names the sink's address
    in two spellings: the parser must refuse an IP literal whatever the operator allowed."""
    from shared import bootstrap

    setenv(
        monkeypatch,
        API_PUSH_HOST_SUFFIXES=f".logic.azure.com,localhost,{sink.ip},{sink.decimal}",
        API_PUSH_RETRY_SECONDS="1",
    )
    attempts: list[tuple[str, int]] = []

    def counting_connect(address: tuple[str, int], timeout: float) -> socket.socket:
        attempts.append(address)
        return socket.create_connection(address, timeout=timeout)

    svc = bootstrap.services()
    svc.push_resolver = resolver_for(sink)
    svc.push_connect = counting_connect
    return attempts


def test_subscribing_any_bypass_url_is_refused(
    face: Face, sink: Sink, attack_env: list[tuple[str, int]]
) -> None:
    from shared import bootstrap

    for name, url in bypass_list(sink).items():
        answer = face.request("POST", "/subscriptions", json_body={"callbackUrl": url})
        assert answer.status == 400, (name, answer.status, answer.body[:300])
        error = answer.json()["error"]
        assert error["code"] == "callback_refused", name
        assert "sig=s" not in error["message"], name  # the URL's credential is never echoed
    assert bootstrap.services().subscriptions().all() == []
    assert sink.connections == 0


def test_planted_bypass_subscriptions_send_nothing_anywhere(
    cloud: LocalCloud, sink: Sink, attack_env: list[tuple[str, int]], api_env: dict[str, str]
) -> None:
    from shared import bootstrap
    from shared.push.messages import Filter

    svc = bootstrap.services()
    store = svc.subscriptions()
    planted = {
        name: store.save(url, "planted", Filter(min_severity="high"))[0].id
        for name, url in bypass_list(sink).items()
    }
    home, _ = tenants(cloud)
    result = ingest(home)
    assert result.incidents > 0
    report = deliver(api_env["DATA_STORAGE_CONNECTION_STRING"])
    assert sink.connections == 0 and attack_env == []
    assert report.delivered == 0 and report.dead_lettered > 0
    # every planted subscription's deliveries were refused and dead-lettered, with the reason
    from azure.storage.blob import BlobServiceClient

    container = BlobServiceClient.from_connection_string(
        api_env["DATA_STORAGE_CONNECTION_STRING"]
    ).get_container_client("defender-push-deadletter")
    reasons: dict[str, str] = {}
    for blob in container.list_blobs():
        record = json.loads(container.download_blob(blob.name).readall())
        reasons[record["subscription"]] = record["reason"]
        assert "sig=s" not in json.dumps(record)
    assert set(reasons) == set(planted.values())
    assert "backslash" in reasons[planted["backslash"]]
    assert "metadata" in reasons[planted["name-to-metadata"]]
    assert "loopback" in reasons[planted["name-to-loopback"]]
    health = {s.id: s for s in store.all()}
    assert health[planted["dotted-ip"]].last_error is not None


def test_a_redirect_is_never_followed(
    cloud: LocalCloud,
    sink: Sink,
    hook: Hook,
    attack_env: list[tuple[str, int]],
    api_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from shared import bootstrap
    from shared.push.messages import Filter

    trust(monkeypatch, api_env, tmp_path, hook.ca_pem)
    setenv(monkeypatch, API_PUSH_MAX_ATTEMPTS="1")
    svc = bootstrap.services()
    svc.push_resolver = lambda host, port: ["127.0.0.1"]
    hook.default = (302, {"Location": f"https://{sink.ip}/steal"})
    svc.subscriptions().save(hook.url(), "localhost", Filter(min_severity="high"))
    home, _ = tenants(cloud)
    ingest(home)
    report = deliver(api_env["DATA_STORAGE_CONNECTION_STRING"])
    assert len(hook.requests) >= 1 and sink.connections == 0
    assert report.delivered == 0 and report.dead_lettered > 0  # a 3xx is a failed delivery


def test_control_a_local_receiver_does_reach_the_sink(
    cloud: LocalCloud, sink: Sink, attack_env: list[tuple[str, int]], api_env: dict[str, str]
) -> None:
    """The harness sees a delivery that is let through: ``localhost`` is the emulator-only
    local receiver, resolved (by the test resolver) to the sink's loopback address."""
    from shared import bootstrap
    from shared.push.messages import Filter

    svc = bootstrap.services()
    svc.subscriptions().save(
        "https://localhost/hook?sig=s", "localhost", Filter(min_severity="high")
    )
    home, _ = tenants(cloud)
    ingest(home)
    deliver(api_env["DATA_STORAGE_CONNECTION_STRING"])
    assert sink.connections >= 1
