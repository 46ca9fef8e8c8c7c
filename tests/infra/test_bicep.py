"""infra/: the Bicep parses and deploys what the app needs, identity-based, in every cloud.

No Bicep compiler can be installed on these machines, so the files are parsed with pycep (the
parser checkov uses) and their structure is asserted. Each test names the property of the
deployment it holds in place.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from shared import storage
from shared.core import settings
from shared.core.clouds import CLOUDS
from shared.storage.values import DEADLETTER_CONTAINER
from shared.usecases.push.outbox import POISON_QUEUE, PUSH_QUEUE

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

#: Settings of the Functions host and platform the template sets (not read by shared/).
HOST_SETTINGS = {
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    # APPLICATIONINSIGHTS_CONNECTION_STRING is read by the code too (shared.telemetry)
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
    # the queue trigger's identity-based connection (partner scale), beside
    # DATA_STORAGE__queueServiceUri
    "DATA_STORAGE__credential",
    "DATA_STORAGE__clientId",
}

#: Settings the code reads that the template deliberately leaves unset, and why.
LEFT_OUT = {
    settings.AUTHORITY_URL_SETTING: "derived from DEFENDER_CLOUD; an override is for the emulator",
    settings.LEGACY_API_URL_SETTING: "derived from DEFENDER_CLOUD",
    settings.GRAPH_API_URL_SETTING: "derived from DEFENDER_CLOUD",
    settings.STORAGE_CONNECTION_STRING_SETTING: "a secret; Azure uses DATA_STORAGE_ACCOUNT_NAME",
    settings.EMULATOR_CA_CERT_SETTING: "local development only; never in Azure",
    settings.INGEST_LOOKBACK_DAYS_SETTING: "the default fits; tune as an app setting",
    settings.INGEST_OVERLAP_MINUTES_SETTING: "the default fits; tune as an app setting",
    settings.INGEST_PAGE_SIZE_SETTING: "the code picks the page size per API surface",
    settings.HTTP_TIMEOUT_SETTING: "the default fits",
    settings.API_MAX_ATTEMPTS_SETTING: "the default fits",
    settings.API_TIME_BUDGET_SETTING: "the default fits",
    settings.CREDENTIAL_CACHE_MINUTES_SETTING: "the default fits",
    settings.CREDENTIAL_EXPIRY_WARNING_DAYS_SETTING: "the default fits",
    settings.RATE_LIMIT_INCIDENTS_SETTING: "Microsoft's documented quota is the default",
    settings.RATE_LIMIT_ALERTS_SETTING: "Microsoft's documented quota is the default",
    settings.RATE_LIMIT_HUNTING_SETTING: "Microsoft's documented quota is the default",
    # partner scale
    settings.INGEST_FANOUT_SETTING: "the default (queue) is what the template deploys for",
    settings.INGEST_CONCURRENCY_SETTING: "inline mode only; queue mode uses host.json",
    settings.INGEST_MAX_DEQUEUE_COUNT_SETTING: "the default mirrors host.json maxDequeueCount",
    settings.INGEST_QUEUED_MARKER_MINUTES_SETTING: "the default fits",
    settings.INGEST_CONSENT_RETRY_HOURS_SETTING: "the default fits",
    settings.INGEST_FAILURE_HOLD_MINUTES_SETTING: "the default fits",
    settings.API_MAX_RETRY_WAIT_SETTING: "the default fits",
    settings.QUEUE_CONNECTION_SETTING: "a connection string (local); Azure uses the service URI",
    # HTTP API
    settings.API_MAX_BODY_BYTES_SETTING: "the default fits",
    settings.API_TENANT_ROLES_SETTING: "per customer: an MSSP's own mapping of roles to tenants",
    settings.API_ALLOW_FREE_KQL_SETTING: "off by default on purpose (templates only)",
    settings.API_SYNC_BUDGET_SETTING: "the default fits",
    settings.API_RETRY_AFTER_SETTING: "the default fits",
    settings.API_POLL_LINK_MINUTES_SETTING: "the default fits the longest hunting job",
    settings.API_PUBLIC_URL_SETTING: "only behind a proxy or API Management",
    settings.API_SIGNING_KEY_SETTING: "a secret: a Key Vault reference the operator adds",
    settings.API_PUSH_HOST_SUFFIXES_SETTING: "the default follows DEFENDER_CLOUD (docs/push.md)",
    settings.API_PUSH_MAX_ATTEMPTS_SETTING: "the default fits",
    settings.API_SIGNING_KEY_PREVIOUS_SETTING: "only while rotating API_SIGNING_KEY",
    settings.API_PUSH_ALLOW_LOCAL_RECEIVER_SETTING: "emulator only; never in Azure",
    settings.API_PUSH_TIMEOUT_SETTING: "the default fits",
    settings.API_PUSH_RETRY_SETTING: "the default fits",
    settings.API_PUSH_MAX_RETRY_AFTER_SETTING: "the default fits",
    settings.API_PUSH_GONE_GRACE_SETTING: "the default fits",
    settings.API_PUSH_DELIVER_OWN_UPDATES_SETTING: "off by default on purpose (no workflow loops)",
    settings.API_CONSENT_STATE_MINUTES_SETTING: "the default fits",
    settings.API_PAGE_MAX_CALLS_SETTING: "the default fits",
    settings.API_CALLER_RATE_LIMIT_SETTING: "the default fits; an operator tunes it",
    settings.API_CALLER_HUNTING_RATE_LIMIT_SETTING: "the default fits; an operator tunes it",
    settings.CONSENT_REDIRECT_URI_SETTING: "defaults to https://$WEBSITE_HOSTNAME/api/consent/"
    "callback, the CONSENT_REDIRECT_URI output the Entra script registers",
    # ingestion
    settings.INGEST_SAFETY_LAG_SETTING: "the default fits; tune as an app setting",
    settings.INGEST_TIME_BUDGET_SETTING: "the default fits host.json's 10-minute timeout",
    settings.INGEST_LEASE_SETTING: "the default fits",
    settings.INGEST_LAG_WARNING_SETTING: "the default fits; tune as an app setting",
    # the worker's logging: quiet by default on purpose; raised as an app setting to diagnose
    settings.LOG_LEVEL_AZURE_SDK_SETTING: "WARNING by default; raise it only for a diagnosis",
}
#: the declared defaults of shared.core.settings, by setting name
DEFAULTS = {d.name: d.default for d in settings.DECLARATIONS}


def parse(name: str) -> dict[str, Any]:
    return dict(BicepParser().parse(file_path=INFRA / name))


@pytest.fixture(scope="module")
def main() -> dict[str, Any]:
    return parse("main.bicep")


@pytest.fixture(scope="module")
def api() -> dict[str, Any]:
    return parse("app/api.bicep")


@pytest.fixture(scope="module")
def app_settings(api: dict[str, Any]) -> dict[str, Any]:
    site = api["resources"]["functionApp"]["config"]
    items = site["properties"]["siteConfig"]["appSettings"]
    names = [s["name"] for s in items]
    assert len(names) == len(set(names)), "an app setting is set twice"
    return {s["name"]: s["value"] for s in items}


@pytest.fixture(scope="module")
def parameters_file() -> dict[str, str]:
    data = json.loads((INFRA / "main.parameters.json").read_text())
    return {name: p["value"] for name, p in data["parameters"].items()}


def decorator(param: dict[str, Any], kind: str) -> Any:
    return next((d["argument"] for d in param["decorators"] if d["type"] == kind), None)


def test_every_bicep_file_parses_and_every_module_exists(main: dict[str, Any]) -> None:
    """A syntax error in any Bicep file fails here (pycep raises); module paths resolve."""
    files = sorted(INFRA.rglob("*.bicep"))
    assert {f.relative_to(INFRA).as_posix() for f in files} >= {
        "main.bicep",
        "app/api.bicep",
        "app/rbac.bicep",
        "app/storage.bicep",
        "app/vault.bicep",
        "app/auth.bicep",
    }
    for file in files:
        BicepParser().parse(file_path=file)
    for module in main["modules"].values():
        assert (INFRA / module["detail"]["path"]).is_file()


def test_no_registry_module_so_checkov_sees_every_resource(main: dict[str, Any]) -> None:
    """Every module is a local file (no br/public:avm/...), see infra/README.md."""
    for file in INFRA.rglob("*.bicep"):
        assert "'br/public:" not in file.read_text(), file
    assert {m["type"] for m in main["modules"].values()} == {"local"}


def test_parameters_file_maps_every_parameter_to_an_azd_value(
    main: dict[str, Any], parameters_file: dict[str, str]
) -> None:
    """Point 1: every parameter comes from the azd environment, with the Bicep default."""
    params = main["parameters"]
    assert set(parameters_file) == set(params)
    variables = {}
    for name, value in parameters_file.items():
        match = re.fullmatch(r"\$\{([A-Z][A-Z0-9_]*)(?:=(.*))?\}", value)
        assert match, f"{name}: {value!r} is not ${{VAR}} or ${{VAR=default}}"
        variables[name] = match.group(1)
        default = params[name]["default"]
        if match.group(2) is not None:
            # the fallback written in the file is the Bicep default (same text)
            expected = str(default).lower() if isinstance(default, bool) else str(default)
            assert match.group(2) == ("" if default is None else expected), name
    assert variables["environmentName"] == "AZURE_ENV_NAME"
    assert variables["location"] == "AZURE_LOCATION"
    assert variables["principalId"] == "AZURE_PRINCIPAL_ID"
    assert variables["defenderClientId"] == "DEFENDER_CLIENT_ID"
    assert params["defenderClientId"]["default"] is None  # required: azd prompts, --no-prompt fails


def test_location_has_azd_metadata_and_the_flex_regions(main: dict[str, Any]) -> None:
    """Point 1: azd's location picker, limited to regions that offer Flex Consumption."""
    location = main["parameters"]["location"]
    assert decorator(location, "metadata") == {"azd": {"type": "location"}}
    allowed = set(decorator(location, "allowed"))
    assert {"eastus", "westeurope", "swedencentral", "australiaeast"} <= allowed
    assert {"usgovvirginia", "usgovarizona"} <= allowed  # the same template for US Government
    assert "westindia" not in allowed  # a region without Flex Consumption


def test_choices_are_parameters_with_the_values_the_code_accepts(main: dict[str, Any]) -> None:
    """Point 3: API surface, credential kind, national cloud mirror shared/settings and clouds."""
    params = main["parameters"]
    assert set(decorator(params["defenderApi"], "allowed")) == set(
        typing.get_args(settings.ApiKind)
    )
    assert set(decorator(params["credentialKind"], "allowed")) == set(
        typing.get_args(settings.AppCredentialKind)
    )
    assert set(decorator(params["defenderCloud"], "allowed")) == set(CLOUDS)
    assert params["ingestSchedule"]["default"] == DEFAULTS[settings.INGEST_SCHEDULE_SETTING]
    assert params["vnetEnabled"]["default"] is False
    assert params["enablePurgeProtection"]["default"] is True  # documented in docs/deploy.md
    for name in ("ingestTenants", "principalId", "defenderTenantId", "certificateName"):
        assert params[name]["default"] == "", name


def test_certificate_kind_always_has_a_certificate_name(main: dict[str, Any]) -> None:
    """Point 3: with certificate and no name, the app gets the Entra script's default name."""
    params = main["modules"]["api"]["config"]["params"]
    assert params["certificateName"] == "appCertificateName"
    ternary = main["variables"]["appCertificateName"]["value"]["operator"]["operands"]
    assert ternary["true_value"] == "defender-certificate"
    assert ternary["false_value"] == "certificateName"
    assert "certificate" in json.dumps(ternary["condition"])


def test_host_storage_is_identity_based_by_service_uri(
    api: dict[str, Any], app_settings: dict[str, Any]
) -> None:
    """Point 2: __accountName is invalid in sovereign clouds; service URIs work everywhere."""
    assert app_settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert not any(n.startswith("AzureWebJobsStorage__accountName") for n in app_settings)
    assert "AzureWebJobsStorage" not in app_settings  # no connection string
    for service in ("blob", "queue", "table"):
        var = app_settings[f"AzureWebJobsStorage__{service}ServiceUri"]
        value = api["variables"][var]["value"]
        assert value == f"https://${{storageAccountName}}.{service}.${{storageSuffix}}"
    suffix = api["variables"]["storageSuffix"]["value"]
    assert "environment" in json.dumps(suffix)
    assert app_settings["AzureWebJobsStorage__clientId"] == app_settings["AZURE_CLIENT_ID"]


def test_no_cloud_specific_host_is_spelled_out() -> None:
    """Point 2: storage, vault and DNS-zone hosts come from environment(), for US Government."""
    pattern = re.compile(r"core\.windows\.net|vault\.azure\.net|usgovcloudapi")
    for file in INFRA.rglob("*.bicep"):
        code = "\n".join(
            line for line in file.read_text().splitlines() if not line.strip().startswith("//")
        )
        assert not pattern.search(code), file


def test_every_setting_the_code_reads_is_set_or_deliberately_left_out(
    app_settings: dict[str, Any],
) -> None:
    """Point 8: a new *_SETTING constant must be set by the template or listed in LEFT_OUT."""
    ours = {v for k, v in vars(settings).items() if k.endswith("_SETTING") and isinstance(v, str)}
    set_by_template = set(app_settings) - HOST_SETTINGS
    assert set_by_template <= ours, "the template sets a setting the code does not read"
    assert set(LEFT_OUT) <= ours, "LEFT_OUT names a setting that no longer exists"
    assert not set_by_template & set(LEFT_OUT)
    missing = ours - set_by_template - set(LEFT_OUT)
    assert not missing, f"set these in infra/app/api.bicep or list them in LEFT_OUT: {missing}"


def test_required_and_chosen_settings_are_wired_from_parameters(
    app_settings: dict[str, Any],
) -> None:
    """Point 3: each choice reaches its app setting."""
    assert app_settings[settings.CLIENT_ID_SETTING] == "defenderClientId"
    assert app_settings[settings.TENANT_ID_SETTING] == "defenderTenantId"
    assert app_settings[settings.API_SETTING] == "defenderApi"
    assert app_settings[settings.CLOUD_SETTING] == "defenderCloud"
    assert app_settings[settings.CREDENTIAL_KIND_SETTING] == "credentialKind"
    assert app_settings[settings.INGEST_TENANTS_SETTING] == "ingestTenants"
    assert app_settings[settings.INGEST_SCHEDULE_SETTING] == "ingestSchedule"
    assert app_settings[settings.KEY_VAULT_URL_SETTING] == "vaultUrl"
    assert app_settings[settings.AZURE_CREDENTIAL_SETTING] == "managed-identity"
    assert app_settings[settings.TENANT_TABLE_SETTING] == DEFAULTS[settings.TENANT_TABLE_SETTING]
    assert app_settings[settings.API_AUTH_MODE_SETTING] == "apiAuthMode"
    assert app_settings[settings.API_APP_ID_URI_SETTING] == "appIdUri"


def test_app_service_authentication_gates_the_api_in_entra_mode(
    main: dict[str, Any], api: dict[str, Any]
) -> None:
    """With API_AUTH_MODE=entra (the default), App Service Authentication
    answers 401 to requests without a valid token for the API, except the two anonymous
    routes; allowed audiences are the API's; no token store. Key mode has no gate."""
    params = main["parameters"]
    assert set(decorator(params["apiAuthMode"], "allowed")) == set(
        typing.get_args(settings.ApiAuthMode)
    )
    assert params["apiAuthMode"]["default"] == DEFAULTS[settings.API_AUTH_MODE_SETTING] == "entra"
    assert params["apiAppIdUri"]["default"] == ""
    passed = main["modules"]["api"]["config"]["params"]
    assert passed["apiAuthMode"] == "apiAuthMode" and passed["apiAppIdUri"] == "apiAppIdUri"
    module = main["modules"]["auth"]
    assert module["detail"]["path"] == "app/auth.bicep"
    condition = module["config"]["condition"]["operator"]
    assert condition["operands"] == {"operand_1": "apiAuthMode", "operand_2": "entra"}
    wired = module["config"]["config"]["params"]
    assert wired["clientId"] == "defenderClientId" and wired["tenantId"] == "homeTenantId"
    assert "appIdUri" in json.dumps(wired["appIdUri"])
    auth = parse("app/auth.bicep")["resources"]["authSettings"]
    assert auth["type"] == "Microsoft.Web/sites/config"
    assert auth["config"]["name"] == "authsettingsV2"
    props = auth["config"]["properties"]
    assert props["platform"]["enabled"] is True
    validation = props["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    from shared.api.routes import ROUTES

    public = {f"/api{r.path}" for r in ROUTES if r.public}
    assert set(validation["excludedPaths"]) == public
    assert public == {"/api/health", "/api/consent/callback", "/api/hunting/status"}
    # exact paths only: what an excluded path with a wildcard matches is not documented
    assert not any("*" in p or "{" in p for p in validation["excludedPaths"])
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True and aad["registration"]["clientId"] == "clientId"
    issuer = json.dumps(aad["registration"]["openIdIssuer"])
    assert "loginEndpoint" in issuer and "v2.0" in issuer  # from the cloud deployed to
    assert aad["validation"]["allowedAudiences"] == ["appIdUri", "clientId"]
    assert props["login"]["tokenStore"]["enabled"] is False
    uri = api["variables"]["appIdUri"]["value"]["operator"]["operands"]
    assert "api://${defenderClientId}" in json.dumps(uri)


def test_site_is_hardened(api: dict[str, Any]) -> None:
    """Point 5: HTTPS only, TLS 1.2, FTPS off, HTTP/2, basic publishing credentials off."""
    site = api["resources"]["functionApp"]["config"]
    props = site["properties"]
    assert props["httpsOnly"] is True
    config = props["siteConfig"]
    assert config["minTlsVersion"] == "1.2"
    assert config["scmMinTlsVersion"] == "1.2"
    assert config["ftpsState"] == "Disabled"
    assert config["http20Enabled"] is True
    policies = {
        r["config"]["name"]: r["config"]["properties"]["allow"]
        for r in api["resources"].values()
        if r["type"] == "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
    }
    assert policies == {"ftp": False, "scm": False}
    assert props["functionAppConfig"]["runtime"]["name"] == "python"
    # federated credentials need a user-assigned identity
    # (docs/defender-service.md#federated-credentials)
    assert site["identity"]["type"] == "UserAssigned"
    # the newest Sites API the Azure Government regions register (Azure/azure-cli#31943)
    assert api["resources"]["functionApp"]["api_version"] == "2024-04-01"


def test_insights_refuse_local_auth_and_opentelemetry_is_on(app_settings: dict[str, Any]) -> None:
    """Point 5: Entra-only Application Insights; OpenTelemetry in host.json and for the worker."""
    monitoring = parse("app/monitoring.bicep")
    assert monitoring["resources"]["insights"]["config"]["properties"]["DisableLocalAuth"] is True
    assert app_settings["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    assert "Authorization=AAD" in app_settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    host = json.loads((ROOT / "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"


def test_storage_refuses_keys_and_holds_the_designs_containers_queues_tables() -> None:
    """Point 4: the containers, queues and tables of the design and of the HTTP API."""
    parsed = parse("app/storage.bicep")
    props = parsed["resources"]["storage"]["config"]["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    variables = {k: v["value"] for k, v in parsed["variables"].items()}
    containers = set(variables["containers"]) - {"deploymentContainerName"}
    assert containers == {
        storage.INCIDENT_CONTAINER,
        storage.STATE_CONTAINER,
        DEADLETTER_CONTAINER,
    }
    assert set(variables["queues"]) == {
        "defender-ingest",
        "defender-ingest-poison",
        "defender-hunting",
        "defender-hunting-poison",
        PUSH_QUEUE,
        POISON_QUEUE,
    }
    assert set(variables["tables"]) == {
        storage.INCIDENT_TABLE,
        DEFAULTS[settings.TENANT_TABLE_SETTING],
        "DefenderSubscriptions",
    }
    loops = {
        r["type"].rsplit("/", 1)[-1]: r["config"]["loop_type"]["detail"]["array_name"]
        for r in parsed["resources"].values()
        if "loop_type" in r["config"]
    }
    assert loops == {"containers": "containers", "queues": "queues", "tables": "tables"}


def test_vault_is_rbac_with_soft_delete_and_purge_protection_by_default(
    main: dict[str, Any],
) -> None:
    """Point 3: purge protection is a parameter (default on); the name can be refreshed."""
    vault = parse("app/vault.bicep")["resources"]["vault"]["config"]["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True
    assert vault["enablePurgeProtection"]["operator"]["type"] == "conditional"
    assert main["parameters"]["enablePurgeProtection"]["default"] is True
    assert "vaultNameSuffix" in json.dumps(main["modules"]["vault"]["config"]["params"]["name"])


def role_assignments(parsed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: r["config"]
        for name, r in parsed["resources"].items()
        if r["type"] == "Microsoft.Authorization/roleAssignments"
    }


def test_identity_and_developer_get_the_same_data_roles(main: dict[str, Any]) -> None:
    """Points 3 and 6: the developer gets the same role lists, only when a principal is set."""
    rbac = parse("app/rbac.bicep")
    assignments = role_assignments(rbac)
    arrays = {n: c["loop_type"]["detail"]["array_name"] for n, c in assignments.items()}
    assert arrays == {
        "storageRoleAssignments": "storageRoles",
        "vaultRoleAssignments": "vaultRoles",
        "insightsRoleAssignments": "insightsRoles",
        "developerStorageRoleAssignments": "developerStorageRoles",
        "developerVaultRoleAssignments": "developerVaultRoles",
        "developerInsightsRoleAssignments": "developerInsightsRoles",
    }
    variables = rbac["variables"]
    for kind in ("Storage", "Vault", "Insights"):
        ternary = variables[f"developer{kind}Roles"]["value"]["operator"]
        assert ternary["type"] == "conditional"
        assert ternary["operands"]["condition"] == "withDeveloper"
        same = json.dumps(ternary["operands"]["true_value"])
        assert f'"{kind.lower()}Roles"' in same  # the app's list (the vault's plus a writer role)
    writer = json.dumps(variables["developerVaultWriter"]["value"])
    assert "keyVaultCertificatesOfficer" in writer and "keyVaultSecretsOfficer" in writer
    for name, config in assignments.items():
        principal = config["config"]["properties"]["principalId"]
        assert principal == (
            "developerPrincipalId" if "developer" in name else "identityPrincipalId"
        )
    roles = variables["roles"]["value"]
    storage_roles = {
        op["operator"]["operands"]["operand_2"] for op in variables["storageRoles"]["value"]
    }
    assert storage_roles == {
        "storageBlobDataOwner",
        "storageQueueDataContributor",
        "storageTableDataContributor",
    }
    assert roles["keyVaultCertificateUser"] == "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba"
    params = main["modules"]["rbac"]["config"]["params"]
    assert params["developerPrincipalId"] == "principalId"


def test_certificate_role_only_when_the_certificate_kind_is_chosen(main: dict[str, Any]) -> None:
    """Point 3: Key Vault Certificate User is granted only with credentialKind certificate."""
    rbac = parse("app/rbac.bicep")
    vault_roles = json.dumps(rbac["variables"]["vaultRoles"]["value"])
    concat = rbac["variables"]["vaultRoles"]["value"]["function"]["parameters"]
    ternary = concat["arg_2"]["operator"]
    assert ternary["type"] == "conditional"
    assert ternary["operands"]["condition"]["operator"] == {
        "type": "equals",
        "operands": {"operand_1": "credentialKind", "operand_2": "certificate"},
    }
    assert "keyVaultCertificateUser" in json.dumps(ternary["operands"]["true_value"])
    assert ternary["operands"]["false_value"] == []
    assert "keyVaultSecretsUser" in vault_roles
    assert main["modules"]["rbac"]["config"]["params"]["credentialKind"] == "credentialKind"


def test_network_isolation_is_optional_and_covers_storage_and_vault(main: dict[str, Any]) -> None:
    """Point 3: VNet and private endpoints (blob, queue, table, vault) only with vnetEnabled."""
    for name in ("network", "privateEndpoints"):
        assert main["modules"][name]["config"]["condition"] == "vnetEnabled"
    endpoints = parse("app/private-endpoints.bicep")["variables"]["endpoints"]["value"]
    assert {e["group"] for e in endpoints} == {"blob", "queue", "table", "vault"}
    vnet = parse("app/vnet.bicep")["resources"]["vnet"]["config"]["properties"]
    delegations = [
        d["properties"]["serviceName"]
        for s in vnet["subnets"]
        for d in s["properties"].get("delegations", [])
    ]
    assert delegations == ["Microsoft.App/environments"]
    app_subnet = json.dumps(main["modules"]["api"]["config"]["params"]["appSubnetId"])
    assert "vnetEnabled" in app_subnet
    for file, resource in (("app/storage.bicep", "storage"), ("app/vault.bicep", "vault")):
        props = parse(file)["resources"][resource]["config"]["properties"]
        assert props["publicNetworkAccess"]["operator"]["operands"]["condition"] == "vnetEnabled"


def test_outputs_give_a_local_run_its_settings(main: dict[str, Any]) -> None:
    """Point 6: azd env get-values then holds what AZURE_CREDENTIAL_KIND=developer needs."""
    assert {
        "KEY_VAULT_URL",
        "DATA_STORAGE_ACCOUNT_NAME",
        "DEFENDER_TENANT_ID",
        "DEFENDER_CLOUD",
        "AZURE_USER_ASSIGNED_IDENTITY_PRINCIPAL_ID",
        "CONSENT_REDIRECT_URI",
        "API_AUTH_MODE",
        "API_APP_ID_URI",
    } <= set(main["outputs"])


def test_azure_yaml_deploys_the_function_from_infra() -> None:
    text = (ROOT / "azure.yaml").read_text()
    assert "host: function" in text
    assert "path: infra" in text


def test_readme_deploy_section_names_every_parameter_and_azd_value(
    parameters_file: dict[str, str],
) -> None:
    """A newcomer finds each parameter, its azd value and the manual steps (docs/deploy.md)."""
    section = (ROOT / "docs" / "deploy.md").read_text()
    for name, value in parameters_file.items():
        variable = re.match(r"\$\{([A-Z0-9_]+)", value)
        assert variable
        assert f"`{name}`" in section, name
        assert f"`{variable.group(1)}`" in section, variable.group(1)
    for step in (
        "infra/entra/setup_app.py",
        "--dry-run",
        "azd up",
        "--federated-principal-id",
        "--store-secret",
        "--store-certificate",
        "--grant-admin-consent",
        "consent-url",
        "python -m shared check",
        "AzureUSGovernment",
        "azd down --purge",
    ):
        assert step in section, step
