"""Everything that differs between the two API surfaces the bridge speaks, written once.

The legacy API (``api.security.microsoft.com``, ``/api/incidents``) and Microsoft Graph security
(``/v1.0/security/incidents``) carry the same incidents under different spellings and limits.
Code that must know which surface it talks to asks ``surface(api)`` instead of spelling the
difference itself. Pure data; the ground floor.

Sources:
- legacy incidents (fields ``incidentId``, ``lastUpdateTime``; ``$top`` at most 100):
  https://learn.microsoft.com/defender-xdr/api-list-incidents
- Graph incidents (fields ``id``, ``lastUpdateDateTime``; ``$skip`` at most 500):
  https://learn.microsoft.com/graph/api/security-list-incidents
- Graph answers 400 "The limit of '50' for Top query has been exceeded" above ``$top`` = 50 on
  ``/security/incidents`` (not in the docs; observed and handled by wazuh/wazuh#28070 and
  demisto/content#45413).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ApiKind = Literal["graph", "legacy"]


@dataclass(frozen=True, slots=True)
class Surface:
    """How one API surface spells incidents and alerts, and the limits it sets on listings."""

    api: ApiKind
    #: the incident collection, below the surface's base URL
    incidents_path: str
    #: an incident's id and last-update properties
    id_field: str
    last_update_field: str
    created_field: str
    #: an alert's id, creation and last-update properties
    alert_id_field: str
    alert_created_field: str
    alert_last_update_field: str
    #: the largest ``$top`` an incident listing accepts (also the default page)
    max_page_size: int


LEGACY = Surface(
    api="legacy",
    incidents_path="/api/incidents",
    id_field="incidentId",
    last_update_field="lastUpdateTime",
    created_field="createdTime",
    alert_id_field="alertId",
    alert_created_field="creationTime",
    alert_last_update_field="lastUpdatedTime",
    max_page_size=100,
)
GRAPH = Surface(
    api="graph",
    incidents_path="/v1.0/security/incidents",
    id_field="id",
    last_update_field="lastUpdateDateTime",
    created_field="createdDateTime",
    alert_id_field="id",
    alert_created_field="createdDateTime",
    alert_last_update_field="lastUpdateDateTime",
    max_page_size=50,
)
SURFACES: dict[ApiKind, Surface] = {"legacy": LEGACY, "graph": GRAPH}

#: the deepest ``$skip`` any listing asks for: Graph's documented cap, applied to both surfaces
SKIP_LIMIT = 500

#: the largest ``$top`` per surface; the default page is the largest each surface accepts
MAX_PAGE_SIZE: dict[ApiKind, int] = {api: s.max_page_size for api, s in SURFACES.items()}
DEFAULT_PAGE_SIZE: dict[ApiKind, int] = dict(MAX_PAGE_SIZE)


def surface(api: ApiKind) -> Surface:
    """The spellings and limits of ``api``."""
    return SURFACES[api]
