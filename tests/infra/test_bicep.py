"""infra/: the Bicep parses, and deploys what the app needs with identity-based access only.

No Bicep compiler can be installed on these machines, so the files are parsed with pycep (the
parser checkov uses) and their structure is asserted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from shared import settings

INFRA = Path(__file__).resolve().parents[2] / "infra"
HOST_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}


@pytest.fixture(scope="module")
def app() -> dict[str, Any]:
    return dict(BicepParser().parse(file_path=INFRA / "app.bicep"))


def test_every_bicep_file_parses() -> None:
    """A syntax error in any Bicep file fails here (pycep raises)."""
    files = sorted(INFRA.glob("*.bicep"))
    assert {f.name for f in files} >= {"main.bicep", "app.bicep"}
    for file in files:
        assert BicepParser().parse(file_path=file)["resources"] or file.name == "main.bicep"


def test_storage_vault_and_insights_refuse_keys(app: dict[str, Any]) -> None:
    """Identity-based access only: no shared keys, RBAC vault, no local auth on insights."""
    resources = app["resources"]
    assert resources["storage"]["config"]["properties"]["allowSharedKeyAccess"] is False
    assert resources["vault"]["config"]["properties"]["enableRbacAuthorization"] is True
    assert resources["insights"]["config"]["properties"]["DisableLocalAuth"] is True


def test_function_app_settings_are_settings_the_code_reads(app: dict[str, Any]) -> None:
    """Each app setting Bicep sets is the host's or one of ours; the required ones are set."""
    site = app["resources"]["functionApp"]["config"]
    assert site["identity"]["type"] == "UserAssigned"
    names = {s["name"] for s in site["properties"]["siteConfig"]["appSettings"]}
    ours = {v for k, v in vars(settings).items() if k.endswith("_SETTING")}
    assert names - HOST_SETTINGS <= ours | {"AZURE_CLIENT_ID"}
    required = {"DEFENDER_TENANT_ID", "DEFENDER_CLIENT_ID", "KEY_VAULT_URL"}
    assert required | {"DATA_STORAGE_ACCOUNT_NAME", "INGEST_SCHEDULE"} <= names


def test_identity_gets_exactly_the_roles_it_needs(app: dict[str, Any]) -> None:
    """Key Vault secrets/certificates, blob/table/queue data, metrics publishing."""
    roles = app["variables"]["roles"]["value"]
    granted = {a["role"]["operator"]["operands"]["operand_2"] for a in
               app["variables"]["assignments"]["value"]}  # fmt: skip
    assert granted == {
        "storageBlobDataOwner",
        "storageTableDataContributor",
        "storageQueueDataContributor",
        "keyVaultSecretsUser",
        "keyVaultCertificateUser",
    }
    assert set(roles) == granted | {"monitoringMetricsPublisher"}
