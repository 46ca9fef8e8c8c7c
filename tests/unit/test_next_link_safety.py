"""The bearer token only goes to the configured API origin, whatever a nextLink says.

``urllib.parse`` and urllib3 (what requests connects with) read some authorities differently:
``https://evil.example\\@api.host/`` is host ``api.host`` to the first and ``evil.example`` to the
second. ``follow_link`` refuses every such form and builds the next request from the configured
origin plus the link's path and query.
"""

from __future__ import annotations

import pytest
from urllib3.util import parse_url

from shared.core.errors import UnexpectedResponseError
from shared.defender.paging import Page, follow_link, list_incidents_request, next_request

BASE = "https://api.host"
PATH = "/v1.0/security/incidents?$top=50&$skip=50"


@pytest.mark.parametrize(
    "link",
    [
        f"https://evil.example\\@api.host{PATH}",  # urllib3: host evil.example
        f"https://evil.example%5C@api.host{PATH}",
        f"https://user@api.host{PATH}",  # userinfo of any kind
        f"https://user:pass@api.host{PATH}",
        f"https://api.host\\{PATH}",
        f"https://api.host/v1.0\\..\\x{PATH}",  # backslash anywhere
        f"https://evil.example\t@api.host{PATH}",  # urllib.parse drops the tab
        f"https://evil.example\n.api.host{PATH}",
        f"https://api.host {PATH}",
        f"https://api.hos\u0442{PATH}",  # a Cyrillic letter: IDNA tricks
        f"https://api%2Ehost{PATH}",
        f"https://evil.example{PATH}",
        f"https://api.host.evil.example{PATH}",
        f"http://api.host{PATH}",  # scheme downgrade
        f"https://api.host:8443{PATH}",  # another port
        f"https://api.host:443x{PATH}",  # a malformed port
        f"https://api.host{PATH}#frag",
        f"//api.host{PATH}",  # not absolute
        PATH,
    ],
)
def test_confusing_or_foreign_links_are_refused(link: str) -> None:
    with pytest.raises(UnexpectedResponseError, match="refused"):
        follow_link(link, BASE)


def test_the_attack_link_is_what_urllib3_would_send_to_evil() -> None:
    """The reason for the rule: requests/urllib3 would connect to evil.example."""
    assert parse_url(f"https://evil.example\\@api.host{PATH}").host == "evil.example"


def test_next_request_uses_the_configured_origin_with_the_links_path_and_query() -> None:
    """An equivalent spelling of the origin (case, explicit default port) is rebuilt on the
    configured one; path and query are kept byte for byte."""
    first = list_incidents_request("graph", BASE, page_size=50)
    link = "HTTPS://API.HOST:443/v1.0/security/incidents?%24top=50&%24skip=50&%24filter=a%20b"
    nxt = next_request(first, Page([{"id": "1"}], link), base_url=BASE)
    assert nxt is not None
    assert (
        nxt.url == "https://api.host/v1.0/security/incidents?%24top=50&%24skip=50&%24filter=a%20b"
    )
    assert parse_url(nxt.url).host == "api.host"
    assert follow_link(f"{BASE}{PATH}", BASE) == f"{BASE}{PATH}"


def test_next_request_refuses_the_backslash_link() -> None:
    first = list_incidents_request("graph", BASE, page_size=50)
    page = Page([{"id": "1"}], f"https://evil.example\\@api.host{PATH}")
    with pytest.raises(UnexpectedResponseError, match="backslash"):
        next_request(first, page, base_url=BASE)
