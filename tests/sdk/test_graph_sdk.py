"""`msgraph-sdk` (GraphServiceClient) against the emulator's Graph security API: what users of
Microsoft's SDK see.

Every object the SDK parses is compared with the raw JSON it came from (`tests.sdk.mapping`):
a value the SDK could not map fails the test.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph import GraphServiceClient
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.security.alert_classification import AlertClassification
from msgraph.generated.models.security.alert_comment import AlertComment
from msgraph.generated.models.security.alert_determination import AlertDetermination
from msgraph.generated.models.security.incident import Incident
from msgraph.generated.models.security.incident_status import IncidentStatus
from msgraph.generated.models.security.service_source import ServiceSource
from msgraph.generated.security.alerts_v2.alerts_v2_request_builder import Alerts_v2RequestBuilder
from msgraph.generated.security.incidents.incidents_request_builder import (
    IncidentsRequestBuilder,
)
from msgraph.generated.security.microsoft_graph_security_run_hunting_query.run_hunting_query_post_request_body import (  # noqa: E501
    RunHuntingQueryPostRequestBody,
)

from emulator.server import Emulator
from tests.sdk.conftest import Sdk
from tests.sdk.mapping import assert_mapped, unrendered

PREFER = "include-unknown-enum-members"


def _truth(http: requests.Session, emu: Emulator) -> list[dict[str, Any]]:
    url = f"{emu.url}/_emulator/truth/{emu.home_tenant_id}/incidents?api=graph"
    return list(http.get(url, timeout=30).json()["value"])


def _config(prefer: bool, **query: Any) -> RequestConfiguration[Any]:
    params = IncidentsRequestBuilder.IncidentsRequestBuilderGetQueryParameters(**query)
    config: RequestConfiguration[Any] = RequestConfiguration(
        query_parameters=params if query else None
    )
    if prefer:
        config.headers.add("Prefer", PREFER)
    return config


async def _all_incidents(graph: GraphServiceClient, prefer: bool) -> list[tuple[Any, int]]:
    """Every page of incidents with alerts: (parsed page, page number)."""
    pages = []
    page = await graph.security.incidents.get(_config(prefer, expand=["alerts"], top=50))
    while page is not None:
        pages.append(page)
        if not page.odata_next_link:
            break
        page = await graph.security.incidents.with_url(page.odata_next_link).get(_config(prefer))
    return [(p, n) for n, p in enumerate(pages)]


@pytest.mark.parametrize("prefer", [True, False], ids=["prefer-unknown-members", "no-prefer"])
def test_list_incidents_with_alerts_across_pages(
    sdk: Sdk, http: requests.Session, prefer: bool
) -> None:
    """Every incident of the tenant, with its alerts and evidence, over 3+ pages; every value
    maps to the SDK's model; newer members show only with the Prefer header."""
    pages = sdk.run(lambda graph: _all_incidents(graph, prefer))
    raw_pages = [body for m, url, _, body in sdk.wire.responses if "/security/incidents" in url]
    assert len(pages) == len(raw_pages) >= 3
    for (page, _), raw in zip(pages, raw_pages, strict=True):
        assert_mapped(page, raw)
    incidents = [i for page, _ in pages for i in page.value]
    # every field of the SDK's incident, alert and evidence models is rendered (null where the
    # emulator does not simulate it: emulator/README.md lists those)
    raw_incidents = [i for raw in raw_pages for i in raw["value"]]
    for parsed, raw_incident in zip(incidents, raw_incidents, strict=True):
        assert unrendered(parsed, raw_incident) == set()
        for alert, raw_alert in zip(parsed.alerts, raw_incident["alerts"], strict=True):
            assert unrendered(alert, raw_alert) == set()
            for item, raw_item in zip(alert.evidence, raw_alert["evidence"], strict=True):
                assert unrendered(item, raw_item) == set(), raw_item["@odata.type"]
    truth = _truth(http, sdk.emu)
    assert sorted(i.id for i in incidents) == sorted(t["id"] for t in truth)
    statuses = {i.status for i in incidents}
    sources = {a.service_source for i in incidents for a in i.alerts}
    if prefer:
        assert IncidentStatus.AwaitingAction in statuses
        assert ServiceSource.MicrosoftSentinel in sources
        assert IncidentStatus.UnknownFutureValue not in statuses
    else:
        assert IncidentStatus.AwaitingAction not in statuses
        assert IncidentStatus.UnknownFutureValue in statuses
        assert ServiceSource.MicrosoftSentinel not in sources
        assert ServiceSource.UnknownFutureValue in sources
    # the newer incident fields are there, with realistic values
    assert all(0 <= i.priority_score <= 100 for i in incidents if i.priority_score is not None)
    assert any(i.summary for i in incidents) and any(i.resolving_comment for i in incidents)
    assert any(i.last_modified_by for i in incidents)
    assert any("Defender Experts" in (i.system_tags or []) for i in incidents)
    alerts = [a for i in incidents for a in i.alerts]
    assert all(a.categories == [a.category] for a in alerts)
    assert any(a.alert_policy_id for a in alerts) and all(a.product_name for a in alerts)
    assert all(a.investigation_state is not None for a in alerts)


def test_get_one_incident(sdk: Sdk, http: requests.Session) -> None:
    """GET by id, with alerts expanded, maps completely and equals the truth."""
    truth = _truth(http, sdk.emu)
    wanted = next(t for t in truth if t["status"] == "awaitingAction")
    config: RequestConfiguration[Any] = RequestConfiguration(
        query_parameters=IncidentsRequestBuilder.IncidentsRequestBuilderGetQueryParameters(
            expand=["alerts"]
        )
    )
    config.headers.add("Prefer", PREFER)

    async def work(graph: GraphServiceClient) -> Incident | None:
        return await graph.security.incidents.by_incident_id(wanted["id"]).get(config)

    incident = sdk.run(work)
    assert incident is not None
    raw = sdk.wire.last("GET", f"/security/incidents/{wanted['id']}")
    assert_mapped(incident, raw)
    assert incident.status is IncidentStatus.AwaitingAction
    assert {k: v for k, v in raw.items() if k != "@odata.context"} == wanted


def test_list_alerts_v2_across_pages(sdk: Sdk, http: requests.Session) -> None:
    """alerts_v2: every alert of the tenant once, every value mapped."""

    async def work(graph: GraphServiceClient) -> list[Any]:
        params = Alerts_v2RequestBuilder.Alerts_v2RequestBuilderGetQueryParameters(top=100)
        page = await graph.security.alerts_v2.get(RequestConfiguration(query_parameters=params))
        pages = []
        while page is not None:
            pages.append(page)
            if not page.odata_next_link:
                break
            page = await graph.security.alerts_v2.with_url(page.odata_next_link).get()
        return pages

    pages = sdk.run(work)
    raw_pages = [body for _, url, _, body in sdk.wire.responses if "/alerts_v2" in url]
    assert len(pages) == len(raw_pages) >= 2
    for page, raw in zip(pages, raw_pages, strict=True):
        assert_mapped(page, raw)
    expected = {a["id"] for t in _truth(http, sdk.emu) for a in t["alerts"]}
    assert sorted(a.id for p in pages for a in p.value) == sorted(expected)


def test_hunting_query_on_both_action_paths(sdk: Sdk) -> None:
    """The SDK posts to the namespace-qualified action; the short form answers the same rows."""
    query = (
        "AlertInfo | order by Timestamp asc, AlertId asc | take 5"
        " | project Timestamp, AlertId, Severity, ServiceSource"
    )

    async def work(graph: GraphServiceClient) -> tuple[Any, Any]:
        body = RunHuntingQueryPostRequestBody(query=query, timespan="P30D")
        action = graph.security.microsoft_graph_security_run_hunting_query
        qualified = await action.post(body)
        short = await action.with_url(f"{sdk.base}/security/runHuntingQuery").post(body)
        return qualified, short

    qualified, short = sdk.run(work)
    posts = [(url, body) for m, url, _, body in sdk.wire.responses if m == "POST"]
    assert [url.rsplit("/", 1)[-1] for url, _ in posts] == [
        "microsoft.graph.security.runHuntingQuery",
        "runHuntingQuery",
    ]
    assert_mapped(qualified, posts[0][1])
    assert_mapped(short, posts[1][1])
    assert posts[0][1]["results"] == posts[1][1]["results"] != []
    assert [c.name for c in qualified.schema] == [
        "Timestamp",
        "AlertId",
        "Severity",
        "ServiceSource",
    ]
    assert [r.additional_data["AlertId"] for r in qualified.results] == [
        r["AlertId"] for r in posts[0][1]["results"]
    ]


_SETTABLE = (
    [
        (AlertClassification.TruePositive, d)
        for d in (
            AlertDetermination.Apt,
            AlertDetermination.Malware,
            AlertDetermination.SecurityPersonnel,
            AlertDetermination.UnwantedSoftware,
            AlertDetermination.MultiStagedAttack,
            AlertDetermination.CompromisedAccount,
            AlertDetermination.Phishing,
            AlertDetermination.MaliciousUserActivity,
            AlertDetermination.Other,
        )
    ]
    + [
        (AlertClassification.InformationalExpectedActivity, d)
        for d in (
            AlertDetermination.SecurityTesting,
            AlertDetermination.ConfirmedActivity,
            AlertDetermination.LineOfBusinessApplication,
        )
    ]
    + [
        (AlertClassification.FalsePositive, d)
        for d in (AlertDetermination.NotMalicious, AlertDetermination.NotEnoughDataToValidate)
    ]
)


@pytest.mark.parametrize(("classification", "determination"), _SETTABLE)
def test_update_incident_stores_and_returns_what_was_sent(
    sdk: Sdk,
    http: requests.Session,
    classification: AlertClassification,
    determination: AlertDetermination,
) -> None:
    """Every settable determination of today's schema round-trips through PATCH and GET."""
    target = next(t for t in _truth(http, sdk.emu) if t["status"] == "active")
    change = Incident(
        classification=classification,
        determination=determination,
        custom_tags=["sdk"],
        resolving_comment="Closed from the SDK test.",
    )

    async def work(graph: GraphServiceClient) -> tuple[Incident | None, Incident | None]:
        item = graph.security.incidents.by_incident_id(target["id"])
        return await item.patch(change), await item.get()

    patched, again = sdk.run(work)
    assert patched is not None and again is not None
    assert_mapped(patched, sdk.wire.last("PATCH", target["id"]))
    assert_mapped(again, sdk.wire.last("GET", target["id"]))
    for parsed in (patched, again):
        assert (parsed.classification, parsed.determination) == (classification, determination)
        assert parsed.custom_tags == ["sdk"]
        assert parsed.resolving_comment == "Closed from the SDK test."
        assert parsed.last_modified_by == f"API-App:{sdk.emu.client_id}"


@pytest.mark.parametrize(
    "old", ["compromisedUser", "clean", "insufficientData", "confirmedUserActivity"]
)
def test_update_with_an_old_determination_name_is_refused(
    sdk: Sdk, http: requests.Session, old: str
) -> None:
    """The older names are no members of today's enum: 400, nothing stored."""
    target = next(t for t in _truth(http, sdk.emu) if t["status"] == "active")

    async def work(graph: GraphServiceClient) -> ODataError:
        info = RequestInformation(Method.PATCH, f"{sdk.base}/security/incidents/{target['id']}")
        info.headers.try_add("Content-Type", "application/json")
        info.content = f'{{"determination": "{old}"}}'.encode()
        try:
            await graph.request_adapter.send_no_response_content_async(info, {"XXX": ODataError})
        except ODataError as exc:
            return exc
        raise AssertionError("the PATCH was accepted")

    error = sdk.run(work)
    assert error.response_status_code == 400
    assert error.error is not None and error.error.code == "BadRequest"
    assert error.error.message == f"Requested value '{old}' was not found."
    current = next(t for t in _truth(http, sdk.emu) if t["id"] == target["id"])
    assert current == target


def test_add_a_comment(sdk: Sdk, http: requests.Session) -> None:
    """POST .../comments with an alertComment: every comment comes back, SDK-parseable.

    msgraph-sdk 1.65 has no request builder for incident comments, so the request goes
    through the SDK's request adapter and its JSON parse node."""
    target = next(t for t in _truth(http, sdk.emu) if t["status"] == "active")

    async def work(graph: GraphServiceClient) -> bytes | None:
        info = RequestInformation(
            Method.POST, f"{sdk.base}/security/incidents/{target['id']}/comments"
        )
        info.set_content_from_parsable(
            graph.request_adapter, "application/json", AlertComment(comment="From the SDK")
        )
        result: bytes | None = await graph.request_adapter.send_primitive_async(
            info, "bytes", {"XXX": ODataError}
        )
        return result

    content = sdk.run(work)
    assert content is not None
    root = JsonParseNodeFactory().get_root_parse_node("application/json", content)
    comments = root.get_child_node("value").get_collection_of_object_values(AlertComment)
    raw = sdk.wire.last("POST", "/comments")
    assert_mapped(comments, raw["value"])
    assert len(comments) == len(target["comments"]) + 1
    assert comments[-1].comment == "From the SDK"
    assert comments[-1].created_by_display_name == f"API-App:{sdk.emu.client_id}"
    assert comments[-1].created_date_time is not None
