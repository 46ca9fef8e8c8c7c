"""The OData `$filter` subset the Defender APIs document, parsed into a predicate. Pure.

Legacy `/api/incidents` documents `$filter` on `lastUpdateTime`, `createdTime`, `status` and
`assignedTo` only; Graph `/security/incidents` adds `severity`, `classification`, `determination`
(https://learn.microsoft.com/defender-xdr/api-list-incidents,
https://learn.microsoft.com/graph/api/security-list-incidents). Datetimes are unquoted ISO-8601
literals with an offset (`lastUpdateTime ge 2020-06-03T18:04:29.4633333Z`, from Microsoft's
Hello-World script), strings are single-quoted with `''` escaping (OData ABNF). Anything outside
the subset raises
`ODataError`, which the APIs answer with 400: a client that relies on an undocumented filter
finds out here, not in production.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Row = Mapping[str, Any]
Predicate = Callable[[Row], bool]
FieldKind = Literal["datetime", "string", "enum"]

DATETIME_OPS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
STRING_OPS = frozenset({"eq", "ne"})


class ODataError(ValueError):
    """A query option outside the supported subset; the message says what and why."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A filterable property: its type, allowed operators and (for enums) allowed values."""

    kind: FieldKind
    ops: frozenset[str]
    values: tuple[str, ...] = field(default=())


# OData v4 dateTimeOffsetValue: an offset (Z or +hh:mm) is required.
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})", re.IGNORECASE
)
_TOKEN = re.compile(r"\s*(?:(\()|(\))|('(?:[^']|'')*')|([^\s()']+))")


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ODataError(f"syntax error at position {pos} in '{text}'")
        tokens.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
    return tokens


@dataclass(frozen=True, slots=True)
class Comparison:
    """One `name op literal` term; `value` is a datetime, a string or None (`null`)."""

    name: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class Filter:
    """A parsed `$filter`: its predicate, plus its top-level `and` terms that are plain
    comparisons. `exact` is True when those terms are the whole filter (no `or`, no group),
    so a store may answer it from an index instead of testing every row."""

    predicate: Predicate
    terms: tuple[Comparison, ...] = ()
    exact: bool = True

    def only_on(self, names: frozenset[str]) -> bool:
        """True when the filter is exactly a conjunction of comparisons on `names`."""
        return self.exact and all(t.name in names for t in self.terms)


_Term = tuple[Predicate, Comparison | None]


@dataclass(slots=True)
class _Parser:
    tokens: list[str]
    fields: Mapping[str, FieldSpec]
    pos: int = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ODataError("unexpected end of $filter expression")
        self.pos += 1
        return token

    def parse(self) -> Filter:
        branches = self.parse_or()
        if self.peek() is not None:
            raise ODataError(f"unexpected token '{self.peek()}' in $filter")
        if len(branches) > 1:
            return Filter(_any([_all(b) for b in branches]), (), exact=False)
        terms = branches[0]
        comparisons = tuple(c for _, c in terms if c is not None)
        return Filter(_all(terms), comparisons, exact=len(comparisons) == len(terms))

    def parse_or(self) -> list[list[_Term]]:
        branches = [self.parse_and()]
        while (self.peek() or "").lower() == "or":
            self.take()
            branches.append(self.parse_and())
        return branches

    def parse_and(self) -> list[_Term]:
        parts = [self.parse_primary()]
        while (self.peek() or "").lower() == "and":
            self.take()
            parts.append(self.parse_primary())
        return parts

    def parse_primary(self) -> _Term:
        token = self.take()
        if token == "(":
            inner = self.parse_or()
            if self.take() != ")":
                raise ODataError("missing ')' in $filter")
            return _any([_all(b) for b in inner]), None
        if token.lower() == "not" or self.peek() == "(":
            raise ODataError(f"'{token}' is not supported in $filter on this endpoint")
        return self.parse_comparison(token)

    def parse_comparison(self, name: str) -> _Term:
        spec = self.fields.get(name)
        if spec is None:
            supported = ", ".join(self.fields)
            raise ODataError(
                f"property '{name}' cannot be used in $filter on this endpoint "
                f"(supported: {supported})"
            )
        op = self.take().lower()
        if op not in spec.ops:
            allowed = ", ".join(sorted(spec.ops))
            raise ODataError(
                f"operator '{op}' is not supported for '{name}' (supported: {allowed})"
            )
        literal = self.take()
        if spec.kind == "datetime":
            value = _datetime_literal(name, literal)
            return _datetime_comparison(name, op, value), Comparison(name, op, value)
        text = _string_literal(name, literal, spec)
        return _string_comparison(name, op, text), Comparison(name, op, text)


def _all(terms: Sequence[_Term]) -> Predicate:
    predicates = [p for p, _ in terms]
    if len(predicates) == 1:
        return predicates[0]
    return lambda row: all(p(row) for p in predicates)


def _any(predicates: Sequence[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    return lambda row: any(p(row) for p in predicates)


def _datetime_literal(name: str, literal: str) -> datetime:
    if not _DATETIME.fullmatch(literal):
        raise ODataError(
            f"'{literal}' is not a valid DateTimeOffset literal for '{name}' "
            "(use an unquoted ISO-8601 value with an offset, e.g. 2024-01-01T00:00:00Z)"
        )
    try:
        return datetime.fromisoformat(literal.upper())
    except ValueError as exc:
        raise ODataError(f"'{literal}' is not a valid DateTimeOffset literal") from exc


def _datetime_comparison(name: str, op: str, value: datetime) -> Predicate:
    compare = _COMPARE[op]
    return lambda row: row[name] is not None and compare(row[name], value)


def _string_literal(name: str, literal: str, spec: FieldSpec) -> str | None:
    value: str | None
    if literal.lower() == "null":
        value = None
    elif len(literal) >= 2 and literal.startswith("'") and literal.endswith("'"):
        value = literal[1:-1].replace("''", "'")
    else:
        raise ODataError(f"'{literal}' is not a valid string literal for '{name}' (quote it)")
    if spec.kind == "enum" and value is not None:
        matches = [v for v in spec.values if v.lower() == value.lower()]
        if not matches:
            raise ODataError(
                f"the string '{value}' is not a valid enumeration constant for '{name}' "
                f"(valid: {', '.join(spec.values)})"
            )
    return value


def _string_comparison(name: str, op: str, value: str | None) -> Predicate:
    folded = None if value is None else value.lower()

    def equal(row: Row) -> bool:
        actual = row[name]
        if actual is None or folded is None:
            return actual is None and folded is None
        return str(actual).lower() == folded

    if op == "eq":
        return equal
    return lambda row: not equal(row)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def parse_filter(text: str | None, fields: Mapping[str, FieldSpec]) -> Predicate:
    """Parse `$filter` text into a predicate over rows keyed by the property names.

    Raises:
        ODataError: the expression is malformed or outside the supported subset.
    """
    return parse_filter_terms(text, fields).predicate


def parse_filter_terms(text: str | None, fields: Mapping[str, FieldSpec]) -> Filter:
    """Parse `$filter` text into a `Filter`: the predicate and its top-level terms.

    Raises:
        ODataError: the expression is malformed or outside the supported subset.
    """
    if text is None or not text.strip():
        return Filter(lambda row: True)
    return _Parser(_tokenize(text), fields).parse()


def parse_orderby(raw: str | None, allowed: Sequence[str]) -> tuple[str, bool] | None:
    """Parse `$orderby` with one property of `allowed` and an optional `asc`/`desc`:
    `(property, descending)`, or None when absent.

    Raises:
        ODataError: an unknown property or direction, or more than one property.
    """
    if raw is None or not raw.strip():
        return None
    if "," in raw:
        raise ODataError(f"$orderby '{raw}': order by one property only")
    words = raw.split()
    name = words[0]
    if name not in allowed:
        raise ODataError(
            f"$orderby '{raw}': the property '{name}' cannot be used in $orderby on this "
            f"endpoint (supported: {', '.join(allowed)})"
        )
    if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
        raise ODataError(f"$orderby '{raw}': the direction must be 'asc' or 'desc'")
    return name, len(words) == 2 and words[1].lower() == "desc"


def parse_int_option(name: str, raw: str | None, default: int, maximum: int | None) -> int:
    """Parse `$top`/`$skip`: a non-negative integer, at most `maximum` when given.

    Raises:
        ODataError: not an integer, negative, or above the maximum.
    """
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ODataError(f"invalid value '{raw}' for {name}: expected an integer") from exc
    if value < 0:
        raise ODataError(f"invalid value '{raw}' for {name}: must not be negative")
    if maximum is not None and value > maximum:
        raise ODataError(f"invalid value '{raw}' for {name}: the maximum is {maximum}")
    return value


def check_options(query: Mapping[str, Sequence[str]], allowed: frozenset[str]) -> None:
    """Reject `$`-options the endpoint does not document, and repeated options.

    Raises:
        ODataError: an unsupported or repeated system query option.
    """
    for key, values in query.items():
        if key.startswith("$"):
            if key not in allowed:
                raise ODataError(
                    f"query option '{key}' is not supported on this endpoint "
                    f"(supported: {', '.join(sorted(allowed))})"
                )
            if len(values) > 1:
                raise ODataError(f"query option '{key}' was specified more than once")
