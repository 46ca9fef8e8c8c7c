"""Settings parsing: typed values, defaults, and every problem reported at once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from shared.core.errors import ConfigError
from shared.core.settings import Settings

TENANT = "11111111-1111-1111-1111-111111111111"
CLIENT = "22222222-2222-2222-2222-222222222222"
BASE = {
    "DEFENDER_TENANT_ID": TENANT,
    "DEFENDER_CLIENT_ID": CLIENT,
    "KEY_VAULT_URL": "https://myvault.vault.azure.net/",
    "DATA_STORAGE_ACCOUNT_NAME": "mydata",
}


def test_defaults_for_a_minimal_configuration() -> None:
    """Only the four required settings give a public-cloud Graph configuration."""
    s = Settings.from_env(BASE)
    assert s.identity.tenant_id == TENANT
    assert s.identity.key_vault_url == "https://myvault.vault.azure.net"
    assert s.defender.api == "graph"
    assert s.defender.api_url == "https://graph.microsoft.com"
    assert s.defender.api_scope == "https://graph.microsoft.com/.default"
    assert s.tenants == (TENANT,)
    assert s.ingest.overlap == timedelta(minutes=10)
    assert s.ingest.lookback == timedelta(days=30)
    assert not s.emulator


def test_every_problem_is_reported_at_once_by_name() -> None:
    """Missing and malformed values all appear in one error."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {
                "DEFENDER_TENANT_ID": "not-a-guid",
                "KEY_VAULT_URL": "http://vault",
                "DEFENDER_API": "soap",
                "INGEST_OVERLAP_MINUTES": "-1",
                "INGEST_TENANTS": f"{TENANT},nope",
            }
        )
    text = str(info.value)
    for name in (
        "DEFENDER_TENANT_ID",
        "DEFENDER_CLIENT_ID",
        "KEY_VAULT_URL",
        "DEFENDER_API",
        "INGEST_OVERLAP_MINUTES",
        "INGEST_TENANTS",
        "DATA_STORAGE_ACCOUNT_NAME",
    ):
        assert name in text
    assert len(info.value.problems) == 7


def test_malformed_connection_string_is_not_echoed() -> None:
    """A bad secret-bearing setting is named, but its value never appears in the error."""
    env = {**BASE, "DATA_STORAGE_CONNECTION_STRING": "AccountKey=SuperSecretValue123"}
    del env["DATA_STORAGE_ACCOUNT_NAME"]
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert "DATA_STORAGE_CONNECTION_STRING" in str(info.value)
    assert "SuperSecretValue123" not in str(info.value)
    assert "SuperSecretValue123" not in repr(info.value)


def test_both_storage_settings_is_an_error() -> None:
    """Exactly one way to reach storage must be configured."""
    env = {**BASE, "DATA_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"}
    with pytest.raises(ConfigError, match="only one of"):
        Settings.from_env(env)


def test_connection_string_is_hidden_from_repr() -> None:
    """repr(settings) (e.g. in a traceback) does not show the connection string."""
    env = {k: v for k, v in BASE.items() if k != "DATA_STORAGE_ACCOUNT_NAME"}
    env["DATA_STORAGE_CONNECTION_STRING"] = "AccountName=a;AccountKey=c2VjcmV0"
    s = Settings.from_env(env)
    assert "c2VjcmV0" not in repr(s)


def test_page_size_default_and_cap_follow_the_surface() -> None:
    """Legacy pages hold up to 100 (the default); Graph refuses $top over 50, so its default is
    50 and a larger INGEST_PAGE_SIZE is a settings error that says why."""
    assert Settings.from_env(BASE).ingest.page_size == 50
    assert Settings.from_env({**BASE, "DEFENDER_API": "legacy"}).ingest.page_size == 100
    assert (
        Settings.from_env(
            {**BASE, "DEFENDER_API": "legacy", "INGEST_PAGE_SIZE": "100"}
        ).ingest.page_size
        == 100
    )
    with pytest.raises(ConfigError, match="INGEST_PAGE_SIZE"):
        Settings.from_env({**BASE, "DEFENDER_API": "legacy", "INGEST_PAGE_SIZE": "101"})
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, "INGEST_PAGE_SIZE": "100"})
    assert info.value.problems == [
        "INGEST_PAGE_SIZE: must be at most 50 with DEFENDER_API=graph: Graph answers 400 "
        "\"The limit of '50' for Top query has been exceeded\" to a larger $top on security "
        "incidents"
    ]
    assert Settings.from_env({**BASE, "INGEST_PAGE_SIZE": "50"}).ingest.page_size == 50


def test_national_cloud_sets_hosts_and_overrides_win() -> None:
    """A cloud picks its hosts; explicit URL settings override them; scopes stay the cloud's."""
    s = Settings.from_env({**BASE, "DEFENDER_CLOUD": "gcchigh", "DEFENDER_API": "legacy"})
    assert s.defender.authority_url == "https://login.microsoftonline.us"
    assert s.defender.api_url == "https://api-gov.security.microsoft.us"
    assert s.defender.graph_api_url == "https://graph.microsoft.us"
    s = Settings.from_env({**BASE, "DEFENDER_GRAPH_API_URL": "https://127.0.0.1:8443"})
    assert s.defender.api_url == "https://127.0.0.1:8443"
    assert s.defender.api_scope == "https://graph.microsoft.com/.default"


def test_tenant_list_is_normalized_and_deduplicated() -> None:
    """INGEST_TENANTS accepts spaces and repeats; ids are lowercased GUIDs."""
    other = "33333333-3333-3333-3333-33333333333A"
    s = Settings.from_env({**BASE, "INGEST_TENANTS": f" {TENANT} , {other},{TENANT}"})
    assert s.tenants == (TENANT, other.lower())


def test_emulator_ca_must_exist(tmp_path: Path) -> None:
    """The emulator switch points at a real file, or is refused."""
    with pytest.raises(ConfigError, match="EMULATOR_CA_CERT"):
        Settings.from_env({**BASE, "EMULATOR_CA_CERT": str(tmp_path / "missing.pem")})
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert Settings.from_env({**BASE, "EMULATOR_CA_CERT": str(ca)}).emulator


def test_schedule_must_be_six_field_ncrontab() -> None:
    """A five-field cron (a common mistake) is refused with the expected form."""
    with pytest.raises(ConfigError, match="six fields"):
        Settings.from_env({**BASE, "INGEST_SCHEDULE": "*/5 * * * *"})


def test_federated_credential_needs_a_user_assigned_identity() -> None:
    """federated without AZURE_CLIENT_ID is a settings error naming the rule."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, "DEFENDER_CREDENTIAL_KIND": "federated"})
    (problem,) = info.value.problems
    assert problem.startswith("missing AZURE_CLIENT_ID (needed when DEFENDER_CREDENTIAL_KIND is")
    assert "only a user-assigned managed identity" in problem
    identity = "44444444-4444-4444-4444-444444444444"
    s = Settings.from_env(
        {**BASE, "DEFENDER_CREDENTIAL_KIND": "federated", "AZURE_CLIENT_ID": identity}
    )
    assert s.identity.managed_identity_client_id == identity
    # a malformed AZURE_CLIENT_ID is reported once, as malformed
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {**BASE, "DEFENDER_CREDENTIAL_KIND": "federated", "AZURE_CLIENT_ID": "nope"}
        )
    assert [p.split(":")[0] for p in info.value.problems] == ["AZURE_CLIENT_ID"]


@pytest.mark.parametrize(
    ("cloud", "audience"),
    [
        ("public", "api://AzureADTokenExchange"),
        ("gcc", "api://AzureADTokenExchange"),
        ("gcchigh", "api://AzureADTokenExchangeUSGov"),
        ("dod", "api://AzureADTokenExchangeUSGov"),
    ],
)
def test_token_exchange_audience_follows_the_cloud(cloud: str, audience: str) -> None:
    """The federated assertion's audience is the Entra cloud's (an emulator override of the
    authority URL keeps the cloud's audience)."""
    from shared.core.clouds import TOKEN_EXCHANGE_AUDIENCES

    s = Settings.from_env(
        {**BASE, "DEFENDER_CLOUD": cloud, "DEFENDER_AUTHORITY_URL": "https://127.0.0.1:8443"}
    )
    assert s.defender.cloud.token_exchange_audience == audience
    assert TOKEN_EXCHANGE_AUDIENCES["login.chinacloudapi.cn"] == "api://AzureADTokenExchangeChina"


def test_consent_redirect_uri_default_and_validation() -> None:
    """DEFENDER_CONSENT_REDIRECT_URI: the HTTP API's callback on WEBSITE_HOSTNAME in App Service,
    the local Core Tools callback otherwise; https (http only for localhost)."""
    from shared.credentials.values import admin_consent_url

    assert Settings.from_env(BASE).identity.consent_redirect_uri == (
        "http://localhost:7071/api/consent/callback"
    )
    hosted = Settings.from_env({**BASE, "WEBSITE_HOSTNAME": "func-x.azurewebsites.net"})
    assert (
        hosted.identity.consent_redirect_uri
        == "https://func-x.azurewebsites.net/api/consent/callback"
    )
    for bad in ("http://example.com/cb", "https://example.com/cb#x", "ftp://localhost/x"):
        with pytest.raises(ConfigError, match="DEFENDER_CONSENT_REDIRECT_URI"):
            Settings.from_env({**BASE, "DEFENDER_CONSENT_REDIRECT_URI": bad})
    url = admin_consent_url(
        "https://login.microsoftonline.com", TENANT, CLIENT, "s/.default", "https://a/cb", "st"
    )
    assert url == (
        f"https://login.microsoftonline.com/{TENANT}/v2.0/adminconsent?client_id={CLIENT}"
        "&scope=s%2F.default&redirect_uri=https%3A%2F%2Fa%2Fcb&state=st"
    )
    with pytest.raises(ValueError, match="redirect_uri"):
        admin_consent_url("https://login.microsoftonline.com", TENANT, CLIENT, "s", "")


def test_a_default_is_fresh_for_each_parse_and_follows_a_bad_choice_to_its_default() -> None:
    """Two parses never share a mutable default; a malformed DEFENDER_CLOUD is reported, its
    default stands in for what derives from it, and the rules across settings still run."""
    first, second = Settings.from_env(BASE), Settings.from_env(BASE)
    first.http.tenant_roles["Team.Blue"] = (TENANT,)
    assert second.http.tenant_roles == {}
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, "DEFENDER_CLOUD": "mars", "INGEST_PAGE_SIZE": "80"})
    assert [p.split(":")[0] for p in info.value.problems] == ["DEFENDER_CLOUD", "INGEST_PAGE_SIZE"]
