"""No secret, token or connection string appears in logs, summaries or CLI output."""

from __future__ import annotations

import logging
import re

import pytest
import requests

from tests.conftest import LocalCloud
from tests.e2e.test_ingest_e2e import run_cli

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.")


def _client_secret(cloud: LocalCloud, settings: dict[str, str]) -> str:
    """Read the app's secret the way the app does, to know what must never be printed."""
    from azure.identity import ManagedIdentityCredential
    from azure.keyvault.secrets import SecretClient

    credential = ManagedIdentityCredential()
    client = SecretClient(
        settings["KEY_VAULT_URL"],
        credential,
        verify_challenge_resource=False,
        connection_verify=str(cloud.emulator.ca_path),
    )
    value = client.get_secret(settings["DEFENDER_CLIENT_SECRET_NAME"]).value
    assert value
    return value


def _issued_token(cloud: LocalCloud, settings: dict[str, str], secret: str) -> str:
    tenant = settings["DEFENDER_TENANT_ID"]
    response = requests.post(
        f"{settings['DEFENDER_AUTHORITY_URL']}/{tenant}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": settings["DEFENDER_CLIENT_ID"],
            "client_secret": secret,
            "scope": "https://graph.microsoft.com/.default",
        },
        verify=str(cloud.emulator.ca_path),
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _assert_clean(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text
    assert not JWT.search(text), JWT.search(text)


@pytest.mark.e2e
def test_full_run_logs_no_secret_or_token(
    cloud: LocalCloud,
    app_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A whole ingestion at DEBUG level (SDK loggers included) leaks nothing."""
    from azure.functions.timer import TimerRequest

    import function_app

    secret = _client_secret(cloud, app_env)
    monkeypatch.setenv("INGEST_FANOUT", "inline")  # the timer ingests itself: every log path
    caplog.set_level(logging.DEBUG)
    for name in ("azure", "msal", "urllib3", "shared"):
        caplog.set_level(logging.DEBUG, logger=name)  # restored after the test

    function_app.ingest_timer.build().get_user_function()(TimerRequest(past_due=False))

    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "tenant" in text  # the run did log
    sensitive = [secret, app_env["IDENTITY_HEADER"], "AccountKey=", "Eby8vdM02xNOcqFl"]
    _assert_clean(text, sensitive)


@pytest.mark.e2e
def test_cli_output_has_no_secret_even_verbose(cloud: LocalCloud, app_env: dict[str, str]) -> None:
    """stdout and stderr of a verbose CLI run, success and failure, carry no secret."""
    secret = _client_secret(cloud, app_env)
    token = _issued_token(cloud, app_env, secret)
    sensitive = [secret, token, app_env["IDENTITY_HEADER"], "Eby8vdM02xNOcqFl"]

    ok = run_cli(app_env, "-vv", "ingest", "--json")
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad_storage = {
        **app_env,
        "DATA_STORAGE_CONNECTION_STRING": (
            "AccountName=x;AccountKey=Zm9vYmFy;BlobEndpoint=http://127.0.0.1:9/x;"
            "TableEndpoint=http://127.0.0.1:9/x"
        ),
    }
    failed = run_cli(bad_storage, "-vv", "ingest")

    listed = run_cli(app_env, "-vv", "incidents", "list", "--limit", "3", "--format", "json")
    hunted = run_cli(app_env, "-vv", "hunt", "AlertInfo | take 2", "--format", "csv")
    refused = run_cli(app_env, "-vv", "incidents", "get", "999999999")
    assert listed.returncode == 0 and hunted.returncode == 0 and refused.returncode == 1

    for result in (ok, failed, listed, hunted, refused):
        _assert_clean(result.stdout + result.stderr, [*sensitive, "Zm9vYmFy"])
