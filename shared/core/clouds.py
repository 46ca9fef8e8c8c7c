"""National clouds: the hosts that go with each Microsoft cloud the app can run against.

Sources (checked 2026-11 against Microsoft Learn):
- Entra authority hosts: https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud
  (global ``login.microsoftonline.com``; Azure US Government ``login.microsoftonline.us``)
- Graph per cloud: https://learn.microsoft.com/graph/deployments (global service
  ``graph.microsoft.com``, also for GCC; US Government L4 / GCC High ``graph.microsoft.us``;
  L5 / DoD ``dod-graph.microsoft.us``)
- Defender XDR API for US Government: https://learn.microsoft.com/defender-xdr/usgov
  ("GCC: login.microsoftonline.com, api-gcc.security.microsoft.us; GCC High & DoD:
  login.microsoftonline.us, api-gov.security.microsoft.us")
- Token-exchange audience of a managed identity used as a federated credential, by Entra cloud:
  https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity
  (global ``api://AzureADTokenExchange``; US Government ``api://AzureADTokenExchangeUSGov``;
  China operated by 21Vianet ``api://AzureADTokenExchangeChina``). Only a user-assigned identity
  can be such a credential (same page), which ``shared.core.settings`` enforces.
- Issuers of access tokens, by Entra cloud: v2 tokens ``{authority}/{tid}/v2.0``; v1 tokens
  ``https://sts.windows.net/{tid}/`` in the global cloud and in Azure US Government, and
  ``https://sts.chinacloudapi.cn/{tid}/`` in the China cloud
  (https://learn.microsoft.com/entra/identity-platform/access-tokens#validate-the-issuer and
  Microsoft's answer on sovereign-cloud issuers,
  https://learn.microsoft.com/answers/questions/1190472/what-are-the-token-issuers-for-the-sovereign-cloud)
- Storage / Key Vault DNS suffixes: https://learn.microsoft.com/azure/azure-government/compare-azure-government-global-azure

GCC tenants sign in to the commercial Entra ID and use commercial Graph; only the legacy
Defender host differs. GCC High and DoD live in Azure Government. There is no China cloud here:
Microsoft documents no Defender XDR or Graph security endpoint operated by 21Vianet; the China
token-exchange audience is kept in ``TOKEN_EXCHANGE_AUDIENCES`` so one can be added.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

#: the token-exchange audience of each Entra cloud, by authority host (see the module docstring)
TOKEN_EXCHANGE_AUDIENCES: dict[str, str] = {
    "login.microsoftonline.com": "api://AzureADTokenExchange",
    "login.microsoftonline.us": "api://AzureADTokenExchangeUSGov",
    "login.chinacloudapi.cn": "api://AzureADTokenExchangeChina",
}

#: the host of v1 access tokens' issuer (``{host}/{tid}/``), by authority host
V1_ISSUER_HOSTS: dict[str, str] = {
    "login.microsoftonline.com": "https://sts.windows.net",
    "login.microsoftonline.us": "https://sts.windows.net",
    "login.chinacloudapi.cn": "https://sts.chinacloudapi.cn",
}


@dataclass(frozen=True, slots=True)
class Cloud:
    """Endpoints of one national cloud. URLs have no trailing slash."""

    name: str
    authority_url: str
    legacy_api_url: str
    graph_api_url: str
    storage_suffix: str
    vault_suffix: str
    #: the default ``API_PUSH_HOST_SUFFIXES``: where this cloud's Logic Apps and Power Automate
    #: callback URLs live (docs/push.md, "Allowed callback hosts", with sources)
    push_host_suffixes: tuple[str, ...] = ()

    @property
    def token_exchange_audience(self) -> str:
        """The audience of the managed identity's token used as a federated client assertion:
        the one of this cloud's Entra ID (a token for another cloud's audience is refused)."""
        return TOKEN_EXCHANGE_AUDIENCES[urlsplit(self.authority_url).hostname or ""]

    def token_issuers(self, tenant: str) -> tuple[str, str]:
        """The ``iss`` of a v1 and of a v2 access token issued by ``tenant`` in this cloud."""
        v1_host = V1_ISSUER_HOSTS[urlsplit(self.authority_url).hostname or ""]
        return f"{v1_host}/{tenant}/", f"{self.authority_url}/{tenant}/v2.0"

    @property
    def legacy_scope(self) -> str:
        """The app-only scope of the legacy Defender API in this cloud."""
        return f"{self.legacy_api_url}/.default"

    @property
    def graph_scope(self) -> str:
        """The app-only scope of Microsoft Graph in this cloud."""
        return f"{self.graph_api_url}/.default"


CLOUDS: dict[str, Cloud] = {
    "public": Cloud(
        name="public",
        authority_url="https://login.microsoftonline.com",
        legacy_api_url="https://api.security.microsoft.com",
        graph_api_url="https://graph.microsoft.com",
        storage_suffix="core.windows.net",
        vault_suffix="vault.azure.net",
        push_host_suffixes=(".logic.azure.com", ".environment.api.powerplatform.com"),
    ),
    "gcc": Cloud(
        name="gcc",
        authority_url="https://login.microsoftonline.com",
        legacy_api_url="https://api-gcc.security.microsoft.us",
        graph_api_url="https://graph.microsoft.com",
        storage_suffix="core.windows.net",
        vault_suffix="vault.azure.net",
        # GCC tenants' Logic Apps run in commercial Azure; their Power Automate in GCC
        push_host_suffixes=(
            ".logic.azure.com",
            ".logic.azure.us",
            ".api.gov.powerplatform.microsoft.us",
        ),
    ),
    "gcchigh": Cloud(
        name="gcchigh",
        authority_url="https://login.microsoftonline.us",
        legacy_api_url="https://api-gov.security.microsoft.us",
        graph_api_url="https://graph.microsoft.us",
        storage_suffix="core.usgovcloudapi.net",
        vault_suffix="vault.usgovcloudapi.net",
        push_host_suffixes=(".logic.azure.us", ".api.high.powerplatform.microsoft.us"),
    ),
    "dod": Cloud(
        name="dod",
        authority_url="https://login.microsoftonline.us",
        legacy_api_url="https://api-gov.security.microsoft.us",
        graph_api_url="https://dod-graph.microsoft.us",
        storage_suffix="core.usgovcloudapi.net",
        vault_suffix="vault.usgovcloudapi.net",
        push_host_suffixes=(".logic.azure.us", ".api.appsplatform.us"),
    ),
}
