"""Compare an object the Graph SDK parsed with the raw JSON it was parsed from.

Any value the SDK could not map fails: a key its model does not know (it would only land in
`additional_data`), an enum string that is no member (the SDK quietly turns it into None), a
value whose parsed form differs from the JSON (a date, a number, a string), an evidence item
parsed as another type than its `@odata.type`.
"""

from __future__ import annotations

import enum
import re
import uuid
from datetime import datetime
from typing import Any

from kiota_abstractions.serialization import Parsable

# Keys of a response that belong to the envelope, not to the model (OData control information
# the SDK leaves in additional_data).
ENVELOPE_KEYS = frozenset({"@odata.context"})
_SPECIAL = {
    "@odata.type": "odata_type",
    "@odata.nextLink": "odata_next_link",
    "@odata.count": "odata_count",
    "additionalData": "additional_data_property",
}


def attribute(key: str) -> str:
    """The SDK's attribute for a JSON key (kiota: camelCase -> snake_case)."""
    if key in _SPECIAL:
        return _SPECIAL[key]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _time(raw: str) -> datetime:
    # 7 fractional digits and a Z, as Graph sends them; Python keeps 6.
    text = raw.replace("Z", "+00:00")
    text = re.sub(r"\.(\d{6})\d+", r".\1", text)
    return datetime.fromisoformat(text)


def problems(parsed: Any, raw: Any, path: str = "$") -> list[str]:
    """Every difference between `parsed` (SDK object) and `raw` (JSON), as readable lines."""
    if raw is None:
        return [] if parsed is None else [f"{path}: JSON null parsed as {parsed!r}"]
    if isinstance(parsed, Parsable) and hasattr(parsed, "get_field_deserializers"):
        if not isinstance(raw, dict):
            return [f"{path}: object parsed from {type(raw).__name__}"]
        return _object(parsed, raw, path)
    if isinstance(raw, list):
        if not isinstance(parsed, list) or len(parsed) != len(raw):
            return [f"{path}: list of {len(raw)} parsed as {parsed!r}"]
        out: list[str] = []
        for index, (p, r) in enumerate(zip(parsed, raw, strict=True)):
            out += problems(p, r, f"{path}[{index}]")
        return out
    if isinstance(parsed, enum.Enum):
        return [] if parsed.value == raw else [f"{path}: {raw!r} parsed as {parsed}"]
    if parsed is None:
        return [f"{path}: {raw!r} could not be mapped (parsed as None)"]
    if isinstance(parsed, uuid.UUID):
        same = isinstance(raw, str) and raw.lower() == str(parsed)
        return [] if same else [f"{path}: {raw!r} parsed as {parsed}"]
    if isinstance(parsed, datetime):
        same = isinstance(raw, str) and _time(raw) == parsed
        return [] if same else [f"{path}: {raw!r} parsed as {parsed}"]
    if parsed != raw or type(parsed) is not type(raw):
        return [f"{path}: {raw!r} parsed as {parsed!r}"]
    return []


# Open types: every property is dynamic and lives in additional_data (a hunting row's columns
# are the query's; msgraph-sdk-python hunting_row_result.py, dictionary.py).
OPEN_TYPES = frozenset({"HuntingRowResult", "Dictionary"})


def _object(parsed: Any, raw: dict[str, Any], path: str) -> list[str]:
    if type(parsed).__name__ in OPEN_TYPES:
        data = dict(parsed.additional_data or {})
        if set(data) != set(raw):
            return [f"{path}: keys {sorted(raw)} parsed as {sorted(data)}"]
        return [e for key in raw for e in problems(data[key], raw[key], f"{path}.{key}")]
    known = parsed.get_field_deserializers()
    out: list[str] = []
    kind = raw.get("@odata.type")
    if isinstance(kind, str):
        expected = kind.lstrip("#").rsplit(".", 1)[-1].lower()
        if type(parsed).__name__.lower() != expected:
            out.append(f"{path}: {kind} parsed as {type(parsed).__name__}")
    for key, value in raw.items():
        if key in ENVELOPE_KEYS:
            continue
        if key not in known:
            out.append(f"{path}.{key}: unknown to {type(parsed).__name__} (additional_data)")
            continue
        out += problems(getattr(parsed, attribute(key)), value, f"{path}.{key}")
    extra = set(getattr(parsed, "additional_data", None) or {}) - ENVELOPE_KEYS
    extra -= {k for k in raw if k not in known}  # already reported above
    if extra:
        out.append(f"{path}: additional_data holds {sorted(extra)}")
    return out


def assert_mapped(parsed: Any, raw: Any) -> None:
    """Fail with every difference the SDK's parse has from the JSON."""
    found = problems(parsed, raw)
    assert not found, "the SDK could not map:\n" + "\n".join(found[:40])


def unrendered(parsed: Any, raw: dict[str, Any]) -> set[str]:
    """The fields the SDK's model of `parsed` has that the JSON does not carry at all."""
    return set(parsed.get_field_deserializers()) - set(raw)
