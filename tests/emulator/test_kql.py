"""Tests of the emulator's KQL subset: parsing, evaluation, errors and result shape."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from emulator.hunting_data import TABLE_SCHEMAS, empty_row
from emulator.kql import DEFAULT_MAX_ROWS, KqlError, QueryResult, run

NOW = datetime(2024, 6, 30, 12, 0, tzinfo=UTC)


def _process(pid: int, **values: Any) -> dict[str, Any]:
    row = empty_row("DeviceProcessEvents")
    row.update(ProcessId=pid, **values)
    return row


def _network(report_id: int, **values: Any) -> dict[str, Any]:
    row = empty_row("DeviceNetworkEvents")
    row.update(ReportId=report_id, **values)
    return row


PROCESS_ROWS = [
    _process(
        1,
        Timestamp=NOW - timedelta(minutes=10),
        DeviceName="ws-001.contoso.com",
        FileName="powershell.exe",
        FolderPath=r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
        ProcessCommandLine="powershell.exe -NoProfile -enc SQBFAFgA",
        AccountName="adelev",
        FileSize=450_000,
    ),
    _process(
        2,
        Timestamp=NOW - timedelta(hours=2),
        DeviceName="ws-001.contoso.com",
        FileName="cmd.exe",
        FolderPath=r"C:\Windows\System32\cmd.exe",
        ProcessCommandLine='cmd.exe /c "whoami /all"',
        AccountName="adelev",
        FileSize=280_000,
    ),
    _process(
        3,
        Timestamp=NOW - timedelta(days=2),
        DeviceName="ws-002.contoso.com",
        FileName="Notepad.exe",
        FolderPath=r"C:\Windows\System32\notepad.exe",
        ProcessCommandLine="notepad.exe report.txt",
        AccountName="meganb",
        FileSize=200_000,
    ),
    _process(
        4,
        Timestamp=NOW - timedelta(days=10),
        DeviceName="srv-001.contoso.com",
        FileName="svchost.exe",
        ProcessCommandLine="svchost.exe -k netsvcs",
        AccountName="system",
        FileSize=None,
    ),
    _process(
        5,
        Timestamp=NOW - timedelta(days=20),
        DeviceName="ws-002.contoso.com",
        FileName="powershell.exe",
        ProcessCommandLine="PowerShell.exe -File inventory.ps1",
        AccountName="meganb",
        FileSize=450_000,
    ),
]

NETWORK_ROWS = [
    _network(
        10,
        Timestamp=NOW - timedelta(hours=1),
        RemoteIP="185.220.101.45",
        RemotePort=443,
        RemoteUrl="bad.example",
        IsInitiatingProcessRemoteSession=True,
    ),
    _network(
        11,
        Timestamp=NOW - timedelta(hours=3),
        RemoteIP="52.1.2.3",
        RemotePort=80,
        RemoteUrl="ctldl.windowsupdate.com",
        IsInitiatingProcessRemoteSession=False,
    ),
]

LOGON_ROWS = [
    {
        **empty_row("IdentityLogonEvents"),
        "Timestamp": NOW - timedelta(hours=5),
        "AccountUpn": "adele.vance@contoso.com",
        "ActionType": "LogonFailed",
        "AdditionalFields": {"Spns": "krbtgt/CONTOSO"},
    }
]

CUSTOM_ROWS = [
    {
        "Name": "alpha",
        "Score": 1.5,
        "N": 3,
        "When": datetime(2024, 6, 1, tzinfo=UTC),
        "Flag": True,
        "Bag": {"k": "v"},
        "Span": timedelta(hours=1),
    },
    {
        "Name": "beta",
        "Score": None,
        "N": 7,
        "When": "2024-06-02T00:00:00Z",
        "Flag": False,
        "Bag": None,
        "Span": None,
    },
]

TABLES: dict[str, Sequence[Mapping[str, Any]]] = {
    "DeviceProcessEvents": PROCESS_ROWS,
    "DeviceNetworkEvents": NETWORK_ROWS,
    "IdentityLogonEvents": LOGON_ROWS,
    "Custom": CUSTOM_ROWS,
}


def q(query: str, **kwargs: Any) -> QueryResult:
    return run(query, TABLES, NOW, **kwargs)


def pids(query: str) -> list[int]:
    return [row["ProcessId"] for row in q(query).rows]


def error_of(query: str) -> str:
    with pytest.raises(KqlError) as info:
        q(query)
    return str(info.value)


# ------------------------------------------------------------------------------------------
# Basics and result shape


def test_table_alone_returns_every_row_with_the_documented_schema() -> None:
    """A bare table name returns all rows and the documented columns, in order, with API types."""
    result = q("DeviceProcessEvents")
    assert len(result.rows) == len(PROCESS_ROWS)
    assert [name for name, _ in result.schema] == [
        name for name, _ in TABLE_SCHEMAS["DeviceProcessEvents"]
    ]
    types = dict(result.schema)
    assert types["Timestamp"] == "DateTime"
    assert types["FileName"] == "String"
    assert types["FileSize"] == "Int64"
    assert list(result.rows[0]) == [name for name, _ in result.schema]


def test_datetimes_render_as_iso_utc_with_seven_fractional_digits() -> None:
    """Datetimes come back like the API renders them: seven fractional digits and Z."""
    rows = [{"T": datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)}]
    result = run("X", {"X": rows}, NOW)
    assert result.rows == [{"T": "2024-01-02T03:04:05.1234560Z"}]
    offset = datetime(2024, 1, 2, 5, 4, 5, tzinfo=UTC).astimezone(
        __import__("datetime").timezone(timedelta(hours=2))
    )
    assert run("X", {"X": [{"T": offset}]}, NOW).rows == [{"T": "2024-01-02T05:04:05.0000000Z"}]


def test_types_of_an_unknown_table_are_inferred_from_values() -> None:
    """Tables without a documented schema get types from their Python values."""
    result = q("Custom")
    assert result.schema == [
        ("Name", "String"),
        ("Score", "Double"),
        ("N", "Int64"),
        ("When", "DateTime"),
        ("Flag", "Boolean"),
        ("Bag", "Dynamic"),
        ("Span", "TimeSpan"),
    ]
    assert result.rows[0]["Bag"] == {"k": "v"}
    assert result.rows[0]["Span"] == "01:00:00"
    assert result.rows[1]["When"] == "2024-06-02T00:00:00.0000000Z"  # an ISO string is coerced
    assert result.rows[1]["Score"] is None


def test_comments_and_line_breaks_are_ignored() -> None:
    """// comments run to the end of the line; queries may span lines."""
    query = """// recent PowerShell
    DeviceProcessEvents // the table
    | where FileName == "powershell.exe" // filter
    | project ProcessId
    """
    assert [row["ProcessId"] for row in q(query).rows] == [1, 5]


def test_string_literals_single_double_escaped_and_verbatim() -> None:
    """Strings may use either quote, backslash escapes, or @'verbatim' form."""
    assert pids("DeviceProcessEvents | where FileName == 'cmd.exe'") == [2]
    assert pids('DeviceProcessEvents | where ProcessCommandLine contains "\\"whoami"') == [2]
    assert pids(
        "DeviceProcessEvents | where FolderPath startswith @'C:\\Windows\\System32\\cmd'"
    ) == [2]
    assert pids("DeviceProcessEvents | where FolderPath contains 'System32\\\\cmd'") == [2]


# ------------------------------------------------------------------------------------------
# where: comparisons and string operators


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        ("FileSize == 450000", [1, 5]),
        ("FileSize != 450000", [2, 3]),
        ("FileSize < 280000", [3]),
        ("FileSize <= 280000", [2, 3]),
        ("FileSize > 280000", [1, 5]),
        ("FileSize >= 280000", [1, 2, 5]),
        ("FileSize > 279999.5", [1, 2, 5]),
        ("ProcessId in (1, 3, 99)", [1, 3]),
        ("ProcessId !in (1, 3)", [2, 4, 5]),
    ],
)
def test_numeric_comparisons(predicate: str, expected: list[int]) -> None:
    """Numeric comparisons; a null FileSize satisfies neither == nor != (KQL null semantics)."""
    assert pids(f"DeviceProcessEvents | where {predicate}") == expected


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        ("FileName == 'powershell.exe'", [1, 5]),
        ("FileName == 'notepad.exe'", []),  # == is case-sensitive
        ("FileName =~ 'NOTEPAD.EXE'", [3]),
        ("FileName != 'powershell.exe'", [2, 3, 4]),
        ("FileName !~ 'POWERSHELL.EXE'", [2, 3, 4]),
        ("ProcessCommandLine contains '-ENC'", [1]),
        ("ProcessCommandLine !contains 'exe'", []),
        ("ProcessCommandLine contains_cs 'PowerShell'", [5]),
        ("ProcessCommandLine !contains_cs 'PowerShell'", [1, 2, 3, 4]),
        ("FileName startswith 'POWER'", [1, 5]),
        ("FileName !startswith 'power'", [2, 3, 4]),
        ("FileName startswith_cs 'Note'", [3]),
        ("FileName endswith '.EXE'", [1, 2, 3, 4, 5]),
        ("FileName !endswith 'shell.exe'", [2, 3, 4]),
        ("FileName endswith_cs 'Exe'", []),
        ("ProcessCommandLine has 'whoami'", [2]),
        ("ProcessCommandLine has 'who'", []),  # has matches whole terms only
        ("ProcessCommandLine has 'power'", []),
        ("ProcessCommandLine has 'powershell.exe'", [1, 5]),
        ("ProcessCommandLine has_cs 'PowerShell.exe'", [5]),
        ("ProcessCommandLine !has 'enc'", [2, 3, 4, 5]),
        ("FileName in ('cmd.exe', 'svchost.exe')", [2, 4]),
        ("FileName in ('CMD.EXE')", []),
        ("FileName in~ ('CMD.EXE', 'notepad.exe')", [2, 3]),
        ("FileName !in ('powershell.exe')", [2, 3, 4]),
        ("FileName !in~ ('POWERSHELL.EXE', 'cmd.exe')", [3, 4]),
        ("FolderPath == ''", [4, 5]),  # strings are never null: missing reads as ""
    ],
)
def test_string_operators(predicate: str, expected: list[int]) -> None:
    """String equality and the string operators, with their case rules."""
    assert pids(f"DeviceProcessEvents | where {predicate}") == expected


def test_and_binds_tighter_than_or() -> None:
    """`a or b and c` means `a or (b and c)`, as in KQL."""
    implicit = pids(
        "DeviceProcessEvents | where FileName == 'cmd.exe' or FileName == 'powershell.exe' "
        "and AccountName == 'meganb'"
    )
    explicit = pids(
        "DeviceProcessEvents | where FileName == 'cmd.exe' or (FileName == 'powershell.exe' "
        "and AccountName == 'meganb')"
    )
    grouped = pids(
        "DeviceProcessEvents | where (FileName == 'cmd.exe' or FileName == 'powershell.exe') "
        "and AccountName == 'meganb'"
    )
    assert implicit == explicit == [2, 5]
    assert grouped == [5]


def test_not_and_nested_parentheses() -> None:
    """not() negates a predicate; parentheses nest."""
    assert pids("DeviceProcessEvents | where not(FileName == 'powershell.exe')") == [2, 3, 4]
    assert pids(
        "DeviceProcessEvents | where not((AccountName == 'adelev' or AccountName == 'system'))"
    ) == [3, 5]


def test_null_comparisons_drop_the_row_and_isnull_finds_it() -> None:
    """A null number is neither > nor <=; isnull/isnotnull and isempty/isnotempty see it."""
    assert 4 not in pids("DeviceProcessEvents | where FileSize > 0")
    assert 4 not in pids("DeviceProcessEvents | where FileSize <= 0")
    assert 4 not in pids("DeviceProcessEvents | where not(FileSize > 0)")
    assert pids("DeviceProcessEvents | where isnull(FileSize)") == [4]
    assert pids("DeviceProcessEvents | where isnotnull(FileSize)") == [1, 2, 3, 5]
    assert pids("DeviceProcessEvents | where isempty(FolderPath)") == [4, 5]
    assert pids("DeviceProcessEvents | where isnotempty(FolderPath)") == [1, 2, 3]
    assert pids("DeviceProcessEvents | where isnull(FileSize) or FileSize > 400000") == [1, 4, 5]


def test_bool_column_as_predicate_and_in_comparison() -> None:
    """A bool column works alone or compared with true/false."""
    result = q("DeviceNetworkEvents | where IsInitiatingProcessRemoteSession | project ReportId")
    assert result.rows == [{"ReportId": 10}]
    result = q("DeviceNetworkEvents | where IsInitiatingProcessRemoteSession == false")
    assert [row["ReportId"] for row in result.rows] == [11]


# ------------------------------------------------------------------------------------------
# Time: ago(), now(), datetime()


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        ("Timestamp > ago(1d)", [1, 2]),
        ("Timestamp > ago(24h)", [1, 2]),
        ("Timestamp > ago(30m)", [1]),
        ("Timestamp > ago(1440m)", [1, 2]),
        ("Timestamp > ago(600s)", []),
        ("Timestamp > ago(600001ms)", [1]),
        ("Timestamp > ago(1.5h)", [1]),
        ("Timestamp > ago(3days)", [1, 2, 3]),
        ("Timestamp < ago(7d)", [4, 5]),
        ("Timestamp >= ago(10d) and Timestamp <= now()", [1, 2, 3, 4]),
        ("Timestamp < now(-15d)", [5]),
        ("Timestamp > ago(-1d)", []),
        ("Timestamp > datetime(2024-06-29)", [1, 2]),
        ("Timestamp > datetime(2024-06-30T11:30:00Z)", [1]),
        ("Timestamp < datetime(2024-06-20 12:00:00.5)", [4, 5]),
        ("Timestamp > datetime(2024-06-30T13:00:00+02:00)", [1]),
    ],
)
def test_time_predicates(predicate: str, expected: list[int]) -> None:
    """ago() and now() count from the given `now`; timespan units d, h, m, s, ms."""
    assert pids(f"DeviceProcessEvents | where {predicate}") == expected


def test_naive_now_and_naive_row_datetimes_are_treated_as_utc() -> None:
    """A naive `now` or a naive row datetime is UTC, not an error."""
    rows = [{"T": datetime(2024, 6, 30, 11, 0)}]  # noqa: DTZ001 - naive on purpose
    result = run("X | where T > ago(2h)", {"X": rows}, datetime(2024, 6, 30, 12, 0))  # noqa: DTZ001
    assert result.rows == [{"T": "2024-06-30T11:00:00.0000000Z"}]


# ------------------------------------------------------------------------------------------
# project, take/limit, order by, top


def test_project_selects_renames_and_keeps_types() -> None:
    """project keeps the listed columns in order, renames with `New = Old`, and keeps types."""
    result = q(
        "DeviceNetworkEvents | project Port = RemotePort, RemoteIP, Remote = "
        "IsInitiatingProcessRemoteSession, Timestamp"
    )
    assert result.schema == [
        ("Port", "Int32"),
        ("RemoteIP", "String"),
        ("Remote", "Boolean"),
        ("Timestamp", "DateTime"),
    ]
    assert result.rows[0] == {
        "Port": 443,
        "RemoteIP": "185.220.101.45",
        "Remote": True,
        "Timestamp": "2024-06-30T11:00:00.0000000Z",
    }


def test_later_operators_see_the_projected_columns_only() -> None:
    """After project, renamed columns are visible and dropped ones are unknown."""
    result = q("DeviceNetworkEvents | project Port = RemotePort | where Port == 80")
    assert result.rows == [{"Port": 80}]
    assert "unknown column 'RemoteIP'" in error_of(
        "DeviceNetworkEvents | project RemotePort | where RemoteIP == 'x'"
    )


@pytest.mark.parametrize("operator", ["take", "limit"])
def test_take_and_limit(operator: str) -> None:
    """take N / limit N keep the first N rows."""
    assert pids(f"DeviceProcessEvents | {operator} 2") == [1, 2]
    assert pids(f"DeviceProcessEvents | {operator} 0") == []
    assert pids(f"DeviceProcessEvents | {operator} 100") == [1, 2, 3, 4, 5]


def test_order_by_defaults_to_descending() -> None:
    """order by without a direction sorts descending, as in KQL."""
    assert pids("DeviceProcessEvents | order by Timestamp") == [1, 2, 3, 4, 5]
    assert pids("DeviceProcessEvents | order by Timestamp asc") == [5, 4, 3, 2, 1]
    assert pids("DeviceProcessEvents | sort by ProcessId desc") == [5, 4, 3, 2, 1]


def test_order_by_several_keys_and_nulls() -> None:
    """Several keys with their own directions; nulls last for desc, first for asc, or as asked."""
    assert pids("DeviceProcessEvents | order by FileSize desc, ProcessId asc") == [1, 5, 2, 3, 4]
    assert pids("DeviceProcessEvents | order by FileSize asc, ProcessId desc") == [4, 3, 2, 5, 1]
    assert pids("DeviceProcessEvents | order by FileSize desc nulls first, ProcessId") == [
        4,
        5,
        1,
        2,
        3,
    ]
    assert pids("DeviceProcessEvents | order by FileSize asc nulls last, ProcessId") == [
        3,
        2,
        5,
        1,
        4,
    ]
    assert pids("DeviceProcessEvents | order by DeviceName asc, Timestamp asc") == [
        4,
        2,
        1,
        5,
        3,
    ]


def test_top_sorts_then_takes() -> None:
    """top N by C [asc|desc] is a sort followed by take, descending by default."""
    assert pids("DeviceProcessEvents | top 2 by Timestamp") == [1, 2]
    assert pids("DeviceProcessEvents | top 2 by Timestamp asc") == [5, 4]


# ------------------------------------------------------------------------------------------
# summarize, distinct, count


def test_summarize_count_by_columns() -> None:
    """summarize count() by C gives one row per group, keys first, then count_ (Int64)."""
    result = q("DeviceProcessEvents | summarize count() by AccountName")
    assert result.schema == [("AccountName", "String"), ("count_", "Int64")]
    assert result.rows == [
        {"AccountName": "adelev", "count_": 2},
        {"AccountName": "meganb", "count_": 2},
        {"AccountName": "system", "count_": 1},
    ]


def test_summarize_named_count_by_two_keys_then_order() -> None:
    """A named count, two keys (one renamed), and ordering on the count."""
    result = q(
        "DeviceProcessEvents | summarize n = count() by FileName, Who = AccountName "
        "| order by n desc, FileName asc"
    )
    assert result.schema == [("FileName", "String"), ("Who", "String"), ("n", "Int64")]
    assert result.rows[0] == {"FileName": "Notepad.exe", "Who": "meganb", "n": 1}
    assert len(result.rows) == 5


def test_summarize_without_by_is_one_row_even_when_empty() -> None:
    """summarize count() without by returns a single row; zero rows in gives count 0."""
    assert q("DeviceProcessEvents | summarize count()").rows == [{"count_": 5}]
    assert q("DeviceProcessEvents | where FileName == 'nope' | summarize Total = count()").rows == [
        {"Total": 0}
    ]
    assert (
        q("DeviceProcessEvents | where FileName == 'nope' | summarize count() by FileName").rows
        == []
    )


def test_summarize_by_without_aggregation_and_distinct() -> None:
    """summarize by C and distinct C both list the distinct values."""
    expected = [{"DeviceName": "ws-001.contoso.com"}, {"DeviceName": "ws-002.contoso.com"},
                {"DeviceName": "srv-001.contoso.com"}]  # fmt: skip
    assert q("DeviceProcessEvents | summarize by DeviceName").rows == expected
    assert q("DeviceProcessEvents | distinct DeviceName").rows == expected
    assert q("DeviceProcessEvents | distinct DeviceName, AccountName").schema == [
        ("DeviceName", "String"),
        ("AccountName", "String"),
    ]


def test_summarize_by_bin_of_timestamp() -> None:
    """bin(Timestamp, 1d) groups by day and keeps the column name and type."""
    result = q("DeviceProcessEvents | summarize count() by bin(Timestamp, 1d) | order by Timestamp")
    assert result.schema == [("Timestamp", "DateTime"), ("count_", "Int64")]
    assert result.rows[0] == {"Timestamp": "2024-06-30T00:00:00.0000000Z", "count_": 2}
    assert len(result.rows) == 4
    sizes = q("DeviceProcessEvents | summarize count() by Size = bin(FileSize, 100000)")
    assert {row["Size"] for row in sizes.rows} == {400000, 200000, None}


def test_count_operator() -> None:
    """The count operator returns one Count column."""
    result = q("DeviceProcessEvents | where FileName endswith '.exe' | count")
    assert result.schema == [("Count", "Int64")]
    assert result.rows == [{"Count": 5}]


def test_dynamic_values_are_returned_as_json_and_searchable() -> None:
    """Dynamic columns come back as JSON values; has/contains search their text."""
    result = q(
        "IdentityLogonEvents | where AdditionalFields has 'krbtgt' | project AdditionalFields"
    )
    assert result.schema == [("AdditionalFields", "Dynamic")]
    assert result.rows == [{"AdditionalFields": {"Spns": "krbtgt/CONTOSO"}}]


# ------------------------------------------------------------------------------------------
# Row cap


def test_rows_are_capped_at_max_rows() -> None:
    """No more than max_rows rows come back; the documented default is 100,000."""
    assert DEFAULT_MAX_ROWS == 100_000
    assert len(q("DeviceProcessEvents", max_rows=3).rows) == 3
    many = {"Big": [{"N": i} for i in range(DEFAULT_MAX_ROWS + 5)]}
    assert len(run("Big", many, NOW).rows) == DEFAULT_MAX_ROWS
    assert run("Big | count", many, NOW, max_rows=1).rows == [{"Count": DEFAULT_MAX_ROWS + 5}]
    with pytest.raises(ValueError, match="max_rows"):
        q("DeviceProcessEvents", max_rows=-1)


# ------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "operator",
    ["join kind=inner (AlertInfo) on AlertId", "extend x = 1", "parse ProcessCommandLine with *",
     "union AlertInfo", "render timechart", "mv-expand AdditionalFields", "project-away FileName",
     "evaluate bag_unpack(x)", "lookup AlertInfo on AlertId", "make-series count() on Timestamp"],
)  # fmt: skip
def test_unsupported_operators_are_named_with_their_position(operator: str) -> None:
    """Operators outside the subset fail with their name, position and the supported list."""
    name = operator.split()[0]
    message = error_of(f"DeviceProcessEvents | {operator}")
    assert message.startswith(
        f"unsupported operator '{name}' at position 22; supported: where, project, take, limit, "
        "order by, sort by, top N by, summarize count() by, distinct, count"
    )


def test_unknown_and_miscased_operators() -> None:
    """Unknown operators are reported; KQL operator names are case-sensitive."""
    assert error_of("DeviceProcessEvents | frobnicate").startswith(
        "unknown operator 'frobnicate' at position 22; supported:"
    )
    assert "did you mean 'where'?" in error_of("DeviceProcessEvents | Where FileName == 'a'")


def test_let_and_other_statements_are_unsupported() -> None:
    """A query must start with a table: let, union and friends are refused up front."""
    assert error_of("let x = 1; DeviceProcessEvents").startswith(
        "unsupported statement 'let' at position 0"
    )
    assert error_of("union DeviceProcessEvents").startswith(
        "unsupported operator 'union' at position 0"
    )
    assert error_of("| take 1") == "a query must start with a table name, found '|' at position 0"
    assert error_of("   ").startswith("empty query")


def test_unknown_table_lists_the_available_ones() -> None:
    """An unknown table is named, with a case hint and the available tables."""
    message = error_of("deviceprocessevents | take 1")
    assert message == (
        "unknown table 'deviceprocessevents' (names are case-sensitive: did you mean "
        "'DeviceProcessEvents'?) at position 0; available tables: Custom, DeviceNetworkEvents, "
        "DeviceProcessEvents, IdentityLogonEvents"
    )
    assert error_of("AlertInfo").startswith("unknown table 'AlertInfo' at position 0")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("DeviceProcessEvents | where FileNam == 'a'",
         "unknown column 'FileNam' (did you mean 'FileName'?) at position 28"),
        ("DeviceProcessEvents | where filename == 'a'",
         "unknown column 'filename' (names are case-sensitive: did you mean 'FileName'?) at "
         "position 28"),
        ("DeviceProcessEvents | project Nope", "unknown column 'Nope' at position 30"),
        ("DeviceProcessEvents | order by Nope", "unknown column 'Nope' at position 31"),
        ("DeviceProcessEvents | summarize count() by Nope", "unknown column 'Nope' at position 43"),
        ("DeviceProcessEvents | distinct Nope", "unknown column 'Nope' at position 31"),
    ],
)  # fmt: skip
def test_unknown_columns_are_errors(query: str, expected: str) -> None:
    """Every operator refuses unknown (or miscased) columns, with a suggestion when close."""
    assert error_of(query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("DeviceProcessEvents | where strlen(FileName) > 3",
         "unsupported function 'strlen' at position 28; supported functions: ago(), now(), "
         "datetime(), not(), isempty(), isnotempty(), isnull(), isnotnull()"),
        ("DeviceProcessEvents | where Timestamp > ago(7)",
         "ago() needs a timespan literal such as 7d, 12h, 30m, 10s or 100ms at position 44"),
        ("DeviceProcessEvents | where Timestamp > ago()",
         "ago() takes one timespan argument, e.g. ago(7d) at position 40"),
        ("DeviceProcessEvents | where Timestamp > ago(7w)",
         "unknown timespan unit 'w' in '7w' at position 44; supported units: d, h, m, s, ms"),
        ("DeviceProcessEvents | where Timestamp > datetime(yesterday)",
         "invalid datetime literal 'datetime(yesterday)' at position 40; use ISO-8601 such as "
         "datetime(2024-01-31) or datetime(2024-01-31T08:30:00Z)"),
        ("DeviceProcessEvents | where FileSize == '1'",
         "cannot compare values of types long and string with '==' at position 37"),
        ("DeviceProcessEvents | where Timestamp > '2024-01-01'",
         "cannot compare values of types datetime and string with '>' at position 38"),
        ("DeviceProcessEvents | where FileName > 'a'",
         "'>' is not supported for string values at position 37; use ==, !=, =~ or string "
         "operators"),
        ("DeviceProcessEvents | where FileSize =~ 'a'",
         "'=~' compares strings only, got long and string at position 37"),
        ("DeviceProcessEvents | where FileName", "'where' needs a boolean predicate, got a string "
         "expression at position 28"),
        ("DeviceProcessEvents | where FileName == 'a' and FileSize",
         "'and' needs boolean operands, got a long expression at position 48"),
        ("DeviceProcessEvents | where not FileName == 'a'",
         "'not' is a function in KQL at position 28; write not(<predicate>)"),
        ("DeviceProcessEvents | summarize FileName",
         "expected an aggregation such as count(), found 'FileName' at position 32"),
        ("DeviceProcessEvents | where FileName = 'a'",
         "'=' is not a comparison at position 37; use '==' (or '=~' to ignore case)"),
        ("DeviceProcessEvents | where FileSize + 1 > 2",
         "arithmetic operator '+' is not supported at position 37; compare columns with "
         "literals, e.g. Timestamp > ago(1d)"),
        ("DeviceProcessEvents | where FileName == 'a' 'b'",
         "unexpected ''b'' at position 44; expected '|' or end of query"),
        ("DeviceProcessEvents | where FileName has_any ('a')",
         "unsupported operator 'has_any' at position 37; supported in 'where': ==, !=, <, <=, "
         ">, >=, =~, !~, contains, startswith, endswith, has (each also with _cs and with !), "
         "in, !in, in~, !in~, and, or, not()"),
        ("DeviceProcessEvents | where FileName in (FolderPath)",
         "'in (...)' accepts literal values only at position 41"),
        ("DeviceProcessEvents | where ProcessId in ('1')",
         "'in' list item of type string does not match the long on the left at position 42"),
        ("DeviceProcessEvents | where FileName == 'a",
         "unterminated string literal at position 40"),
        ("DeviceProcessEvents | where FileName == 'a' | take", "'take' needs a non-negative whole "
         "number, found end of query at position 50"),
        ("DeviceProcessEvents | take -1", "'take' needs a non-negative whole number, found '-' at "
         "position 27"),
        ("DeviceProcessEvents | take 1.5", "'take' needs a non-negative whole number, found '1.5' "
         "at position 27"),
        ("DeviceProcessEvents |", "expected an operator after '|', found end of query at "
         "position 21"),
        ("DeviceProcessEvents | where", "'where' needs a predicate at position 27"),
        ("DeviceProcessEvents | where FileName == $x", "unexpected character '$' at position 40"),
        ("DeviceProcessEvents | order Timestamp", "expected 'by' after 'order', found "
         "'Timestamp' at position 28"),
        ("DeviceProcessEvents | top 3 by Timestamp, FileName", "'top' sorts by one column only "
         "at position 40"),
        ("DeviceProcessEvents | summarize dcount(DeviceId) by FileName",
         "unsupported aggregation function 'dcount' at position 32; 'summarize' supports "
         "count() only"),
        ("DeviceProcessEvents | summarize count(FileName)", "count() takes no arguments at "
         "position 38"),
        ("DeviceProcessEvents | summarize", "expected an aggregation such as count() or 'by', "
         "found end of query at position 31"),
        ("IdentityLogonEvents | summarize count() by AdditionalFields",
         "cannot group by dynamic column 'AdditionalFields' at position 43"),
        ("IdentityLogonEvents | order by AdditionalFields",
         "cannot sort by dynamic column 'AdditionalFields' at position 31"),
        ("IdentityLogonEvents | where AdditionalFields == 'x'",
         "cannot compare values of types dynamic and string with '==' at position 45"),
        ("IdentityLogonEvents | where AdditionalFields.Spns == 'x'",
         "property access 'AdditionalFields.…' is not supported at position 44; dynamic values "
         "can be searched with has/contains"),
        ("DeviceProcessEvents | project Size = FileSize * 2",
         "'project' supports columns and renames (NewName = Column) only at position 46; "
         "unexpected '*'"),
        ("DeviceProcessEvents | project Name = tolower(FileName)",
         "'project' supports columns and renames (NewName = Column) only at position 37; "
         "computed columns are not supported"),
        ("DeviceProcessEvents | project FileName, FileName",
         "duplicate column name 'FileName' in 'project' at position 40"),
        ("DeviceProcessEvents | summarize count() by bin(FileName, 1d)",
         "bin() of a string column by a timespan is not supported at position 47; use a "
         "positive timespan for a datetime column or a positive number for a numeric column"),
    ],
)  # fmt: skip
def test_error_messages_are_precise(query: str, expected: str) -> None:
    """Each error says what was wrong and where."""
    assert error_of(query) == expected


def test_error_positions_include_line_and_column_in_multiline_queries() -> None:
    """In a multi-line query, errors also give the line and column."""
    message = error_of("DeviceProcessEvents\n| where Timestamp > ago(1d)\n| join AlertInfo on X")
    assert message.startswith("unsupported operator 'join' at position 50 (line 3, column 3);")


def test_error_positions_point_at_the_offending_text() -> None:
    """The reported position is the offset of the offending token in the query."""
    query = "DeviceProcessEvents | where FileName == 'a' | extend y = 1"
    position = int(re.search(r"at position (\d+)", error_of(query)).group(1))  # type: ignore[union-attr]
    assert query[position:].startswith("extend")
