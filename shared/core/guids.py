"""The one reading of a GUID (tenant, object and client ids) used everywhere an id is checked."""

from __future__ import annotations

import uuid

#: longer than any spelling ``uuid.UUID`` reads (``urn:uuid:`` + 36, braces): refused unread
_LONGEST = 64


def guid(value: object) -> str | None:
    """``value`` as a canonical lower-case GUID (``8-4-4-4-12``), or None when it is not a
    string holding one. Surrounding blanks are ignored; the spellings ``uuid.UUID`` reads
    (braces, ``urn:uuid:``, no hyphens) are normalized."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > _LONGEST:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None
