"""Input at the edges, through both faces: every out-of-range time or cursor is a 400 (never a
500), and overlong ids are refused without being echoed back."""

from __future__ import annotations

import base64
import contextlib
import io
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api.conftest import Answer, Face, tenants
from tests.conftest import LocalCloud

pytestmark = pytest.mark.e2e

#: times a naive implementation overflows on (adding an offset, converting a zone)
EDGE_TIMES = (
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00.0000001Z",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59.9999999Z",
    "9999-12-31T23:59:59-01:00",
    "1969-12-31T23:59:59Z",
)


def _error(answer: Answer, status: int = 400) -> dict[str, str]:
    assert answer.status == status, (answer.status, answer.body[:300])
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return dict(body["error"])


def _cursor_from(face: Face, tenant: str) -> tuple[list[Any], dict[str, str]]:
    """A real cursor of a listing (decoded) and the nextLink's other parameters."""
    page = face.get("/incidents", params={"top": "2", "tenant": tenant})
    assert page.status == 200, page.body
    link = page.json()["nextLink"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    raw = query.pop("cursor")
    data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    return data, query


def _encode(data: list[Any]) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("when", EDGE_TIMES)
def test_a_cursor_dated_at_the_edges_is_a_400(face: Face, cloud: LocalCloud, when: str) -> None:
    _, customer = tenants(cloud)
    data, query = _cursor_from(face, customer)
    data[0] = when
    answer = face.get("/incidents", params={**query, "cursor": _encode(data)})
    assert _error(answer)["code"] == "invalid_cursor"


def test_malformed_cursors_are_400(face: Face, cloud: LocalCloud) -> None:
    """Each field of a real cursor made wrong in turn (so every check is reached, not only the
    length check), and texts that are no cursor at all."""
    _, customer = tenants(cloud)
    data, query = _cursor_from(face, customer)
    assert len(data) == 4  # when, id, filters' fingerprint, rate

    def but(index: int, value: Any) -> list[Any]:
        return [*data[:index], value, *data[index + 1 :]]

    for bad in (
        data[:3],
        [*data, "extra"],
        but(0, 12345),
        but(1, None),
        but(1, "x" * 5000),
        but(1, "spaces are no id"),
        but(2, "0123"),
        but(2, 42),
        but(3, 0),
        but(3, -1),
        but(3, 1e10),
        but(3, True),
        but(3, "1"),
        {"a": 1},
        "[" * 5000,
    ):
        text = _encode(bad) if not isinstance(bad, str) else _encode_raw(bad)
        answer = face.get("/incidents", params={**query, "cursor": text})
        assert _error(answer)["code"] == "invalid_cursor", bad
    # JSON as Python reads it also allows NaN and Infinity, which no cursor this API wrote has
    for rate in ("NaN", "Infinity"):
        text = _encode_raw(json.dumps(data[:3])[:-1] + f", {rate}]")
        answer = face.get("/incidents", params={**query, "cursor": text})
        assert _error(answer)["code"] == "invalid_cursor", rate
    # the control: the cursor as it was issued is accepted
    assert face.get("/incidents", params={**query, "cursor": _encode(data)}).status == 200
    huge = face.get("/incidents", params={**query, "cursor": "A" * 20_000})
    assert _error(huge)["code"] == "invalid_cursor"
    assert "AAAAAAAA" not in huge.body.decode()


def _encode_raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("name", ["updatedFrom", "updatedBefore", "createdFrom", "createdBefore"])
@pytest.mark.parametrize("when", EDGE_TIMES)
def test_time_parameters_at_the_edges_are_400(
    face: Face, cloud: LocalCloud, name: str, when: str
) -> None:
    _, customer = tenants(cloud)
    answer = face.get("/incidents", params={name: when, "tenant": customer})
    error = _error(answer)
    assert error["code"] == "invalid_parameter" and name in error["message"]


def test_times_inside_the_range_still_work(face: Face, cloud: LocalCloud) -> None:
    _, customer = tenants(cloud)
    answer = face.get(
        "/incidents",
        params={
            "updatedFrom": "1970-01-01T00:00:00Z",
            "updatedBefore": "2199-12-31T23:59:59Z",
            "tenant": customer,
            "top": "5",
        },
    )
    assert answer.status == 200 and len(answer.json()["value"]) == 5


@pytest.mark.parametrize("when", [*EDGE_TIMES, "1970-01-01T00:00:00+00:01"])
def test_ingest_since_at_the_edges_is_400(face: Face, when: str) -> None:
    answer = face.request("POST", "/ingest", json_body={"since": when})
    error = _error(answer)
    assert error["code"] == "invalid_body" and "since" in error["message"]


@pytest.mark.parametrize(
    "lookback", ["P9999999999D", "9999999999d", "P999999999D", "99999999999999999999h"]
)
def test_hunting_durations_that_overflow_are_400(face: Face, lookback: str) -> None:
    body = {"template": "device-processes", "parameters": {"device": "a", "lookback": lookback}}
    answer = face.request("POST", "/hunting", json_body=body)
    assert _error(answer)["code"] == "invalid_parameters"


@pytest.mark.parametrize("when", EDGE_TIMES[:2])
def test_hunting_datetimes_at_the_edges_are_400(face: Face, when: str) -> None:
    from shared.usecases.hunting import templates

    with_time = [t for t in templates().values() if any(p.kind == "datetime" for p in t.parameters)]
    if not with_time:
        pytest.skip("no shipped template takes a datetime parameter")
    template = with_time[0]
    params: dict[str, Any] = {}
    for p in template.parameters:
        if p.kind == "datetime":
            params[p.name] = when
        elif p.required:
            params[p.name] = "x"
    answer = face.request(
        "POST", "/hunting", json_body={"template": template.name, "parameters": params}
    )
    assert _error(answer)["code"] == "invalid_parameters"


LONG_ID = "9" * 5000
LONG_HEX = "a" * 5000


def test_overlong_ids_are_refused_without_echo(face: Face) -> None:
    for method, path, body in (
        ("GET", f"/incidents/{LONG_ID}", None),
        ("PATCH", f"/incidents/{LONG_ID}", {"status": "active"}),
        ("GET", f"/hunting/jobs/{LONG_HEX}", None),
        ("DELETE", f"/subscriptions/{LONG_HEX}", None),
        ("GET", f"/incidents/{'x' * 65}", None),
    ):
        answer = face.request(method, path, json_body=body)
        error = _error(answer)
        assert error["code"] == "invalid_id", (path[:40], error)
        text = answer.body.decode()
        assert "9" * 65 not in text and "a" * 65 not in text and "x" * 65 not in text


def test_cli_times_at_the_edges_are_one_line_errors(app_env: dict[str, str]) -> None:
    from shared.cli import main

    for when in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999999Z"):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
            main(["incidents", "list", "--updated-from", when], out=out)
        assert exited.value.code == 2
        assert "Traceback" not in err.getvalue() and "ISO-8601" in err.getvalue()
