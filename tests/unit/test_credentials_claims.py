"""Unverified claim decoding and the feature-to-role table."""

from __future__ import annotations

import base64
import json

import pytest

from shared.credentials.claims import ClaimsError, check_roles, decode_claims


def _jwt(payload: object) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(payload)}.sig"


def test_decodes_claims_without_padding() -> None:
    """aud, tid, oid, exp and roles are read from a compact JWT."""
    claims = decode_claims(
        _jwt({"aud": "api://x", "tid": "t", "oid": "o", "exp": 5, "roles": ["A", "B"]})
    )
    assert (claims.audience, claims.tenant, claims.object_id, claims.expires) == (
        "api://x",
        "t",
        "o",
        5,
    )
    assert claims.roles == ("A", "B")
    assert claims.scopes == ()


@pytest.mark.parametrize("text", ["", "a.b", "a..c", "a.!!!.c", _jwt([1, 2])])
def test_rejects_non_jwts_without_echoing_them(text: str) -> None:
    """Malformed tokens give a ClaimsError whose message does not contain the input."""
    with pytest.raises(ClaimsError) as info:
        decode_claims(text)
    assert not text or text not in str(info.value)


def test_roles_check_accepts_readwrite_for_read() -> None:
    """ReadWrite satisfies ingest; update needs ReadWrite; hunting its own role."""
    graph = check_roles(
        "graph", ["ingest", "update", "hunting"], ["SecurityIncident.ReadWrite.All"]
    )
    assert [(c.feature, c.ok) for c in graph] == [
        ("ingest", True),
        ("update", True),
        ("hunting", False),
    ]
    legacy = check_roles("legacy", ["ingest", "update"], ["Incident.Read.All"])
    assert [c.ok for c in legacy] == [True, False]
    assert legacy[1].needs == ("Incident.ReadWrite.All",)
