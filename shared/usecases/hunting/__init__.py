"""Hunting templates: allow-listed KQL with typed parameters encoded as KQL literals. Pure.

A template is a ``.kql`` file in ``shared/hunting/templates/``; its leading comment lines
declare it::

    // summary: Processes started on one device
    // param device string -- the device name
    // param lookback duration default=7d -- how far back to look
    // param limit int default=100 min=1 max=10000 -- at most this many rows
    // param direction enum values=Inbound,Outbound default=Inbound -- mail direction
    DeviceProcessEvents | where DeviceName =~ {{device}} | take {{limit}}

Types: ``string``, ``int``, ``datetime``, ``duration``, ``enum`` and ``list`` (of strings). A
parameter without ``default=`` is required. ``{{name}}`` is replaced by the value *as a KQL
literal*: strings are double-quoted with ``\\``, ``"``, tab and newline escaped (the escapes the
KQL string docs define: https://learn.microsoft.com/kusto/query/scalar-data-types/string) and
other control characters refused; numbers are digits; times are ``datetime(...)`` of a parsed
instant; durations are ``<n>d|h|m|s`` of a parsed span; lists are ``("a", "b")``. So no value can
end a literal, start a new operator or comment out the rest: the query's structure is the
template's. A template that uses an undeclared placeholder, or declares one it never uses, does
not load.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import Any, Literal

from shared.core.clock import RANGE_TEXT, format_utc, parse_input_time

ParamKind = Literal["string", "int", "datetime", "duration", "enum", "list"]
KINDS: tuple[ParamKind, ...] = ("string", "int", "datetime", "duration", "enum", "list")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029]")
_KQL_SPAN = re.compile(r"(\d{1,6})(d|h|m|s)")
_ISO_SPAN = re.compile(r"P(?:(\d{1,5})D)?(?:T(?:(\d{1,6})H)?(?:(\d{1,7})M)?(?:(\d{1,9})S)?)?")
MAX_STRING = 1000
MAX_ITEMS = 100
MAX_DURATION = timedelta(days=3650)


class TemplateError(ValueError):
    """A template file is malformed (a bug in the shipped templates, caught by tests)."""


class ParameterError(ValueError):
    """Caller-supplied parameters are unknown, missing or invalid; ``problems`` names each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Parameter:
    """A declared template parameter."""

    name: str
    kind: ParamKind
    description: str
    default: Any = None
    required: bool = True
    minimum: int | None = None
    maximum: int | None = None
    values: tuple[str, ...] = ()

    def literal(self, value: Any) -> str:
        """``value`` checked and encoded as a KQL literal (ValueError saying why not)."""
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("must be a whole number")
            if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum
            ):
                raise ValueError(f"must be from {self.minimum} to {self.maximum}")
            return str(int(value))
        if self.kind == "string":
            return string_literal(_text(value))
        if self.kind == "enum":
            text = _text(value)
            match = next((v for v in self.values if v.lower() == text.lower()), None)
            if match is None:
                raise ValueError(f"must be one of {', '.join(self.values)}")
            return string_literal(match)
        if self.kind == "list":
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not value:
                raise ValueError("must be a non-empty list of strings")
            if len(value) > MAX_ITEMS:
                raise ValueError(f"must have at most {MAX_ITEMS} items")
            return "(" + ", ".join(string_literal(_text(v)) for v in value) + ")"
        if self.kind == "datetime":
            text = _text(value)
            try:
                instant = parse_input_time(text)
            except ValueError:
                raise ValueError(f"must be an ISO-8601 time with a zone, {RANGE_TEXT}") from None
            return f"datetime({format_utc(instant)})"
        return duration_literal(parse_duration(_text(value)))

    def schema(self) -> dict[str, Any]:
        """The parameter as a JSON-schema-like description (listed by ``GET /hunting``)."""
        kind = {"int": "integer", "list": "array"}.get(self.kind, "string")
        out: dict[str, Any] = {"type": kind, "description": self.description}
        if self.kind in ("datetime", "duration"):
            out["format"] = "date-time" if self.kind == "datetime" else "duration"
        if self.values:
            out["enum"] = list(self.values)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if not self.required:
            out["default"] = self.default
        return out


@dataclass(frozen=True)
class Template:
    """A parsed template."""

    name: str
    summary: str
    parameters: tuple[Parameter, ...]
    body: str

    def render(self, given: Mapping[str, Any]) -> str:
        """The query with every placeholder replaced by its literal.

        Raises:
            ParameterError: unknown, missing or invalid parameters, each named.
        """
        declared = {p.name: p for p in self.parameters}
        problems = [
            f"unknown parameter '{name[:64]}' (this template takes: "
            f"{', '.join(declared) or 'none'})"
            for name in given
            if name not in declared
        ]
        literals: dict[str, str] = {}
        for param in self.parameters:
            if param.name in given and given[param.name] is not None:
                value = given[param.name]
            elif param.required:
                problems.append(f"missing parameter '{param.name}' ({param.kind})")
                continue
            else:
                value = param.default
            try:
                literals[param.name] = param.literal(value)
            except ValueError as exc:
                problems.append(f"parameter '{param.name}' ({param.kind}): {exc}")
        if problems:
            raise ParameterError(problems)
        return _PLACEHOLDER.sub(lambda m: literals[m.group(1)], self.body)


def string_literal(text: str) -> str:
    """A double-quoted KQL string literal of ``text``."""
    if _CONTROL.search(text):
        raise ValueError("must not contain control characters")
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\t", "\\t")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )
    return f'"{escaped}"'


def parse_duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``45s`` or ISO-8601 ``P7D``/``PT6H30M`` (ValueError if not)."""
    try:
        span = _duration(text.strip())
    except OverflowError:  # more days than a timedelta holds
        span = timedelta.max
    except ValueError:  # more digits than int() reads
        span = None
    if span is None:
        raise ValueError("must be a duration such as 7d, 12h, 30m, 45s or P7D")
    if span <= timedelta(0) or span > MAX_DURATION:
        raise ValueError("must be more than 0 and at most 3650 days")
    return span


def _duration(raw: str) -> timedelta | None:
    span: timedelta | None = None
    kql = _KQL_SPAN.fullmatch(raw)
    if kql:
        n, unit = int(kql.group(1)), kql.group(2)
        span = timedelta(**{{"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}[unit]: n})
    else:
        iso = _ISO_SPAN.fullmatch(raw.upper())
        if iso and any(iso.groups()) and not raw.upper().endswith("T"):
            d, h, m, s = (int(g or 0) for g in iso.groups())
            span = timedelta(days=d, hours=h, minutes=m, seconds=s)
    return span


def duration_literal(span: timedelta) -> str:
    """A KQL timespan literal in the largest whole unit (``7d``, ``90m``...)."""
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if len(value) > MAX_STRING:
        raise ValueError(f"must be at most {MAX_STRING} characters")
    return value


def parse_template(name: str, text: str) -> Template:
    """Parse a template file.

    Raises:
        TemplateError: a header line is malformed, or placeholders and declarations disagree.
    """
    if not _NAME.fullmatch(name):
        raise TemplateError(f"template name '{name}' must be lowercase letters, digits, dashes")
    summary = ""
    params: list[Parameter] = []
    body_lines: list[str] = []
    in_header = True
    for line in text.splitlines():
        stripped = line.strip()
        if in_header and stripped.startswith("//"):
            directive = stripped[2:].strip()
            if directive.startswith("summary:"):
                summary = directive.partition(":")[2].strip()
            elif directive.startswith("param "):
                params.append(_parse_param(name, directive[len("param ") :]))
            continue
        in_header = False
        body_lines.append(line)
    body = "\n".join(body_lines).strip()
    used = set(_PLACEHOLDER.findall(body))
    declared = {p.name for p in params}
    if not summary or not body:
        raise TemplateError(f"template {name}: needs a '// summary:' line and a query")
    if used != declared or len(declared) != len(params):
        raise TemplateError(
            f"template {name}: placeholders {sorted(used)} do not match declared {sorted(declared)}"
        )
    for param in params:  # the defaults must themselves be valid values
        if not param.required:
            try:
                param.literal(param.default)
            except ValueError as exc:
                raise TemplateError(f"template {name}: default of {param.name}: {exc}") from None
    return Template(name, summary, tuple(params), body)


def _parse_param(template: str, spec: str) -> Parameter:
    head, _, description = spec.partition("--")
    words = head.split()
    if len(words) < 2 or words[1] not in KINDS or not re.fullmatch(r"[A-Za-z_]\w*", words[0]):
        raise TemplateError(f"template {template}: bad param line '{spec}'")
    options: dict[str, str] = {}
    for word in words[2:]:
        key, sep, value = word.partition("=")
        if not sep or key not in ("default", "min", "max", "values"):
            raise TemplateError(f"template {template}: bad option '{word}'")
        options[key] = value
    kind: ParamKind = words[1]
    default: Any = options.get("default")
    if default is not None and kind == "int":
        default = int(default)
    if default is not None and kind == "list":
        default = [v for v in default.split(",") if v]
    values = tuple(v for v in options.get("values", "").split(",") if v)
    if kind == "enum" and not values:
        raise TemplateError(f"template {template}: enum {words[0]} needs values=")
    return Parameter(
        name=words[0],
        kind=kind,
        description=description.strip(),
        default=default,
        required="default" not in options,
        minimum=int(options["min"]) if "min" in options else None,
        maximum=int(options["max"]) if "max" in options else None,
        values=values,
    )


@functools.cache
def templates() -> dict[str, Template]:
    """The shipped templates by name (read once)."""
    folder = resources.files(__package__).joinpath("templates")
    out: dict[str, Template] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".kql"):
            name = entry.name[: -len(".kql")]
            out[name] = parse_template(name, entry.read_text(encoding="utf-8"))
    return out
