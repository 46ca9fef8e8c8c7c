"""HTTP API settings: typed values, defaults, and problems named without values."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.core.errors import ConfigError
from shared.core.settings import Settings, parse_tenant_roles
from tests.unit.test_settings import BASE

TID = "33333333-3333-3333-3333-333333333333"


def test_api_defaults() -> None:
    s = Settings.from_env(BASE)
    assert s.http.max_body_bytes == 65_536 and s.http.auth_mode == "entra"
    assert (
        s.api_audiences == (f"api://{s.identity.client_id}", s.identity.client_id)
        and not s.retired_settings
    )
    assert s.http.tenant_roles == {} and not s.http.allow_free_kql
    assert s.http.sync_budget == 20.0 and s.http.retry_after == 5
    assert s.http.public_url is None and s.http.signing_key is None
    assert s.push.host_suffixes == (".logic.azure.com", ".environment.api.powerplatform.com")
    assert s.http.consent_state_lifetime == timedelta(minutes=60)


def test_api_values_parse() -> None:
    s = Settings.from_env(
        {
            **BASE,
            "API_REQUIRE_CLIENT_PRINCIPAL": "true",
            "API_AUTH_MODE": "Key",
            "API_APP_ID_URI": "https://contoso.example.com/defender-bridge/",
            "API_TENANT_ROLES": f"Team.Blue={TID}; Team.Red={TID},{TID.replace('3', '4')}",
            "API_PUBLIC_URL": "https://bridge.example.com/",
            "API_SIGNING_KEY": "k" * 40,
            "API_PUSH_HOST_SUFFIXES": ".logic.azure.com, hooks.example.com",
        }
    )
    # a retired setting is remembered (start-up and check tell about it), never obeyed
    assert s.retired_settings == ("API_REQUIRE_CLIENT_PRINCIPAL",)
    assert s.http.auth_mode == "key"
    assert s.api_audiences[0] == "https://contoso.example.com/defender-bridge"
    assert s.http.tenant_roles["Team.Blue"] == (TID,) and len(s.http.tenant_roles["Team.Red"]) == 2
    assert s.http.public_url == "https://bridge.example.com"
    assert s.push.host_suffixes == (".logic.azure.com", "hooks.example.com")
    assert "k" * 40 not in repr(s)


def test_api_problems_are_named_and_never_echo_values() -> None:
    short_key = "short-secret-value"
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {
                **BASE,
                "API_MAX_BODY_BYTES": "10",
                "API_ALLOW_FREE_KQL": "maybe",
                "API_TENANT_ROLES": "Team.Blue=not-a-guid",
                "API_PUBLIC_URL": "https://bridge.example.com/api",
                "API_SIGNING_KEY": short_key,
                "API_PUSH_HOST_SUFFIXES": "https://x",
                "API_AUTH_MODE": "easyauth",
                "API_APP_ID_URI": "http://not-an-app-id-uri/x?y",
            }
        )
    text = str(info.value)
    for name in (
        "API_MAX_BODY_BYTES",
        "API_ALLOW_FREE_KQL",
        "API_TENANT_ROLES",
        "API_PUBLIC_URL",
        "API_SIGNING_KEY",
        "API_PUSH_HOST_SUFFIXES",
        "API_AUTH_MODE",
        "API_APP_ID_URI",
    ):
        assert name in text
    assert short_key not in text


def test_tenant_roles_parser() -> None:
    assert parse_tenant_roles("") == {}
    with pytest.raises(ValueError, match="entry 2"):
        parse_tenant_roles(f"A={TID};B")


def test_push_settings_defaults_per_cloud_and_problems() -> None:
    s = Settings.from_env(BASE)
    assert s.push.max_attempts == 8 and s.push.timeout == 10.0
    assert s.push.retry == 30.0 and s.push.max_retry_after == 3600.0
    assert s.push.gone_grace == timedelta(minutes=60)
    assert not s.push.allow_local_receiver and not s.push.deliver_own_updates
    gov = Settings.from_env({**BASE, "DEFENDER_CLOUD": "gcchigh"})
    assert ".logic.azure.us" in gov.push.host_suffixes
    assert ".logic.azure.com" not in gov.push.host_suffixes
    previous = "p" * 40
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {
                **BASE,
                "API_PUSH_ALLOW_LOCAL_RECEIVER": "true",  # without EMULATOR_CA_CERT
                "API_SIGNING_KEY_PREVIOUS": previous,  # without API_SIGNING_KEY
                "API_PUSH_TIMEOUT_SECONDS": "0",
                "API_PUSH_HOST_SUFFIXES": ".net",
                "API_PUSH_GONE_GRACE_MINUTES": "-1",
            }
        )
    text = str(info.value)
    for name in (
        "API_PUSH_ALLOW_LOCAL_RECEIVER",
        "API_SIGNING_KEY_PREVIOUS",
        "API_PUSH_TIMEOUT_SECONDS",
        "API_PUSH_HOST_SUFFIXES",
        "API_PUSH_GONE_GRACE_MINUTES",
    ):
        assert name in text, name
    assert previous not in text and "previous" not in repr(Settings.from_env(BASE))
