"""infra/entra/setup_app.py: the Entra side, checked through its dry run and an in-memory Graph.

The dry run must print every call a real run makes, in order; the same steps run against a
small stateful stand-in of the Graph and Key Vault endpoints they use, to show that a second
run updates the app instead of adding a second one.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from shared.api.access import ALL_TENANTS, ROLES
from shared.core.clouds import CLOUDS
from shared.credentials.claims import FEATURE_ROLES

ROOT = Path(__file__).resolve().parents[2]
API_ROLES = {*ROLES, ALL_TENANTS}
SCRIPT = ROOT / "infra" / "entra" / "setup_app.py"
TENANT = "11111111-1111-1111-1111-111111111111"
IDENTITY = "22222222-2222-2222-2222-222222222222"
CLIENT = "33333333-3333-3333-3333-333333333333"
GRAPH = "00000003-0000-0000-c000-000000000000"
LEGACY = "8ee8fdad-f234-4243-8f3b-15c294843740"


@pytest.fixture(scope="module")
def setup_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("setup_app", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def dry_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--tenant", TENANT, "--dry-run", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def calls(stdout: str) -> list[str]:
    """'METHOD path' of each printed call, hosts and query strings left out."""
    out = []
    for line in stdout.splitlines():
        match = re.match(r"(GET|POST|PATCH|PUT|DELETE) https://[^/]+(/[^?]*)", line)
        if match:
            out.append(f"{match.group(1)} {match.group(2)}")
    return out


EVERYTHING = (
    "--function-host",
    "func-abc.azurewebsites.net",
    "--features",
    "ingest,update,hunting",
    "--api",
    "both",
    "--multi-tenant",
    "--federated-principal-id",
    IDENTITY,
    "--grant-admin-consent",
    "--vault-url",
    "https://kv-abc.vault.azure.net",
    "--store-secret",
    "--assign",
    f"{IDENTITY}=Incidents.Read,Tenant.{TENANT}",
)


@pytest.mark.subprocess
def test_dry_run_prints_every_call_of_a_first_run_in_order() -> None:
    done = dry_run(*EVERYTHING)
    assert done.returncode == 0, done.stderr
    assert calls(done.stdout) == [
        f"GET /v1.0/servicePrincipals(appId='{GRAPH}')",
        f"GET /v1.0/servicePrincipals(appId='{LEGACY}')",
        "GET /v1.0/applications",
        "POST /v1.0/applications",
        "PATCH /v1.0/applications/<app-object-id>",
        "GET /v1.0/servicePrincipals(appId='<app-client-id>')",
        "POST /v1.0/servicePrincipals",
        "GET /v1.0/applications/<app-object-id>/federatedIdentityCredentials",
        "POST /v1.0/applications/<app-object-id>/federatedIdentityCredentials",
        "GET /v1.0/servicePrincipals/<app-sp-id>/appRoleAssignments",
        *["POST /v1.0/servicePrincipals/<00000003-sp-id>/appRoleAssignedTo"] * 3,
        *["POST /v1.0/servicePrincipals/<8ee8fdad-sp-id>/appRoleAssignedTo"] * 2,
        "GET /v1.0/servicePrincipals/<app-sp-id>/appRoleAssignedTo",
        *["POST /v1.0/servicePrincipals/<app-sp-id>/appRoleAssignedTo"] * 2,
        "POST /v1.0/applications/<app-object-id>/addPassword",
        "PUT /secrets/defender-client-secret",
    ]
    assert done.stdout.rstrip().endswith("dry run: no call was made")
    lines = done.stdout.splitlines()
    body = json.loads(lines[4])  # the POST /applications body
    assert body["signInAudience"] == "AzureADMultipleOrgs"
    # the app's own API: its roles for users and apps, a user scope, v2 tokens, its URI
    roles = {r["value"]: r for r in body["appRoles"]}
    assert set(roles) == set(API_ROLES) | {f"Tenant.{TENANT}"}
    assert all(r["allowedMemberTypes"] == ["User", "Application"] for r in roles.values())
    assert body["api"]["requestedAccessTokenVersion"] == 2
    assert [s["value"] for s in body["api"]["oauth2PermissionScopes"]] == ["access_as_user"]
    assert json.loads(lines[6]) == {"identifierUris": ["api://<app-client-id>"]}
    assert "API_APP_ID_URI=api://<app-client-id>" in done.stdout
    grants = [
        json.loads(lines[i + 1])
        for i, x in enumerate(lines)
        if "/<app-sp-id>/appRoleAssignedTo" in x and x.startswith("POST")
    ]
    assert {(g["principalId"], g["appRoleId"]) for g in grants} == {
        (IDENTITY, roles["Incidents.Read"]["id"]),
        (IDENTITY, roles[f"Tenant.{TENANT}"]["id"]),
    }
    assert body["web"]["redirectUris"] == [
        "https://func-abc.azurewebsites.net/api/consent/callback"
    ]
    granted = {
        r["resourceAppId"]: {a["id"] for a in r["resourceAccess"]}
        for r in body["requiredResourceAccess"]
    }
    assert granted == {
        GRAPH: {
            "34bf0e97-1971-4929-b999-9e2442d941d7",  # SecurityIncident.ReadWrite.All
            "472e4a4d-bb4a-4026-98d1-0b0d74cb74a5",  # SecurityAlert.Read.All
            "dd98c7f5-2d42-42d3-a0e4-633161547251",  # ThreatHunting.Read.All
        },
        LEGACY: {
            "8d90f441-09cf-4fdc-ab45-e874fa3a28e8",  # Incident.ReadWrite.All
            "7734e8e5-8dde-42fc-b5ae-6eafea078693",  # AdvancedHunting.Read.All
        },
    }


@pytest.mark.subprocess
def test_dry_run_of_an_existing_app_patches_it() -> None:
    done = dry_run("--client-id", CLIENT, "--function-host", "func-abc.azurewebsites.net")
    assert done.returncode == 0, done.stderr
    assert calls(done.stdout) == [
        f"GET /v1.0/servicePrincipals(appId='{GRAPH}')",
        "GET /v1.0/applications",
        "PATCH /v1.0/applications/<app-object-id>",
        f"GET /v1.0/servicePrincipals(appId='{CLIENT}')",
    ]
    assert f"DEFENDER_CLIENT_ID={CLIENT}" in done.stdout
    assert "AzureADMyOrg" in done.stdout  # single-tenant unless --multi-tenant


@pytest.mark.subprocess
def test_dry_run_for_us_government_uses_its_hosts_and_audience() -> None:
    done = dry_run("--cloud", "gcchigh", "--federated-principal-id", IDENTITY)
    assert done.returncode == 0, done.stderr
    hosts = set(re.findall(r"^[A-Z]+ https://([^/]+)/", done.stdout, re.MULTILINE))
    assert hosts == {"graph.microsoft.us"}
    assert f"https://login.microsoftonline.us/{TENANT}/v2.0" in done.stdout
    assert "api://AzureADTokenExchangeUSGov" in done.stdout


@pytest.mark.subprocess
def test_dry_run_with_a_certificate_makes_it_in_the_vault() -> None:
    done = dry_run("--vault-url", "https://kv-abc.vault.azure.net", "--store-certificate")
    assert done.returncode == 0, done.stderr
    assert calls(done.stdout)[-4:] == [
        "POST /certificates/defender-certificate/create",
        "GET /certificates/defender-certificate/pending",
        "GET /certificates/defender-certificate",
        "PATCH /v1.0/applications/<app-object-id>",
    ]


@pytest.mark.subprocess
def test_the_secret_is_never_printed() -> None:
    done = dry_run("--vault-url", "https://kv-abc.vault.azure.net", "--store-secret")
    assert "<secret>" not in done.stdout + done.stderr  # the dry run's stand-in secret text
    assert '"value": "<redacted>"' in done.stdout


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "args",
    [
        ("--store-secret",),
        ("--features", "ingest,delete"),
        ("--store-secret", "--store-certificate", "--vault-url", "https://kv.vault.azure.net"),
    ],
)
def test_bad_arguments_are_usage_errors(args: tuple[str, ...]) -> None:
    done = dry_run(*args)
    assert done.returncode == 2
    assert "error:" in done.stderr


def test_cloud_table_agrees_with_shared_clouds(setup_app: ModuleType) -> None:
    assert set(setup_app.CLOUDS) == set(CLOUDS)
    for name, cloud in setup_app.CLOUDS.items():
        ours = CLOUDS[name]
        assert cloud.authority_url == ours.authority_url
        assert cloud.graph_api_url == ours.graph_api_url
        assert cloud.vault_suffix == ours.vault_suffix
        assert cloud.token_exchange_audience == ours.token_exchange_audience


@pytest.mark.parametrize("api", ["graph", "legacy"])
@pytest.mark.parametrize(
    "features", [("ingest",), ("ingest", "update"), ("ingest", "update", "hunting")]
)
def test_requested_permissions_satisfy_what_check_verifies(
    setup_app: ModuleType, api: str, features: tuple[str, ...]
) -> None:
    names = setup_app.required_permissions([api], features)[setup_app.RESOURCE_APPS[api]]
    for feature in features:
        assert set(FEATURE_ROLES[api][feature]) & set(names), feature
    if "update" in features:
        assert not any(n.endswith(".Read.All") and "Incident" in n for n in names)


class FakeTenant:
    """A stateful stand-in for the Graph and Key Vault calls the script makes."""

    def __init__(self, page_size: int | None = None) -> None:
        #: collections answer this many items a page, with an ``@odata.nextLink`` to the rest
        self.page_size = page_size
        self.ids = (f"id-{n}" for n in itertools.count(1))
        self.apps: dict[str, dict[str, Any]] = {}
        self.sps: dict[str, dict[str, Any]] = {
            GRAPH: {"id": "graph-sp", "appRoles": self.roles(GRAPH)},
            LEGACY: {"id": "mtp-sp", "appRoles": self.roles(LEGACY)},
        }
        self.fics: dict[str, list[dict[str, Any]]] = {}
        self.assignments: list[dict[str, Any]] = []
        self.secrets: dict[str, str] = {}
        self.log: list[str] = []

    @staticmethod
    def roles(app_id: str) -> list[dict[str, str]]:
        known = sys.modules["setup_app"].KNOWN_ROLE_IDS[app_id]
        return [{"value": n, "id": i} for n, i in known.items()]

    def collection(self, url: str, items: list[dict[str, Any]]) -> Any:
        """One page of a Graph collection: its ``$skiptoken`` is the offset of the page."""
        answer = sys.modules["setup_app"].Answer
        if self.page_size is None:
            return answer(200, {"value": list(items)})
        skip = int(re.search(r"skiptoken=(\d+)", url).group(1)) if "skiptoken=" in url else 0
        body: dict[str, Any] = {"value": items[skip : skip + self.page_size]}
        if skip + self.page_size < len(items):
            base = re.sub(r"[?&]\$skiptoken=\d+$", "", url)
            joiner = "&" if "?" in base else "?"
            body["@odata.nextLink"] = f"{base}{joiner}$skiptoken={skip + self.page_size}"
        return answer(200, body)

    def __call__(self, method: str, url: str, body: dict[str, Any] | None) -> Any:
        answer = sys.modules["setup_app"].Answer
        self.log.append(f"{method} {url}")
        path = url.split("?", 1)[0]
        sp = re.search(r"servicePrincipals\(appId='([^']+)'\)$", path)
        if sp:
            found = self.sps.get(sp.group(1))
            return answer(200, found) if found else answer(404, {"error": {"message": "none"}})
        if path.endswith("/v1.0/applications") and method == "GET":
            return self.collection(url, list(self.apps.values()))
        if path.endswith("/v1.0/applications") and method == "POST":
            app = {
                "id": next(self.ids),
                "appId": next(self.ids),
                "keyCredentials": [],
                **(body or {}),
            }
            self.apps[app["id"]] = app
            return answer(201, app)
        app_patch = re.search(r"/applications/([^/]+)$", path)
        if app_patch and method == "PATCH":
            self.apps[app_patch.group(1)].update(body or {})
            return answer(204, {})
        if path.endswith("/v1.0/servicePrincipals") and method == "POST":
            assert body
            self.sps[body["appId"]] = {"id": next(self.ids)}
            return answer(201, self.sps[body["appId"]])
        fic = re.search(r"/applications/([^/]+)/federatedIdentityCredentials(?:/(.+))?$", path)
        if fic:
            items = self.fics.setdefault(fic.group(1), [])
            if method == "GET":
                return self.collection(url, items)
            if method == "POST":
                items.append({"id": next(self.ids), **(body or {})})
                return answer(201, items[-1])
            next(i for i in items if i["id"] == fic.group(2)).update(body or {})
            return answer(204, {})
        if path.endswith("/appRoleAssignments"):
            return self.collection(url, self.assignments)
        assigned_to = re.search(r"/servicePrincipals/([^/]+)/appRoleAssignedTo$", path)
        if assigned_to and method == "GET":
            held = [a for a in self.assignments if a["resourceId"] == assigned_to.group(1)]
            return self.collection(url, held)
        if assigned_to:
            self.assignments.append(dict(body or {}))
            return answer(201, {})
        if path.endswith("/addPassword"):
            return answer(200, {"secretText": "s3cret-value-from-entra"})
        if "/secrets/" in path and method == "PUT":
            assert body
            self.secrets[path.rsplit("/", 1)[1]] = body["value"]
            return answer(200, {})
        return answer(400, {"error": {"message": f"unexpected {method} {path}"}})


def test_a_second_run_updates_the_same_app_and_adds_nothing_twice(
    setup_app: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = FakeTenant()
    options = setup_app.Options(
        tenant=TENANT,
        apis=("graph",),
        features=("ingest", "hunting"),
        multi_tenant=True,
        function_host="func-abc.azurewebsites.net",
        federated_principal_id=IDENTITY,
        grant_admin_consent=True,
    )
    first = setup_app.Setup(options, tenant, print).run()
    tenant.apps[next(iter(tenant.apps))]["web"]["redirectUris"].append("https://other/cb")
    second = setup_app.Setup(options, tenant, print).run()
    assert first == second
    assert len(tenant.apps) == 1
    app = next(iter(tenant.apps.values()))
    assert app["web"]["redirectUris"] == [
        "https://func-abc.azurewebsites.net/api/consent/callback",
        "https://other/cb",
    ]
    assert app["signInAudience"] == "AzureADMultipleOrgs"
    assert [len(v) for v in tenant.fics.values()] == [1]
    assert len(tenant.assignments) == 3  # Read.All incidents, alerts, hunting: once each
    assert app["identifierUris"] == [f"api://{app['appId']}"]
    assert len(app["appRoles"]) == len(API_ROLES)  # defined once, kept on the second run
    assert len(app["api"]["oauth2PermissionScopes"]) == 1
    assert any(line.startswith("PATCH ") for line in tenant.log)
    assert "DEFENDER_CLIENT_ID=" in capsys.readouterr().out


def test_a_stored_secret_goes_to_the_vault_and_nowhere_else(
    setup_app: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = FakeTenant()
    options = setup_app.Options(
        tenant=TENANT, vault_url="https://kv-abc.vault.azure.net", store_secret=True
    )
    setup_app.Setup(options, tenant, print).run()
    assert tenant.secrets == {"defender-client-secret": "s3cret-value-from-entra"}
    assert "s3cret" not in capsys.readouterr().out


def test_an_error_answer_stops_with_a_clear_message(setup_app: ModuleType) -> None:
    tenant = FakeTenant()
    del tenant.sps[LEGACY]  # a tenant without the Microsoft Threat Protection principal
    options = setup_app.Options(tenant=TENANT, apis=("legacy",))
    with pytest.raises(setup_app.SetupError, match="HTTP 404"):
        setup_app.Setup(options, tenant, print).run()


class SlowTenant(FakeTenant):
    """Answers the first ``refusals`` consent grants with 400, as Entra does while a new
    service principal is still replicating."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    def __call__(self, method: str, url: str, body: dict[str, Any] | None) -> Any:
        if url.endswith("/appRoleAssignedTo") and self.refusals:
            self.refusals -= 1
            self.log.append(f"{method} {url} (refused)")
            return sys.modules["setup_app"].Answer(
                400, {"error": {"message": "Resource does not exist or one of its queried..."}}
            )
        return super().__call__(method, url, body)


def test_a_grant_refused_while_entra_replicates_is_retried(setup_app: ModuleType) -> None:
    waits: list[float] = []
    tenant = SlowTenant(refusals=2)
    options = setup_app.Options(tenant=TENANT, grant_admin_consent=True, wait=waits.append)
    setup_app.Setup(options, tenant, lambda _: None).run()
    assert len(tenant.assignments) == 2  # ingest: incidents and alerts
    assert waits == [setup_app.SETTLE_SECONDS] * 2


def test_a_grant_refused_for_good_is_an_error(setup_app: ModuleType) -> None:
    waits: list[float] = []
    tenant = SlowTenant(refusals=100)
    options = setup_app.Options(tenant=TENANT, grant_admin_consent=True, wait=waits.append)
    with pytest.raises(setup_app.SetupError, match="HTTP 400: Resource does not exist"):
        setup_app.Setup(options, tenant, lambda _: None).run()
    assert len(waits) == setup_app.SETTLE_ATTEMPTS - 1


def test_features_are_the_ones_the_settings_accept(setup_app: ModuleType) -> None:
    from typing import get_args

    from shared.core.settings import Feature

    for api in ("graph", "legacy"):
        assert set(setup_app.PERMISSIONS[api]) == set(get_args(Feature))


@pytest.mark.parametrize("page_size", [None, 2])
def test_roles_are_assigned_once_and_an_administrators_roles_are_kept(
    setup_app: ModuleType, page_size: int | None
) -> None:
    """--assign defines the roles it names (Tenant.<tid>, an MSSP's team role) next to the
    API's, assigns each once (a second run assigns nothing, also when the assignments it reads
    come back over several pages), and keeps roles, URIs and scopes an administrator added."""
    tenant = FakeTenant(page_size)
    logic_app, group = IDENTITY, "44444444-4444-4444-4444-444444444444"
    options = setup_app.Options(
        tenant=TENANT,
        assign=(
            (logic_app, ("Incidents.Read", "Subscriptions.Manage", "Tenants.All")),
            (group, (f"Tenant.{TENANT}", "Team.Blue")),
        ),
    )
    setup_app.Setup(options, tenant, lambda _: None).run()
    app = next(iter(tenant.apps.values()))
    app["appRoles"].append({"id": "admin-role", "value": "Admin.Own", "isEnabled": True})
    app["identifierUris"].append("https://contoso.example/bridge")
    setup_app.Setup(options, tenant, lambda _: None).run()
    values = [r["value"] for r in app["appRoles"]]
    assert len(values) == len(set(values))
    assert set(values) == API_ROLES | {f"Tenant.{TENANT}", "Team.Blue", "Admin.Own"}
    assert app["identifierUris"] == [f"api://{app['appId']}", "https://contoso.example/bridge"]
    sp = tenant.sps[app["appId"]]["id"]
    ids = {r["value"]: r["id"] for r in app["appRoles"]}
    ours = {(a["principalId"], a["appRoleId"]) for a in tenant.assignments if a["resourceId"] == sp}
    assert len(ours) == len([a for a in tenant.assignments if a["resourceId"] == sp]) == 5
    assert (group, ids["Team.Blue"]) in ours and (logic_app, ids["Tenants.All"]) in ours


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "assign",
    ["not-a-guid=Incidents.Read", f"{IDENTITY}", f"{IDENTITY}=", f"{IDENTITY}=has space"],
)
def test_bad_assignments_are_usage_errors(assign: str) -> None:
    done = dry_run("--assign", assign)
    assert done.returncode == 2 and "--assign" in done.stderr


def test_the_api_roles_are_the_ones_the_app_reads(setup_app: ModuleType) -> None:
    assert set(setup_app.API_ROLES) == API_ROLES
    assert setup_app.role_id("Incidents.Read") == setup_app.role_id("Incidents.Read")


@pytest.mark.subprocess
def test_a_defined_role_is_added_and_assigned_to_nobody(setup_app: ModuleType) -> None:
    """--define-role adds a role (the Logic App sample's Tenant.<tid>, assigned by its Bicep)
    next to the API's, once, with no assignment."""
    tenant = FakeTenant()
    options = setup_app.Options(tenant=TENANT, define_roles=(f"Tenant.{TENANT}",))
    setup_app.Setup(options, tenant, lambda _: None).run()
    setup_app.Setup(options, tenant, lambda _: None).run()
    app = next(iter(tenant.apps.values()))
    values = [r["value"] for r in app["appRoles"]]
    assert sorted(values) == sorted([*API_ROLES, f"Tenant.{TENANT}"])
    role = next(r for r in app["appRoles"] if r["value"] == f"Tenant.{TENANT}")
    assert role["id"] == setup_app.role_id(f"Tenant.{TENANT}") and role["isEnabled"]
    assert tenant.assignments == []
    done = dry_run("--define-role", "has space")
    assert done.returncode == 2 and "--define-role" in done.stderr
    shown = dry_run("--client-id", CLIENT, "--define-role", f"Tenant.{TENANT}")
    assert shown.returncode == 0 and f"Tenant.{TENANT}" in shown.stdout
