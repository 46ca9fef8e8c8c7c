"""checkov custom check CKV_DB_1: no app setting of a site holds a secret.

Loaded with ``--external-checks-dir infra/checkov`` (infra/checkov_gate.py does). checkov's own
bicep checks do not look inside ``siteConfig.appSettings``, and its secrets scanner does not read
.bicep files, so a connection string with an account key in an app setting passed unnoticed.
A setting fails when its name says it is a secret (…SECRET, …PASSWORD, …KEY, …TOKEN,
…CONNECTION_STRING) and it has any value other than a Key Vault reference, or when a literal
value carries a credential (AccountKey=, SharedAccessKey=, SharedAccessSignature=, Password=).
"""

from __future__ import annotations

import re
from typing import Any

from checkov.bicep.checks.resource.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult

_SECRET_NAME = re.compile(
    r"(SECRET|PASSWORD|PASSWD|ACCOUNT_?KEY|ACCESS_?KEY|API_?KEY|TOKEN|CONNECTION_?STRING)$",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"(AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd)\s*=", re.IGNORECASE
)
#: Application Insights' connection string names an ingestion endpoint and key that cannot send
#: anything on their own once local authentication is off (monitoring.bicep: DisableLocalAuth).
_NOT_SECRET = {"APPLICATIONINSIGHTS_CONNECTION_STRING"}


class AppSettingsHoldNoSecret(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure no app setting of a site holds a secret (use an identity)",
            id="CKV_DB_1",
            categories=[CheckCategories.SECRETS],
            supported_resources=["Microsoft.Web/sites", "Microsoft.Web/sites/config"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        for name, value in _settings(conf):
            if name.upper() in _NOT_SECRET:
                continue
            if isinstance(value, str) and _SECRET_VALUE.search(value):
                return CheckResult.FAILED
            if _SECRET_NAME.search(name) and value not in ("", None) and not _vault_ref(value):
                return CheckResult.FAILED
        return CheckResult.PASSED


def _settings(conf: dict[str, Any]) -> list[tuple[str, Any]]:
    props = conf.get("properties")
    if not isinstance(props, dict):
        return []
    out: list[tuple[str, Any]] = []
    site_config = props.get("siteConfig")
    items = site_config.get("appSettings") if isinstance(site_config, dict) else None
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                out.append((item["name"], item.get("value")))
    if conf.get("name") == "appsettings":  # Microsoft.Web/sites/config 'appsettings': a map
        out.extend((k, v) for k, v in props.items() if isinstance(k, str))
    return out


def _vault_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("@Microsoft.KeyVault(")


check = AppSettingsHoldNoSecret()
