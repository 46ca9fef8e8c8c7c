"""``shared.core.guids.guid``, the one reading of a tenant/object/client GUID, and
``shared.api.access.challenge``, the one ``WWW-Authenticate`` of every 401."""

from __future__ import annotations

import pytest

from shared.api.access import challenge, unauthenticated
from shared.core.guids import guid

TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@pytest.mark.parametrize(
    "spelling",
    [TID, TID.upper(), f" {TID}\n", "{" + TID + "}", TID.replace("-", ""), f"urn:uuid:{TID}"],
)
def test_every_spelling_of_one_guid_reads_the_same(spelling: str) -> None:
    assert guid(spelling) == TID


@pytest.mark.parametrize(
    "bad",
    [
        None,
        42,
        b"72f988bf-86f1-41af-91ab-2d7cd011db47",
        "",
        "common",
        "organizations",
        "contoso.onmicrosoft.com",
        TID + "0",
        TID[:-1],
        " " * 10 + "x" * 5000,
        ["a"],
    ],
)
def test_anything_else_is_not_a_guid(bad: object) -> None:
    assert guid(bad) is None


def test_a_request_without_a_token_gets_a_bare_challenge() -> None:
    assert challenge() == "Bearer"
    assert challenge(realm="api://x") == 'Bearer realm="api://x"'
    answer = unauthenticated("send a token", code="caller_token_required")
    assert answer.status == 401 and answer.code == "caller_token_required"
    assert answer.headers == {"WWW-Authenticate": "Bearer"}


def test_a_refused_token_gets_invalid_token_with_a_header_safe_description() -> None:
    value = challenge(realm="r", invalid='bad "token"\r\nX-Injected: 1\u00e9')
    assert value.startswith('Bearer realm="r", error="invalid_token", error_description="')
    description = value.split('error_description="', 1)[1][:-1]
    assert '"' not in description and "\r" not in description and "\n" not in description
    assert all(0x20 <= ord(c) <= 0x7E and c != "\\" for c in description)
