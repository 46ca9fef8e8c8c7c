"""``python -m shared serve`` as a command: it serves the routes on loopback only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.cli.serve import ThreadingWSGIServer, _QuietHandler

ROOT = Path(__file__).resolve().parents[2]


def test_serve_refuses_a_non_loopback_address() -> None:
    from shared.cli import main

    assert main(["serve", "--host", "0.0.0.0"]) == 2  # noqa: S104 - the address being refused


@pytest.mark.subprocess
def test_serve_command_answers_health_with_no_settings(tmp_path: Path) -> None:
    """A real ``python -m shared serve`` process: health answers even without settings, and a
    route that needs them is a JSON 503, not a crash."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "shared", "serve", "--port", str(port)],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("serve did not start")
                time.sleep(0.2)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        url = f"http://127.0.0.1:{port}/api/incidents"
        keyless = requests.get(url, timeout=5)
        assert keyless.status_code == 401
        assert keyless.json()["error"]["code"] == "serve_key_required"
        assert process.stdout is not None
        printed = [process.stdout.readline().decode() for _ in range(2)]
        key = printed[1].removeprefix("key of this run: ").strip()
        assert printed[0].startswith("serving the HTTP API on") and len(key) >= 32
        broken = requests.get(url, headers={"x-functions-key": key}, timeout=5)
        assert broken.status_code == 503
        assert broken.json()["error"]["code"] == "configuration"
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_a_malformed_request_line_is_answered_400_and_its_secrets_are_not_logged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The standard library logs a malformed request line whole (query string included); serve
    logs neither it nor its key, and still answers."""

    def app(environ: object, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b""]

    server = ThreadingWSGIServer(("127.0.0.1", 0), _QuietHandler)
    server.set_app(app)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(server.server_address[:2], timeout=10) as conn:
            conn.sendall(b"GET /api/incidents?code=RUNKEY123&sig=SIGVALUE456 x HTTP/1.1\r\n\r\n")
            answer = conn.recv(4096)
    finally:
        server.shutdown()
        server.server_close()
    assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), answer
    logged = capsys.readouterr().err
    assert logged  # the refusal is logged ...
    assert "RUNKEY123" not in logged and "SIGVALUE456" not in logged  # ... without its secrets
