"""Request body schemas: validation naming every bad or unknown field, and their OpenAPI form.

A ``Body`` is a JSON object of declared ``Field``s; anything else in the body is refused with the
unknown names listed, so a typo (``assignedto``) is a 400 rather than silently ignored. The same
declaration renders the OpenAPI 2.0 schema of the route, so the document never drifts from what
the code accepts. Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.api.http import ApiError

Kind = Literal["string", "integer", "boolean", "array", "object"]
#: words a title spells in capitals
_ACRONYMS = {"id": "ID", "ids": "IDs", "url": "URL", "uri": "URI", "kql": "KQL", "api": "API"}
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def title_of(name: str) -> str:
    """A human title for a field's name, as a connector shows it (``x-ms-summary``):
    ``assignedTo`` -> ``Assigned To``, ``callbackUrl`` -> ``Callback URL``. Pure."""
    words = _WORD.findall(name) or [name]
    return " ".join(_ACRONYMS.get(w.lower(), w[:1].upper() + w[1:]) for w in words)


@dataclass(frozen=True)
class Field:
    """One property of a body.

    ``kind`` ``array`` holds strings; ``object`` holds any JSON values (e.g. template
    parameters), checked by the handler. ``nullable`` allows JSON null (e.g. unassign).
    ``title``: the name a connector shows (default: ``title_of(name)``).
    """

    name: str
    kind: Kind
    description: str
    required: bool = False
    enum: tuple[str, ...] = ()
    max_length: int = 4000
    minimum: int | None = None
    maximum: int | None = None
    max_items: int = 100
    nullable: bool = False
    fmt: str | None = None
    visibility: str | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)
    title: str | None = None

    def check(self, value: Any) -> str | None:
        """A problem with ``value``, or None."""
        if value is None:
            return None if self.nullable else f"'{self.name}' must not be null"
        if self.kind == "string":
            if not isinstance(value, str):
                return f"'{self.name}' must be a string"
            if len(value) > self.max_length:
                return f"'{self.name}' is longer than {self.max_length} characters"
            if self.enum and value not in self.enum:
                return f"'{self.name}' must be one of {', '.join(self.enum)}"
        elif self.kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                return f"'{self.name}' must be a whole number"
            if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum
            ):
                return f"'{self.name}' must be from {self.minimum} to {self.maximum}"
        elif self.kind == "boolean":
            if not isinstance(value, bool):
                return f"'{self.name}' must be true or false"
        elif self.kind == "array":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return f"'{self.name}' must be a list of strings"
            if len(value) > self.max_items:
                return f"'{self.name}' has more than {self.max_items} items"
            if any(len(v) > self.max_length for v in value):
                return f"an item of '{self.name}' is longer than {self.max_length} characters"
            if self.enum and any(v not in self.enum for v in value):
                return f"items of '{self.name}' must be among {', '.join(self.enum)}"
        elif self.kind == "object" and not isinstance(value, dict):
            return f"'{self.name}' must be a JSON object"
        return None

    def openapi(self) -> dict[str, Any]:
        """The property's OpenAPI 2.0 schema (with the connector's title)."""
        out: dict[str, Any] = {
            "type": self.kind,
            "x-ms-summary": self.title or title_of(self.name),
            "description": self.description,
        }
        if self.kind == "string":
            out["maxLength"] = self.max_length
            if self.fmt:
                out["format"] = self.fmt
        if self.enum and self.kind == "string":
            out["enum"] = list(self.enum)
        if self.kind == "integer":
            out["format"] = "int32"
            if self.minimum is not None:
                out["minimum"] = self.minimum
            if self.maximum is not None:
                out["maximum"] = self.maximum
        if self.kind == "array":
            items: dict[str, Any] = {"type": "string", "maxLength": self.max_length}
            if self.enum:
                items["enum"] = list(self.enum)
            out["items"] = items
            out["maxItems"] = self.max_items
        if self.kind == "object":
            out["additionalProperties"] = True
        if self.nullable:
            out["x-nullable"] = True
        if self.visibility:
            out["x-ms-visibility"] = self.visibility
        out.update(self.extensions)
        return out


@dataclass(frozen=True)
class Body:
    """A JSON object body of declared fields (``at_least_one``: an empty object is a 400);
    ``title`` and ``description`` describe the body parameter to a connector."""

    name: str
    fields: Sequence[Field]
    at_least_one: bool = False
    description: str = ""
    title: str | None = None

    def parse(self, raw: bytes) -> dict[str, Any]:
        """The validated body.

        Raises:
            ApiError: 400 not JSON, not an object, or fields unknown, missing or malformed
                (every problem named at once).
        """
        return self.check(parse_json(raw))

    def check(self, data: Any) -> dict[str, Any]:
        """Validate already-parsed JSON (see ``parse``)."""
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_body", "the body must be a JSON object")
        known = {f.name: f for f in self.fields}
        problems: list[str] = []
        unknown = sorted(k for k in data if k not in known)
        if unknown:
            problems.append(
                f"unknown field(s): {', '.join(repr(k[:64]) for k in unknown[:10])} "
                f"(allowed: {', '.join(known)})"
            )
        for spec in self.fields:
            if spec.name not in data:
                if spec.required:
                    problems.append(f"missing '{spec.name}'")
                continue
            problem = spec.check(data[spec.name])
            if problem:
                problems.append(problem)
        if self.at_least_one and not data and not problems:
            problems.append(f"give at least one of: {', '.join(known)}")
        if problems:
            raise ApiError(400, "invalid_body", "; ".join(problems))
        return {k: v for k, v in data.items() if k in known}

    def openapi(self) -> dict[str, Any]:
        """The body's OpenAPI 2.0 schema."""
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {f.name: f.openapi() for f in self.fields},
            "additionalProperties": False,
        }
        required = [f.name for f in self.fields if f.required]
        if required:
            schema["required"] = required
        if self.at_least_one:
            schema["minProperties"] = 1
        if self.description:
            schema["description"] = self.description
        return schema


def parse_json(raw: bytes) -> Any:
    """Parse a UTF-8 JSON body.

    Raises:
        ApiError: 400 empty, not UTF-8 or not JSON (the position, never the text, is named).
    """
    if not raw.strip():
        raise ApiError(400, "invalid_body", "the body is empty; send a JSON object")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_body", "the body is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        where = (
            f" at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise ApiError(400, "invalid_body", f"the body is not valid JSON{where}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
