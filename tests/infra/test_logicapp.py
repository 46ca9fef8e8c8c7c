"""infra/logicapp/: the sample Logic App deploys (pycep structure of its Bicep), calls the API as
the route table defines it with its managed identity and no key, keeps secrets out of run
history, and holds exactly the app roles its calls need. That it cannot loop is shown against
the API in tests/api/test_logicapps.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from shared.api.routes import match
from tests.infra.wdl import Run

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "infra" / "logicapp"
MSI = {
    "type": "ManagedServiceIdentity",
    "identity": "@parameters('identityId')",
    "audience": "@parameters('bridgeAudience')",
}
TRIGGER = "When_a_high_severity_incident_is_created_or_updated"


def parse(name: str) -> dict[str, Any]:
    return dict(BicepParser().parse(file_path=SAMPLE / name))


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return dict(json.loads((SAMPLE / "workflow.json").read_text()))


def actions(scope: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every action, those inside conditions included."""
    for name, action in scope.items():
        yield name, action
        yield from actions(action.get("actions") or {})
        yield from actions((action.get("else") or {}).get("actions") or {})


def calls(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every request the workflow makes: the trigger's subscribe and unsubscribe, each HTTP
    action."""
    hook = workflow["triggers"][TRIGGER]["inputs"]
    out = [("subscribe", hook["subscribe"]), ("unsubscribe", hook["unsubscribe"])]
    out += [(n, a["inputs"]) for n, a in actions(workflow["actions"]) if a["type"] == "Http"]
    return out


def route_of(call: dict[str, Any]) -> Any:
    """The route a call reaches (its URI's expressions stand for one path segment each)."""
    uri = call["uri"]
    prefix = "@{parameters('bridgeUrl')}/api"
    assert uri.startswith(prefix), uri
    path = re.sub(r"@\{[^{}]*\}", "x", uri[len(prefix) :]).split("?")[0]
    route, _ = match(call["method"], path)
    return route


def test_the_module_deploys_the_workflow_with_its_identity() -> None:
    main = parse("main.bicep")
    resources = main["resources"]
    identity = resources["identity"]
    assert identity["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities"
    flow = resources["workflow"]
    assert flow["type"] == "Microsoft.Logic/workflows" and flow["api_version"] == "2019-05-01"
    config = flow["config"]
    assert config["identity"]["type"] == "UserAssigned"
    assert list(config["identity"]["userAssignedIdentities"]) == ["'${identity.id}'"]
    props = config["properties"]
    assert props["state"] == "workflowState"
    assert props["definition"]["function"]["type"] == "load_json_content"
    assert props["definition"]["function"]["parameters"]["file_path"] == "workflow.json"
    # every parameter the definition declares gets its value, and nothing else
    definition = json.loads((SAMPLE / "workflow.json").read_text())
    assert set(props["parameters"]) == set(definition["parameters"])
    assert "identity" in json.dumps(props["parameters"]["identityId"])
    # the roles are assigned before the workflow exists and subscribes
    assert config["dependsOn"] == ["roles"]
    module = main["modules"]["roles"]
    assert module["detail"]["path"] == "roles.bicep"
    assert module["config"]["condition"] == "assignAppRoles"
    wired = module["config"]["config"]["params"]
    assert wired["apiClientId"] == "apiClientId" and wired["appRoles"] == "appRoles"
    assert "principalId" in json.dumps(wired["principalId"])
    params = main["parameters"]
    assert params["assignAppRoles"]["default"] is True
    assert params["workflowState"]["default"] == "Enabled"
    assert {"identityPrincipalId", "identityClientId", "workflowName"} <= set(main["outputs"])


def test_the_app_roles_are_assigned_with_the_graph_extension() -> None:
    """Microsoft.Graph/appRoleAssignedTo on the API's service principal (found by its client
    id), one per role, each role looked up by its value; the extension is the one
    bicepconfig.json names, Microsoft Graph v1.0 (https://learn.microsoft.com/graph/templates/)."""
    roles = parse("roles.bicep")
    assert list(roles["extensions"]) == ["microsoftGraphV1"]
    config = json.loads((SAMPLE / "bicepconfig.json").read_text())
    reference = config["extensions"]["microsoftGraphV1"]
    assert reference.startswith("br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:")
    api = roles["resources"]["api"]
    assert api["type"] == "Microsoft.Graph/servicePrincipals" and api["existing"] is True
    assert api["config"] == {"appId": "apiClientId"}
    assignment = roles["resources"]["assignments"]
    assert assignment["type"] == "Microsoft.Graph/appRoleAssignedTo"
    assert assignment["api_version"] == "v1.0"
    loop = assignment["config"]["loop_type"]["detail"]
    assert loop == {"item_name": "role", "array_name": "appRoles"}
    body = assignment["config"]["config"]
    assert body["principalId"] == "principalId"
    assert "api" in json.dumps(body["resourceId"])
    looked_up = json.dumps(body["appRoleId"])
    assert '"filter"' in looked_up and '"role"' in looked_up and "appRoles" in looked_up


def test_the_identity_holds_exactly_the_roles_its_calls_need(workflow: dict[str, Any]) -> None:
    """The default appRoles: the role of every route the workflow calls, and the watched
    tenant's role (not Tenants.All)."""
    needed = {route_of(call).role for _, call in calls(workflow)}
    default = parse("main.bicep")["parameters"]["appRoles"]["default"]
    assert set(default) == needed | {"Tenant.${watchedTenantId}"}
    assert "Tenants.All" not in default


def test_every_call_uses_the_managed_identity_and_no_key(workflow: dict[str, Any]) -> None:
    for name, call in calls(workflow):
        assert call["authentication"] == MSI, name
        assert not {h.lower() for h in call.get("headers", {})} & {"x-functions-key"}, name
        assert "code=" not in call["uri"], name
    text = json.dumps(workflow)
    assert "functionKey" not in text and "x-functions-key" not in text


def test_secrets_stay_out_of_run_history(workflow: dict[str, Any]) -> None:
    """The trigger's inputs hold the callback URL (its sig is a credential) and the subscribe
    answer holds the signing secret; the hunt's outputs hold security data."""
    trigger = workflow["triggers"][TRIGGER]
    assert set(trigger["runtimeConfiguration"]["secureData"]["properties"]) == {
        "inputs",
        "outputs",
    }
    hunt = dict(actions(workflow["actions"]))["Hunt_recent_high_severity_alerts"]
    assert "outputs" in hunt["runtimeConfiguration"]["secureData"]["properties"]


def test_the_calls_are_valid_requests_of_their_routes(workflow: dict[str, Any]) -> None:
    """Each call's body, with its expressions evaluated as Logic Apps would, is one its route
    accepts; the hunt is a template with valid parameters, run asynchronously."""
    from shared.api.handlers import HUNT_BODY, SUBSCRIBE_BODY, UPDATE_BODY
    from shared.usecases.hunting import templates

    run = Run(
        parameters={"tenantId": "11111111-2222-3333-4444-555555555555", "triageTag": "t"},
        trigger_body={"tenant": "t", "incident": {"id": "42", "tags": ["keep"]}},
        bodies={
            "Get_the_incident_as_it_is_now": {"id": "42", "tags": ["keep"]},
            "Hunt_recent_high_severity_alerts": {"rowCount": 3},
        },
    )
    bodies = {name: run.value(call.get("body")) for name, call in calls(workflow)}
    assert SUBSCRIBE_BODY.check(bodies["subscribe"])["minSeverity"] == "high"
    assert bodies["subscribe"]["callbackUrl"] == run.callback_url
    assert bodies["subscribe"]["tenants"] == ["11111111-2222-3333-4444-555555555555"]
    assert bodies["unsubscribe"] == {"callbackUrl": run.callback_url}
    hunt = HUNT_BODY.check(bodies["Hunt_recent_high_severity_alerts"])
    templates()[hunt["template"]].render(hunt["parameters"])
    hunt_call = dict(calls(workflow))["Hunt_recent_high_severity_alerts"]
    assert hunt_call["headers"] == {"Prefer": "respond-async"}
    # the existing tags are kept, the triage tag added; then the comment, in its own call
    assert UPDATE_BODY.check(bodies["Tag_the_incident"]) == {"tags": ["keep", "t"]}
    comment = UPDATE_BODY.check(bodies["Comment_on_the_incident"])
    assert set(comment) == {"comment"} and "3 related" in comment["comment"]
    for name, call in calls(workflow):
        assert route_of(call).operation_id, name


def test_the_tag_comes_before_the_comment(workflow: dict[str, Any]) -> None:
    """The tag and the comment are two PATCHes, the comment only after the tag succeeded: every
    version the workflow makes carries the tag, so none can trigger it again."""
    steps = dict(actions(workflow["actions"]))
    assert steps["Comment_on_the_incident"]["runAfter"] == {"Tag_the_incident": ["Succeeded"]}
    assert "tags" in steps["Tag_the_incident"]["inputs"]["body"]
    assert set(steps["Comment_on_the_incident"]["inputs"]["body"]) == {"comment"}
    assert set(steps["Tag_the_incident"]["inputs"]["body"]) == {"tags"}


def test_the_readme_walks_through_deploying_it() -> None:
    readme = (ROOT / "docs" / "logic-apps.md").read_text()
    section = readme[readme.index("## The sample Logic App\n") :]
    section = section[: section.index("\n## ")]
    for step in (
        "infra/logicapp/main.bicep",
        "az deployment group create",
        "bridgeUrl",
        "apiClientId",
        "watchedTenantId",
        "--define-role",
        "assignAppRoles=false",
        "workflowState=Disabled",
        "--assign",
        "identityPrincipalId",
        "AppRoleAssignment.ReadWrite.All",
    ):
        assert step in section, step
