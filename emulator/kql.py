"""A small KQL interpreter: the emulator's advanced hunting over in-memory tables.

The emulator promises this subset of KQL, and nothing more. A query outside it is rejected
with a `KqlError` whose message names what was not understood and where (the emulator turns it
into a 400). The real service accepts far more; a query that works here works there, not the
reverse.

Query shape
    ``TableName | operator | operator ...`` - a table name first, then ``|``-separated tabular
    operators. ``//`` starts a comment that runs to the end of the line. Operator names, keywords
    (``and``, ``or``, ``by``, ``asc``, ...) and column names are case-sensitive, as in KQL.

Tabular operators
    - ``where <predicate>``
    - ``project C1, C2, NewName = C3`` (columns and renames only, no computed expressions)
    - ``take N`` / ``limit N``
    - ``order by C1 [asc|desc] [nulls first|last], C2 ...`` / ``sort by ...``; the default is
      ``desc``, with nulls last for ``desc`` and first for ``asc``, as in KQL
    - ``top N by C [asc|desc] [nulls first|last]``
    - ``summarize [Name =] count() [, ...] [by K1, Name = K2, bin(C, size)]``; also
      ``summarize by K1, K2`` (distinct groups). ``count()`` is the only aggregation; its default
      column name is ``count_``. Group keys come first in the output, then the counts.
    - ``distinct C1, C2``
    - ``count`` (one row, one ``Count`` column)

Predicates (``where``)
    - comparisons ``==`` ``!=`` ``<`` ``<=`` ``>`` ``>=`` (``<`` and friends on numbers, datetimes
      and timespans only, as KQL refuses to order strings); ``=~`` and ``!~`` (case-insensitive
      string equality)
    - string operators, case-insensitive unless suffixed ``_cs``: ``contains``, ``startswith``,
      ``endswith``, ``has`` (whole-term match), each also negated with ``!`` (``!contains``,
      ``!has``, ...)
    - ``in (lit, ...)`` / ``!in (...)`` (case-sensitive) and ``in~`` / ``!in~`` (insensitive)
    - ``and`` (binds tighter than ``or``), ``or``, ``not(...)``, parentheses; a bool column alone
    - functions ``ago(timespan)``, ``now()``, ``now(timespan)``, ``isempty(x)``,
      ``isnotempty(x)``, ``isnull(x)``, ``isnotnull(x)``
    - literals: ``'text'`` or ``"text"`` (backslash escapes) and ``@'verbatim'``; integers
      (``long``) and decimals (``real``); ``true``/``false``; ``datetime(2024-01-01)`` or
      ``datetime(2024-01-01T08:30:00Z)`` (UTC unless an offset is given); timespans ``7d``,
      ``12h``, ``30m``, ``10s``, ``250ms`` (also ``1.5h`` and long unit names such as ``2days``),
      optionally negated with ``-``

Everything else is an error: other operators (``join``, ``extend``, ``parse``, ``union``,
``render``, ``mv-expand``, ...), ``let`` and other statements, arithmetic, other functions and
aggregations, unknown tables, unknown columns, and type mismatches such as ``FileSize ==
"1"``. Null semantics follow KQL: strings are never null (a missing string is ``""``); a
comparison with a null number or datetime is neither true nor false, so ``where`` drops the row.

Results
    `QueryResult.schema` lists (column, type) with the type names the API reports (``DateTime``,
    ``String``, ``Int64``, ``Int32``, ``Boolean``, ``Dynamic``, ``Double``, ``TimeSpan``).
    Datetimes are rendered as ISO-8601 UTC with seven fractional digits and ``Z``
    (``2024-01-01T08:30:00.0000000Z``), like the API; dynamic values stay JSON values. At most
    ``max_rows`` rows come back (the documented limit is 100,000).

Column types come from `emulator.hunting_data.TABLE_SCHEMAS` for the Defender tables it knows;
any other table passed to `run` has its types inferred from the Python values of its rows.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from emulator.hunting_data import TABLE_SCHEMAS

__all__ = ["API_TYPE_NAMES", "DEFAULT_MAX_ROWS", "KqlError", "QueryResult", "run"]

# The documented result limit of advanced hunting, both surfaces
# (https://learn.microsoft.com/defender-xdr/api-advanced-hunting).
DEFAULT_MAX_ROWS = 100_000

# KQL type name -> the name the hunting APIs report in the schema of a response.
API_TYPE_NAMES: Mapping[str, str] = {
    "datetime": "DateTime",
    "string": "String",
    "long": "Int64",
    "int": "Int32",
    "bool": "Boolean",
    "dynamic": "Dynamic",
    "real": "Double",
    "timespan": "TimeSpan",
}

_NUMERIC = frozenset({"int", "long", "real"})

SUPPORTED_OPERATORS = (
    "where, project, take, limit, order by, sort by, top N by, summarize count() by, "
    "distinct, count"
)
SUPPORTED_FUNCTIONS = (
    "ago(), now(), datetime(), not(), isempty(), isnotempty(), isnull(), isnotnull()"
)

# Tabular operators and statements of real KQL that this subset does not implement: named in
# errors as "unsupported" rather than "unknown".
_KNOWN_UNSUPPORTED = frozenset(
    {
        "as", "consume", "evaluate", "extend", "externaldata", "facet", "filter", "find",
        "fork", "getschema", "invoke", "join", "lookup", "make-series", "make-graph",
        "mv-apply", "mv-expand", "parse", "parse-kv", "parse-where", "partition", "print",
        "project-away", "project-keep", "project-rename", "project-reorder", "range", "reduce",
        "render", "sample", "sample-distinct", "scan", "search", "serialize", "top-hitters",
        "top-nested", "union", "graph-match", "datatable", "materialize",
    }
)  # fmt: skip
_STATEMENTS = frozenset({"let", "set", "declare", "alias", "pattern", "restrict"})
# Words that may continue with "-word" to form one operator name (mv-expand, project-away...).
_HYPHEN_PREFIXES = frozenset({"mv", "project", "make", "parse", "top", "sample", "graph"})

_STRING_OPS = frozenset(
    {"contains", "startswith", "endswith", "has"}
    | {"contains_cs", "startswith_cs", "endswith_cs", "has_cs"}
)
_KNOWN_UNSUPPORTED_PREDICATES = frozenset(
    {
        "between", "has_any", "has_all", "hasprefix", "hassuffix", "matches", "like",
        "has_any_cs", "hasprefix_cs", "hassuffix_cs", "in_cs", "notcontains", "notcontains_cs",
        "notbetween",
    }
)  # fmt: skip
_AGGREGATIONS = frozenset(
    {
        "any", "arg_max", "arg_min", "avg", "avgif", "binary_all_and", "count_distinct",
        "countif", "dcount", "dcountif", "make_bag", "make_list", "make_set", "max", "maxif",
        "min", "minif", "percentile", "percentiles", "stdev", "sum", "sumif", "take_any",
        "variance",
    }
)  # fmt: skip

_TIMESPAN_UNITS: Mapping[str, timedelta] = {
    "d": timedelta(days=1), "day": timedelta(days=1), "days": timedelta(days=1),
    "h": timedelta(hours=1), "hr": timedelta(hours=1), "hrs": timedelta(hours=1),
    "hour": timedelta(hours=1), "hours": timedelta(hours=1),
    "m": timedelta(minutes=1), "min": timedelta(minutes=1), "minute": timedelta(minutes=1),
    "minutes": timedelta(minutes=1),
    "s": timedelta(seconds=1), "sec": timedelta(seconds=1), "second": timedelta(seconds=1),
    "seconds": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1), "milli": timedelta(milliseconds=1),
    "millis": timedelta(milliseconds=1), "millisecond": timedelta(milliseconds=1),
    "milliseconds": timedelta(milliseconds=1),
}  # fmt: skip

_KQL_EPOCH = datetime(1, 1, 1, tzinfo=UTC)  # bin() on datetimes counts from here, as Kusto does


class KqlError(Exception):
    """The query is outside the supported subset, or wrong; the message is shown to callers."""


@dataclass(frozen=True)
class QueryResult:
    """Result of a query: (column, API type name) pairs and rows keyed by column name."""

    schema: list[tuple[str, str]]
    rows: list[dict[str, Any]]


# --------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class _Token:
    kind: str  # ident, op, string, number, timespan, datetime, eof
    text: str  # the source text (for errors and for identifiers and operators)
    value: Any  # the decoded literal, for string/number/timespan/datetime
    pos: int


def _locate(query: str, pos: int) -> str:
    """Position in an error message: the 0-based offset, plus line and column when multi-line."""
    if "\n" not in query:
        return f"at position {pos}"
    line = query.count("\n", 0, pos) + 1
    column = pos - (query.rfind("\n", 0, pos) + 1) + 1
    return f"at position {pos} (line {line}, column {column})"


_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HYPHEN_TAIL_RE = re.compile(r"(?:-[A-Za-z][A-Za-z0-9_]*)+")
_NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_UNIT_RE = re.compile(r"[A-Za-z_]+")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


def _tokenize(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    n = len(query)
    while i < n:
        c = query[i]
        if c in " \t\r\n":
            i += 1
            continue
        if query.startswith("//", i):
            end = query.find("\n", i)
            i = n if end == -1 else end + 1
            continue
        start = i
        if c.isalpha() or c == "_":
            m = _IDENT_RE.match(query, i)
            assert m is not None
            word = m.group()
            i = m.end()
            if word in _HYPHEN_PREFIXES:
                tail = _HYPHEN_TAIL_RE.match(query, i)
                if tail:
                    word += tail.group()
                    i = tail.end()
            if word == "in" and query.startswith("~", i):
                word, i = "in~", i + 1
            if word == "datetime":
                j = i
                while j < n and query[j] in " \t\r\n":
                    j += 1
                if j < n and query[j] == "(":
                    close = query.find(")", j)
                    if close == -1:
                        raise KqlError(f"unterminated datetime literal {_locate(query, start)}")
                    raw = query[j + 1 : close].strip()
                    tokens.append(
                        _Token("datetime", raw, _parse_datetime(raw, query, start), start)
                    )
                    i = close + 1
                    continue
            tokens.append(_Token("ident", word, None, start))
            continue
        if c.isdigit():
            m = _NUMBER_RE.match(query, i)
            assert m is not None
            digits = m.group()
            i = m.end()
            unit_m = _UNIT_RE.match(query, i)
            if unit_m:
                unit = unit_m.group()
                i = unit_m.end()
                if unit not in _TIMESPAN_UNITS:
                    raise KqlError(
                        f"unknown timespan unit '{unit}' in '{digits}{unit}' "
                        f"{_locate(query, start)}; supported units: d, h, m, s, ms"
                    )
                value = _TIMESPAN_UNITS[unit] * float(digits)
                tokens.append(_Token("timespan", digits + unit, value, start))
            else:
                num: int | float = float(digits) if "." in digits else int(digits)
                tokens.append(_Token("number", digits, num, start))
            continue
        if c in "'\"" or (c == "@" and query[i + 1 : i + 2] in ("'", '"')):
            text, i = _read_string(query, i)
            tokens.append(_Token("string", query[start:i], text, start))
            continue
        two = query[i : i + 2]
        if two in ("==", "!=", "<=", ">=", "=~", "!~"):
            tokens.append(_Token("op", two, None, start))
            i += 2
            continue
        if c == "!" and i + 1 < n and (query[i + 1].isalpha() or query[i + 1] == "_"):
            m = _IDENT_RE.match(query, i + 1)
            assert m is not None
            word = "!" + m.group()
            i = m.end()
            if word == "!in" and query.startswith("~", i):
                word, i = "!in~", i + 1
            tokens.append(_Token("op", word, None, start))
            continue
        if c in "|,()<>=-+*/%[].;:{}":
            tokens.append(_Token("op", c, None, start))
            i += 1
            continue
        raise KqlError(f"unexpected character {c!r} {_locate(query, start)}")
    tokens.append(_Token("eof", "", None, n))
    return tokens


def _read_string(query: str, i: int) -> tuple[str, int]:
    start = i
    verbatim = query[i] == "@"
    if verbatim:
        i += 1
    quote = query[i]
    i += 1
    out: list[str] = []
    while i < len(query):
        c = query[i]
        if c == "\n":
            break
        if verbatim:
            if c == quote:
                if query[i + 1 : i + 2] == quote:  # a doubled quote stands for one quote
                    out.append(quote)
                    i += 2
                    continue
                return "".join(out), i + 1
        elif c == "\\" and i + 1 < len(query):
            nxt = query[i + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        elif c == quote:
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise KqlError(f"unterminated string literal {_locate(query, start)}")


_DATE_ONLY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parse_datetime(raw: str, query: str, pos: int) -> datetime:
    try:
        if not raw or not raw[0].isdigit():
            raise ValueError(raw)
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise KqlError(
            f"invalid datetime literal 'datetime({raw})' {_locate(query, pos)}; "
            "use ISO-8601 such as datetime(2024-01-31) or datetime(2024-01-31T08:30:00Z)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --------------------------------------------------------------------------------------------
# Expression syntax tree


@dataclass(frozen=True)
class _Col:
    name: str
    pos: int


@dataclass(frozen=True)
class _Lit:
    value: Any
    type: str
    pos: int


@dataclass(frozen=True)
class _Binary:
    op: str
    left: _Expr
    right: _Expr
    pos: int


@dataclass(frozen=True)
class _InList:
    op: str  # in, !in, in~, !in~
    left: _Expr
    items: tuple[_Lit, ...]
    pos: int


@dataclass(frozen=True)
class _Call:
    name: str
    args: tuple[_Expr, ...]
    pos: int


_Expr = _Col | _Lit | _Binary | _InList | _Call
_Row = Mapping[str, Any]
_Eval = Callable[[_Row], Any]
_Schema = dict[str, str]  # column -> KQL type, in output order
_Stage = Callable[[list[_Row]], list[_Row]]

_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "=~", "!~"})
_IN_OPS = frozenset({"in", "!in", "in~", "!in~"})


def _describe(tok: _Token) -> str:
    if tok.kind == "eof":
        return "end of query"
    return f"'{tok.text}'"


class _Parser:
    """Recursive descent over the tokens; each tabular operator is bound to the current schema."""

    def __init__(self, query: str, tables: Mapping[str, Sequence[_Row]], now: datetime) -> None:
        self.query = query
        self.tokens = _tokenize(query)
        self.i = 0
        self.tables = tables
        self.now = now

    # -- token helpers --------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def at_op(self, text: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.text == text

    def at_word(self, text: str) -> bool:
        tok = self.peek()
        return tok.kind == "ident" and tok.text == text

    def error(self, message: str, pos: int) -> KqlError:
        """The message with the position after its first clause ("X at position N; hint")."""
        head, sep, hint = message.partition("; ")
        return KqlError(f"{head} {_locate(self.query, pos)}{sep}{hint}")

    def expect_op(self, text: str, context: str) -> _Token:
        tok = self.peek()
        if tok.kind != "op" or tok.text != text:
            raise self.error(f"expected '{text}' {context}, found {_describe(tok)}", tok.pos)
        return self.advance()

    def expect_word(self, text: str, context: str) -> _Token:
        tok = self.peek()
        if tok.kind != "ident" or tok.text != text:
            raise self.error(f"expected '{text}' {context}, found {_describe(tok)}", tok.pos)
        return self.advance()

    def expect_ident(self, what: str) -> _Token:
        tok = self.peek()
        if tok.kind != "ident":
            raise self.error(f"expected {what}, found {_describe(tok)}", tok.pos)
        return self.advance()

    def column(self, tok: _Token, schema: _Schema) -> str:
        if tok.text in schema:
            return tok.text
        hint = _suggest(tok.text, schema)
        raise self.error(f"unknown column '{tok.text}'{hint}", tok.pos)

    # -- query -----------------------------------------------------------------------------

    def parse_query(self) -> tuple[_Schema, list[_Row], list[_Stage]]:
        tok = self.peek()
        if tok.kind == "eof":
            raise KqlError(
                "empty query; a query starts with a table name, e.g. 'AlertInfo | take 10'"
            )
        if tok.kind != "ident":
            raise self.error(
                f"a query must start with a table name, found {_describe(tok)}", tok.pos
            )
        if tok.text in _STATEMENTS:
            raise self.error(
                f"unsupported statement '{tok.text}'; a query must start with a table name", tok.pos
            )
        if tok.text in _KNOWN_UNSUPPORTED:
            raise self.error(
                f"unsupported operator '{tok.text}'; a query must start with a table name", tok.pos
            )
        self.advance()
        if tok.text not in self.tables:
            available = ", ".join(sorted(self.tables)) or "none"
            hint = _suggest(tok.text, self.tables)
            raise self.error(
                f"unknown table '{tok.text}'{hint}; available tables: {available}", tok.pos
            )
        schema, rows = _load_table(tok.text, self.tables[tok.text])
        stages: list[_Stage] = []
        while True:
            tok = self.peek()
            if tok.kind == "eof":
                break
            if not self.at_op("|"):
                raise self.error(
                    f"unexpected {_describe(tok)}; expected '|' or end of query", tok.pos
                )
            self.advance()
            stage, schema = self.parse_operator(schema)
            stages.append(stage)
        return schema, rows, stages

    def parse_operator(self, schema: _Schema) -> tuple[_Stage, _Schema]:
        tok = self.peek()
        if tok.kind != "ident":
            raise self.error(f"expected an operator after '|', found {_describe(tok)}", tok.pos)
        self.advance()
        name = tok.text
        if name == "where":
            return self.parse_where(schema)
        if name == "project":
            return self.parse_project(schema)
        if name in ("take", "limit"):
            count = self.parse_count(name)
            return (lambda rows: rows[:count]), schema
        if name in ("order", "sort"):
            self.expect_word("by", f"after '{name}'")
            keys = self.parse_sort_keys(schema, several=True)
            return (lambda rows: _sort_rows(rows, keys, schema)), schema
        if name == "top":
            count = self.parse_count("top")
            self.expect_word("by", "after 'top N'")
            keys = self.parse_sort_keys(schema, several=False)
            return (lambda rows: _sort_rows(rows, keys, schema)[:count]), schema
        if name == "summarize":
            return self.parse_summarize(schema, tok.pos)
        if name == "distinct":
            return self.parse_distinct(schema)
        if name == "count":
            return (lambda rows: [{"Count": len(rows)}]), {"Count": "long"}
        if name in _KNOWN_UNSUPPORTED:
            raise self.error(
                f"unsupported operator '{name}'; supported: {SUPPORTED_OPERATORS}", tok.pos
            )
        hint = ""
        if name.lower() in {"where", "project", "take", "limit", "order", "sort", "top",
                            "summarize", "distinct", "count"}:  # fmt: skip
            hint = f" (operator names are case-sensitive: did you mean '{name.lower()}'?)"
        raise self.error(
            f"unknown operator '{name}'{hint}; supported: {SUPPORTED_OPERATORS}", tok.pos
        )

    def parse_count(self, operator: str) -> int:
        tok = self.peek()
        if tok.kind != "number" or not isinstance(tok.value, int):
            raise self.error(
                f"'{operator}' needs a non-negative whole number, found {_describe(tok)}", tok.pos
            )
        self.advance()
        return int(tok.value)

    # -- where -----------------------------------------------------------------------------

    def parse_where(self, schema: _Schema) -> tuple[_Stage, _Schema]:
        start = self.peek()
        if start.kind == "eof" or self.at_op("|"):
            raise self.error("'where' needs a predicate", start.pos)
        expr = self.parse_or()
        typ, fn = _Compiler(self, schema).compile(expr)
        if typ != "bool":
            raise self.error(
                f"'where' needs a boolean predicate, got a {typ} expression", start.pos
            )

        def stage(rows: list[_Row]) -> list[_Row]:
            return [row for row in rows if fn(row) is True]

        return stage, schema

    def parse_or(self) -> _Expr:
        left = self.parse_and()
        while self.at_word("or"):
            tok = self.advance()
            left = _Binary("or", left, self.parse_and(), tok.pos)
        return left

    def parse_and(self) -> _Expr:
        left = self.parse_comparison()
        while self.at_word("and"):
            tok = self.advance()
            left = _Binary("and", left, self.parse_comparison(), tok.pos)
        return left

    def parse_comparison(self) -> _Expr:
        left = self.parse_primary()
        tok = self.peek()
        op = tok.text
        if tok.kind == "op" and op in _COMPARISONS:
            self.advance()
            return _Binary(op, left, self.parse_primary(), tok.pos)
        if (tok.kind == "ident" and op in _STRING_OPS) or (
            tok.kind == "op" and op.startswith("!") and op[1:] in _STRING_OPS
        ):
            self.advance()
            return _Binary(op, left, self.parse_primary(), tok.pos)
        if op in _IN_OPS and tok.kind in ("ident", "op"):
            self.advance()
            return self.parse_in_list(op, left, tok.pos)
        if tok.kind == "op" and op == "=":
            raise self.error("'=' is not a comparison; use '==' (or '=~' to ignore case)", tok.pos)
        if tok.kind == "op" and op in ("+", "-", "*", "/", "%"):
            raise self.error(
                f"arithmetic operator '{op}' is not supported; compare columns with literals, "
                "e.g. Timestamp > ago(1d)",
                tok.pos,
            )
        bare = op[1:] if tok.kind == "op" and op.startswith("!") else op
        if tok.kind in ("ident", "op") and bare in _KNOWN_UNSUPPORTED_PREDICATES:
            raise self.error(
                f"unsupported operator '{op}'; supported in 'where': ==, !=, <, <=, >, >=, =~, "
                "!~, contains, startswith, endswith, has (each also with _cs and with !), "
                "in, !in, in~, !in~, and, or, not()",
                tok.pos,
            )
        return left

    def parse_in_list(self, op: str, left: _Expr, pos: int) -> _InList:
        self.expect_op("(", f"after '{op}'")
        items: list[_Lit] = []
        if not self.at_op(")"):
            while True:
                item = self.parse_primary()
                if not isinstance(item, _Lit):
                    raise self.error(f"'{op} (...)' accepts literal values only", _pos_of(item))
                items.append(item)
                if not self.at_op(","):
                    break
                self.advance()
        self.expect_op(")", f"to close the '{op}' list")
        return _InList(op, left, tuple(items), pos)

    def parse_primary(self) -> _Expr:
        tok = self.peek()
        if tok.kind == "op" and tok.text == "(":
            self.advance()
            inner = self.parse_or()
            self.expect_op(")", "to close '('")
            return inner
        if tok.kind == "op" and tok.text == "-":
            nxt = self.peek(1)
            if nxt.kind in ("number", "timespan"):
                self.advance()
                self.advance()
                return _Lit(-nxt.value, _literal_type(nxt), tok.pos)
        if tok.kind in ("string", "number", "timespan", "datetime"):
            self.advance()
            return _Lit(tok.value, _literal_type(tok), tok.pos)
        if tok.kind == "ident":
            self.advance()
            if tok.text in ("true", "false"):
                return _Lit(tok.text == "true", "bool", tok.pos)
            if tok.text == "not" and not self.at_op("("):
                raise self.error("'not' is a function in KQL; write not(<predicate>)", tok.pos)
            if self.at_op("("):
                self.advance()
                args: list[_Expr] = []
                if not self.at_op(")"):
                    while True:
                        args.append(self.parse_or())
                        if not self.at_op(","):
                            break
                        self.advance()
                self.expect_op(")", f"to close '{tok.text}('")
                return _Call(tok.text, tuple(args), tok.pos)
            if self.at_op("."):
                raise self.error(
                    f"property access '{tok.text}.…' is not supported; dynamic values can be "
                    "searched with has/contains",
                    self.peek().pos,
                )
            return _Col(tok.text, tok.pos)
        if tok.kind == "op" and tok.text == "[":
            raise self.error("bracketed column names ['...'] are not supported", tok.pos)
        raise self.error(f"expected a column, literal or function, found {_describe(tok)}", tok.pos)

    # -- project, order by, top -------------------------------------------------------------

    def parse_project(self, schema: _Schema) -> tuple[_Stage, _Schema]:
        mapping: list[tuple[str, str]] = []  # (output name, source column)
        out: _Schema = {}
        while True:
            tok = self.expect_ident("a column name in 'project'")
            if self.at_op("="):
                self.advance()
                src_tok = self.peek()
                if src_tok.kind != "ident" or self.peek(1).text == "(":
                    raise self.error(
                        "'project' supports columns and renames (NewName = Column) only; "
                        "computed columns are not supported",
                        src_tok.pos,
                    )
                self.advance()
                source = self.column(src_tok, schema)
                name = tok.text
            else:
                if self.at_op("("):
                    raise self.error(
                        f"'project' supports columns and renames only; '{tok.text}(...)' is "
                        "not supported",
                        tok.pos,
                    )
                source = name = self.column(tok, schema)
            nxt = self.peek()
            if nxt.kind == "op" and nxt.text not in (",", "|"):
                raise self.error(
                    "'project' supports columns and renames (NewName = Column) only; "
                    f"unexpected {_describe(nxt)}",
                    nxt.pos,
                )
            if name in out:
                raise self.error(f"duplicate column name '{name}' in 'project'", tok.pos)
            out[name] = schema[source]
            mapping.append((name, source))
            if not self.at_op(","):
                break
            self.advance()

        def stage(rows: list[_Row]) -> list[_Row]:
            return [{name: row.get(src) for name, src in mapping} for row in rows]

        return stage, out

    def parse_sort_keys(self, schema: _Schema, *, several: bool) -> list[tuple[str, bool, bool]]:
        keys: list[tuple[str, bool, bool]] = []  # (column, descending, nulls first)
        while True:
            tok = self.expect_ident("a column to sort by")
            if self.at_op("("):
                raise self.error(
                    f"sorting by an expression ('{tok.text}(...)') is not supported; "
                    "sort by a column",
                    tok.pos,
                )
            name = self.column(tok, schema)
            if schema[name] == "dynamic":
                raise self.error(f"cannot sort by dynamic column '{name}'", tok.pos)
            descending = True
            if self.at_word("asc") or self.at_word("desc"):
                descending = self.advance().text == "desc"
            nulls_first = not descending
            if self.at_word("nulls"):
                self.advance()
                where = self.peek()
                if where.kind != "ident" or where.text not in ("first", "last"):
                    raise self.error(
                        f"expected 'first' or 'last' after 'nulls', found {_describe(where)}",
                        where.pos,
                    )
                self.advance()
                nulls_first = where.text == "first"
            keys.append((name, descending, nulls_first))
            if not self.at_op(","):
                break
            if not several:
                raise self.error("'top' sorts by one column only", self.peek().pos)
            self.advance()
        return keys

    # -- summarize, distinct ----------------------------------------------------------------

    def parse_summarize(self, schema: _Schema, pos: int) -> tuple[_Stage, _Schema]:
        aggregates: list[str] = []
        if not self.at_word("by"):
            while True:
                tok = self.expect_ident("an aggregation such as count() or 'by'")
                name = "count_"
                func_tok = tok
                if self.at_op("="):
                    self.advance()
                    name = tok.text
                    func_tok = self.expect_ident("an aggregation such as count()")
                if not (self.at_op("(") and func_tok.text == "count"):
                    if not self.at_op("("):
                        raise self.error(
                            f"expected an aggregation such as count(), found '{func_tok.text}'",
                            func_tok.pos,
                        )
                    raise self.error(
                        f"unsupported aggregation function '{func_tok.text}'; 'summarize' "
                        "supports count() only",
                        func_tok.pos,
                    )
                self.advance()
                if not self.at_op(")"):
                    raise self.error("count() takes no arguments", self.peek().pos)
                self.advance()
                if name in aggregates:
                    raise self.error(f"duplicate column name '{name}' in 'summarize'", tok.pos)
                aggregates.append(name)
                if not self.at_op(","):
                    break
                self.advance()
        keys: list[tuple[str, str, _Eval]] = []
        if self.at_word("by"):
            self.advance()
            keys = self.parse_group_keys(schema, "summarize")
        elif not aggregates:
            raise self.error("'summarize' needs count() or 'by'", pos)
        out: _Schema = {name: typ for name, typ, _ in keys}
        for name in aggregates:
            if name in out:
                raise self.error(f"duplicate column name '{name}' in 'summarize'", pos)
            out[name] = "long"
        return _group_stage(keys, aggregates), out

    def parse_distinct(self, schema: _Schema) -> tuple[_Stage, _Schema]:
        keys: list[tuple[str, str, _Eval]] = []
        while True:
            tok = self.expect_ident("a column in 'distinct'")
            name = self.column(tok, schema)
            if schema[name] == "dynamic":
                raise self.error(f"'distinct' on dynamic column '{name}' is not supported", tok.pos)
            if name in {k[0] for k in keys}:
                raise self.error(f"duplicate column name '{name}' in 'distinct'", tok.pos)
            keys.append((name, schema[name], _column_getter(name, schema[name])))
            if not self.at_op(","):
                break
            self.advance()
        return _group_stage(keys, []), {name: typ for name, typ, _ in keys}

    def parse_group_keys(self, schema: _Schema, operator: str) -> list[tuple[str, str, _Eval]]:
        keys: list[tuple[str, str, _Eval]] = []
        while True:
            tok = self.expect_ident(f"a column to group by in '{operator}'")
            out_name: str | None = None
            if self.at_op("="):
                self.advance()
                out_name = tok.text
                tok = self.expect_ident(f"a column to group by in '{operator}'")
            if self.at_op("("):
                if tok.text != "bin":
                    raise self.error(
                        f"unsupported function '{tok.text}' in 'by'; supported: columns and "
                        "bin(Column, size)",
                        tok.pos,
                    )
                name, typ, fn = self.parse_bin(schema)
            else:
                name = self.column(tok, schema)
                typ = schema[name]
                fn = _column_getter(name, typ)
            if typ == "dynamic":
                raise self.error(f"cannot group by dynamic column '{name}'", tok.pos)
            name = out_name or name
            if name in {k[0] for k in keys}:
                raise self.error(f"duplicate column name '{name}' in '{operator}'", tok.pos)
            keys.append((name, typ, fn))
            if not self.at_op(","):
                break
            self.advance()
        return keys

    def parse_bin(self, schema: _Schema) -> tuple[str, str, _Eval]:
        self.expect_op("(", "after 'bin'")
        col_tok = self.expect_ident("a column as the first argument of bin()")
        name = self.column(col_tok, schema)
        typ = schema[name]
        self.expect_op(",", "between the arguments of bin()")
        size_expr = self.parse_primary()
        self.expect_op(")", "to close 'bin('")
        if not isinstance(size_expr, _Lit):
            raise self.error("the bin size must be a literal", _pos_of(size_expr))
        size = size_expr.value
        if typ == "datetime" and size_expr.type == "timespan" and size > timedelta(0):

            def bin_datetime(row: _Row, _name: str = name, _size: timedelta = size) -> Any:
                value = row.get(_name)
                if value is None:
                    return None
                return _KQL_EPOCH + ((value - _KQL_EPOCH) // _size) * _size

            return name, typ, bin_datetime
        if typ in _NUMERIC and size_expr.type in _NUMERIC and size > 0:

            def bin_number(row: _Row, _name: str = name, _size: float = size) -> Any:
                value = row.get(_name)
                if value is None:
                    return None
                binned = (value // _size) * _size
                return (
                    int(binned) if typ in ("int", "long") and float(binned).is_integer() else binned
                )

            return name, typ, bin_number
        raise self.error(
            f"bin() of a {typ} column by a {size_expr.type} is not supported; use a positive "
            "timespan for a datetime column or a positive number for a numeric column",
            col_tok.pos,
        )


def _pos_of(expr: _Expr) -> int:
    return expr.pos


def _literal_type(tok: _Token) -> str:
    if tok.kind == "number":
        return "real" if isinstance(tok.value, float) else "long"
    return tok.kind  # string, timespan, datetime


def _suggest(name: str, known: Mapping[str, Any]) -> str:
    lowered = {k.lower(): k for k in known}
    if name.lower() in lowered:
        return f" (names are case-sensitive: did you mean '{lowered[name.lower()]}'?)"
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --------------------------------------------------------------------------------------------
# Type checking and evaluation of predicates


class _Compiler:
    """Turns an expression tree into (KQL type, row -> value) after checking types and names."""

    def __init__(self, parser: _Parser, schema: _Schema) -> None:
        self.parser = parser
        self.schema = schema

    def error(self, message: str, pos: int) -> KqlError:
        return self.parser.error(message, pos)

    def compile(self, expr: _Expr) -> tuple[str, _Eval]:
        if isinstance(expr, _Lit):
            value = expr.value
            return expr.type, lambda _row: value
        if isinstance(expr, _Col):
            name = self.parser.column(_Token("ident", expr.name, None, expr.pos), self.schema)
            typ = self.schema[name]
            return typ, _column_getter(name, typ)
        if isinstance(expr, _Call):
            return self.compile_call(expr)
        if isinstance(expr, _InList):
            return self.compile_in(expr)
        return self.compile_binary(expr)

    def compile_call(self, call: _Call) -> tuple[str, _Eval]:
        name, args = call.name, call.args
        if name == "ago":
            span = self.timespan_arg(call, required=True)
            value = self.parser.now - span
            return "datetime", lambda _row: value
        if name == "now":
            span = self.timespan_arg(call, required=False)
            value = self.parser.now + span
            return "datetime", lambda _row: value
        if name in ("not", "isempty", "isnotempty", "isnull", "isnotnull"):
            if len(args) != 1:
                raise self.error(f"{name}() takes exactly one argument", call.pos)
            typ, fn = self.compile(args[0])
            if name == "not":
                if typ != "bool":
                    raise self.error(f"not() needs a boolean argument, got {typ}", call.pos)
                return "bool", lambda row: None if (v := fn(row)) is None else not v
            if name == "isempty":
                return "bool", lambda row: (v := fn(row)) is None or v == ""
            if name == "isnotempty":
                return "bool", lambda row: not ((v := fn(row)) is None or v == "")
            if name == "isnull":
                return "bool", lambda row: fn(row) is None
            return "bool", lambda row: fn(row) is not None
        if name in _AGGREGATIONS or name == "count":
            raise self.error(
                f"aggregation '{name}()' is only allowed in 'summarize' (and only count())",
                call.pos,
            )
        raise self.error(
            f"unsupported function '{name}'; supported functions: {SUPPORTED_FUNCTIONS}", call.pos
        )

    def timespan_arg(self, call: _Call, *, required: bool) -> timedelta:
        if not call.args and not required:
            return timedelta(0)
        if len(call.args) != 1:
            raise self.error(
                f"{call.name}() takes {'one' if required else 'at most one'} timespan "
                f"argument, e.g. {call.name}(7d)",
                call.pos,
            )
        arg = call.args[0]
        if not isinstance(arg, _Lit) or arg.type != "timespan":
            raise self.error(
                f"{call.name}() needs a timespan literal such as 7d, 12h, 30m, 10s or 100ms",
                _pos_of(arg),
            )
        span: timedelta = arg.value
        return span

    def compile_in(self, expr: _InList) -> tuple[str, _Eval]:
        typ, fn = self.compile(expr.left)
        if typ == "dynamic":
            raise self.error(f"'{expr.op}' is not supported on dynamic values", expr.pos)
        for item in expr.items:
            if _category(item.type) != _category(typ):
                raise self.error(
                    f"'{expr.op}' list item of type {item.type} does not match the {typ} on the "
                    "left",
                    item.pos,
                )
        negate = expr.op.startswith("!")
        if expr.op.endswith("~"):
            if typ != "string":
                raise self.error(f"'{expr.op}' needs string values, got {typ}", expr.pos)
            folded = frozenset(str(item.value).lower() for item in expr.items)
            return "bool", lambda row: ((fn(row) or "").lower() in folded) != negate
        values = [item.value for item in expr.items]
        if typ == "string":
            strings = frozenset(values)
            return "bool", lambda row: ((fn(row) or "") in strings) != negate

        def member(row: _Row) -> bool | None:
            value = fn(row)
            if value is None:
                return None
            return (value in values) != negate

        return "bool", member

    def compile_binary(self, expr: _Binary) -> tuple[str, _Eval]:
        op = expr.op
        ltyp, lfn = self.compile(expr.left)
        rtyp, rfn = self.compile(expr.right)
        if op in ("and", "or"):
            for typ, side in ((ltyp, expr.left), (rtyp, expr.right)):
                if typ != "bool":
                    raise self.error(
                        f"'{op}' needs boolean operands, got a {typ} expression", _pos_of(side)
                    )
            return "bool", _and(lfn, rfn) if op == "and" else _or(lfn, rfn)
        bare = op.lstrip("!")
        if bare in _STRING_OPS:
            if rtyp != "string":
                raise self.error(f"'{op}' needs a string on the right, got {rtyp}", expr.pos)
            return "bool", _string_op(bare, op.startswith("!"), lfn, rfn)
        if op in ("=~", "!~"):
            if ltyp != "string" or rtyp != "string":
                raise self.error(f"'{op}' compares strings only, got {ltyp} and {rtyp}", expr.pos)
            negate = op == "!~"
            return (
                "bool",
                lambda row: ((lfn(row) or "").lower() == (rfn(row) or "").lower()) != negate,
            )
        lcat, rcat = _category(ltyp), _category(rtyp)
        if lcat != rcat or lcat == "dynamic":
            raise self.error(
                f"cannot compare values of types {ltyp} and {rtyp} with '{op}'", expr.pos
            )
        if op in ("==", "!="):
            return "bool", _equality(op == "!=", lfn, rfn, ltyp == "string")
        if lcat not in ("number", "datetime", "timespan"):
            raise self.error(
                f"'{op}' is not supported for {ltyp} values; use ==, !=, =~ or string operators",
                expr.pos,
            )
        return "bool", _ordering(op, lfn, rfn)


def _category(typ: str) -> str:
    return "number" if typ in _NUMERIC else typ


def _column_getter(name: str, typ: str) -> _Eval:
    if typ == "string":
        # KQL strings are never null: a missing string reads as "".
        return lambda row: "" if (v := row.get(name)) is None else v
    return lambda row: row.get(name)


def _and(left: _Eval, right: _Eval) -> _Eval:
    def evaluate(row: _Row) -> bool | None:
        a = left(row)
        if a is False:
            return False
        b = right(row)
        if b is False:
            return False
        return None if a is None or b is None else True

    return evaluate


def _or(left: _Eval, right: _Eval) -> _Eval:
    def evaluate(row: _Row) -> bool | None:
        a = left(row)
        if a is True:
            return True
        b = right(row)
        if b is True:
            return True
        return None if a is None or b is None else False

    return evaluate


def _equality(negate: bool, left: _Eval, right: _Eval, strings: bool) -> _Eval:
    def evaluate(row: _Row) -> bool | None:
        a, b = left(row), right(row)
        if a is None or b is None:
            if strings:
                a, b = a or "", b or ""
            else:
                return None
        return bool(a == b) != negate

    return evaluate


def _ordering(op: str, left: _Eval, right: _Eval) -> _Eval:
    def evaluate(row: _Row) -> bool | None:
        a, b = left(row), right(row)
        if a is None or b is None:
            return None
        if op == "<":
            return bool(a < b)
        if op == "<=":
            return bool(a <= b)
        if op == ">":
            return bool(a > b)
        return bool(a >= b)

    return evaluate


def _as_text(value: Any) -> str:
    """KQL's tostring() for the string operators applied to non-string values."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _format_datetime(value)
    if isinstance(value, timedelta):
        return _format_timespan(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


_TERM_CHARS = "0-9A-Za-z"


def _has_term(haystack: str, needle: str, flags: int) -> bool:
    """KQL `has`: the needle occurs as whole term(s), not inside a longer alphanumeric run."""
    if not needle:
        return True
    pattern = re.escape(needle)
    if needle[0].isalnum():
        pattern = f"(?<![{_TERM_CHARS}])" + pattern
    if needle[-1].isalnum():
        pattern += f"(?![{_TERM_CHARS}])"
    return re.search(pattern, haystack, flags) is not None


def _string_op(op: str, negate: bool, left: _Eval, right: _Eval) -> _Eval:
    case_sensitive = op.endswith("_cs")
    base = op.removesuffix("_cs")

    def evaluate(row: _Row) -> bool:
        hay = _as_text(left(row))  # strings pass through, None reads as ""
        needle: str = right(row) or ""
        if base == "has":
            found = _has_term(hay, needle, 0 if case_sensitive else re.IGNORECASE)
            return found != negate
        if not case_sensitive:
            hay, needle = hay.lower(), needle.lower()
        if base == "contains":
            found = needle in hay
        elif base == "startswith":
            found = hay.startswith(needle)
        else:
            found = hay.endswith(needle)
        return found != negate

    return evaluate


# --------------------------------------------------------------------------------------------
# Tabular operations


def _sort_rows(rows: list[_Row], keys: list[tuple[str, bool, bool]], schema: _Schema) -> list[_Row]:
    """Stable multi-key sort: one stable pass per key, least significant first."""
    result = list(rows)
    for name, descending, nulls_first in reversed(keys):
        getter = _column_getter(name, schema.get(name, "string"))
        present = [row for row in result if getter(row) is not None]
        missing = [row for row in result if getter(row) is None]
        present.sort(key=getter, reverse=descending)
        result = missing + present if nulls_first else present + missing
    return result


def _group_stage(keys: list[tuple[str, str, _Eval]], aggregates: list[str]) -> _Stage:
    def stage(rows: list[_Row]) -> list[_Row]:
        counts: dict[tuple[Any, ...], int] = {}
        for row in rows:
            group = tuple(fn(row) for _, _, fn in keys)
            counts[group] = counts.get(group, 0) + 1
        if not keys and not counts:
            counts[()] = 0  # summarize count() over nothing is one row with 0
        out: list[_Row] = []
        for group, count in counts.items():
            record: dict[str, Any] = {
                name: value for (name, _, _), value in zip(keys, group, strict=True)
            }
            for name in aggregates:
                record[name] = count
            out.append(record)
        return out

    return stage


def _infer_type(values: Sequence[_Row], column: str) -> str:
    for row in values:
        value = row.get(column)
        if value is None:
            continue
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, int):
            return "long"
        if isinstance(value, float):
            return "real"
        if isinstance(value, datetime):
            return "datetime"
        if isinstance(value, timedelta):
            return "timespan"
        if isinstance(value, dict | list):
            return "dynamic"
        return "string"
    return "string"


def _load_table(name: str, rows: Sequence[_Row]) -> tuple[_Schema, list[_Row]]:
    """The table's schema (documented, else inferred) and rows with datetimes as aware UTC."""
    known = TABLE_SCHEMAS.get(name)
    if known is not None:
        schema = dict(known)
    else:
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        schema = {column: _infer_type(rows, column) for column in columns}
    datetime_columns = [c for c, t in schema.items() if t == "datetime"]
    loaded: list[_Row] = []
    for row in rows:
        fixes: dict[str, Any] = {}
        for column in datetime_columns:
            value = row.get(column)
            if isinstance(value, str):
                fixes[column] = _coerce_datetime(value, name, column)
            elif isinstance(value, datetime) and value.tzinfo is None:
                fixes[column] = value.replace(tzinfo=UTC)
        loaded.append({**row, **fixes} if fixes else row)
    return schema, loaded


def _coerce_datetime(value: str, table: str, column: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise KqlError(
            f"table {table} holds a bad datetime in column {column}: {value!r}"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _format_datetime(value: datetime) -> str:
    """ISO-8601 UTC with seven fractional digits and Z, as the hunting APIs render datetimes."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond:06d}0Z"


def _format_timespan(value: timedelta) -> str:
    """KQL's timespan text: [-][d.]hh:mm:ss[.fffffff]."""
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    if value.days:
        text = f"{value.days}.{text}"
    if value.microseconds:
        text += f".{value.microseconds:06d}0"
    return sign + text


def _render(value: Any, typ: str) -> Any:
    if value is None:
        return "" if typ == "string" else None
    if isinstance(value, datetime):
        return _format_datetime(value)
    if isinstance(value, timedelta):
        return _format_timespan(value)
    return value


# --------------------------------------------------------------------------------------------
# Entry point


def run(
    query: str,
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    now: datetime,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> QueryResult:
    """Run `query` over `tables` (name -> rows); `now` anchors ago() and now().

    :raises KqlError: the query is outside the supported subset or refers to unknown names.
    """
    if max_rows < 0:
        raise ValueError("max_rows must not be negative")
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    parser = _Parser(query, tables, now)
    schema, rows, stages = parser.parse_query()
    for stage in stages:
        rows = stage(rows)
    rows = rows[:max_rows]
    columns = list(schema.items())
    return QueryResult(
        schema=[(name, API_TYPE_NAMES[typ]) for name, typ in columns],
        rows=[{name: _render(row.get(name), typ) for name, typ in columns} for row in rows],
    )
