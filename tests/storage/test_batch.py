"""The incident table's transactions, encoded by ``shared.storage.batch``, against Azurite: the
fast path is the one used, rows read back exactly as the SDK's own transaction writes them, and
refusals on a row's condition are told apart from other failures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.azurite import Azurite
from shared.core.errors import StorageError
from shared.storage import batch

T0 = datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=UTC)


class NoSdkTransactions(TableClient):
    """The real TableClient, refusing the SDK's own (slow) transaction path."""

    def submit_transaction(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the SDK's submit_transaction was used")


@pytest.fixture
def tables(azurite: Azurite) -> Iterator[tuple[TableClient, TableClient]]:
    name = f"b{uuid.uuid4().hex}"
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    service.create_table(name)
    fast = NoSdkTransactions.from_connection_string(azurite.connection_string, name)
    yield fast, service.get_table_client(name)
    service.delete_table(name)


def entity(row: str, **extra: Any) -> dict[str, Any]:
    return {
        "PartitionKey": "tenant-'quoted'",
        "RowKey": row,
        "Title": "é & ünïcode / 'quotes'",
        "Count": 7,
        "Score": -1,
        "When": T0,
        **extra,
    }


def test_rows_read_back_as_the_sdk_writes_them(tables: tuple[TableClient, TableClient]) -> None:
    fast, sdk = tables
    etags = batch.submit(fast, [("create", entity("1"), None), ("create", entity("2"), None)])
    assert len(etags) == 2 and all(etags)
    sdk.submit_transaction([("create", entity("3"))])
    ours, theirs = sdk.get_entity("tenant-'quoted'", "1"), sdk.get_entity("tenant-'quoted'", "3")
    assert {k: (v, type(v)) for k, v in ours.items() if k != "RowKey"} == {
        k: (v, type(v)) for k, v in theirs.items() if k != "RowKey"
    }
    assert ours["When"] == T0
    assert ours.metadata["etag"] == etags[0]

    # a conditional replace with the row's ETag, then a refused one with the stale ETag
    new = batch.submit(fast, [("update", entity("1", Count=8), etags[0])])
    assert sdk.get_entity("tenant-'quoted'", "1")["Count"] == 8
    with pytest.raises(batch.Refused) as stale:
        batch.submit(fast, [("update", entity("1", Count=9), etags[0])])
    assert stale.value.status == 412
    assert sdk.get_entity("tenant-'quoted'", "1").metadata["etag"] == new[0]


def test_a_refused_transaction_writes_nothing(tables: tuple[TableClient, TableClient]) -> None:
    fast, sdk = tables
    batch.submit(fast, [("create", entity("1"), None)])
    with pytest.raises(batch.Refused) as exists:
        batch.submit(fast, [("create", entity("2"), None), ("create", entity("1"), None)])
    assert exists.value.status == 409
    assert [e["RowKey"] for e in sdk.list_entities()] == ["1"]


def test_a_malformed_entity_is_a_storage_error_not_a_refusal(
    tables: tuple[TableClient, TableClient],
) -> None:
    fast, _ = tables
    with pytest.raises((StorageError, ValueError)):
        batch.submit(fast, [("create", entity("1", Huge=2**40), None)])
    with pytest.raises(StorageError):
        batch.submit(fast, [("create", {"PartitionKey": "p", "RowKey": "bad/key"}, None)])


class SdkOnly:
    """A table that offers only the SDK's ``submit_transaction`` (no pipeline to send a
    hand-encoded batch on): ``submit`` falls back to the SDK's own path."""

    def __init__(self, table: TableClient) -> None:
        self.submit_transaction = table.submit_transaction


def test_the_sdk_path_refuses_only_on_a_rows_condition(
    tables: tuple[TableClient, TableClient],
) -> None:
    _, sdk = tables
    fallback = SdkOnly(sdk)
    etags = batch.submit(fallback, [("create", entity("1"), None)])
    assert len(etags) == 1 and all(etags)
    with pytest.raises(batch.Refused) as exists:
        batch.submit(fallback, [("create", entity("1"), None)])
    assert exists.value.status == 409
    # a request the service cannot take is a failure, not "a row changed": deciding it again
    # from fresh reads would only repeat it
    with pytest.raises(StorageError):
        batch.submit(fallback, [("create", {"PartitionKey": "p", "RowKey": "bad/key"}, None)])


def test_an_update_without_the_rows_etag_is_refused_before_it_is_sent() -> None:
    """A replace without an ETag would be unconditional and could move a row back in time."""
    for etag in (None, ""):
        with pytest.raises(ValueError, match="ETag"):
            batch.encode("https://t", "T", [("update", entity("1"), etag)])


def test_decode_reads_each_operation_and_refuses_what_is_not_a_batch_answer() -> None:
    body = (
        b"--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n"
        b"\r\n--changesetresponse_2\r\nContent-Type: application/http\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 204 No Content\r\n"
        b"ETag: W/\"datetime'1'\"\r\n\r\n\r\n--changesetresponse_2\r\n"
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\nETag: W/\"datetime'2'\"\r\n\r\n\r\n"
        b"--changesetresponse_2--\r\n--batchresponse_1--\r\n"
    )
    answers = batch.decode("multipart/mixed; boundary=batchresponse_1", body)
    assert [(s, h["etag"]) for s, h, _ in answers] == [
        (204, "W/\"datetime'1'\""),
        (204, "W/\"datetime'2'\""),
    ]
    with pytest.raises(StorageError):
        batch.decode("application/json", b"{}")
    with pytest.raises(StorageError):
        batch.decode("multipart/mixed; boundary=x", b"--x\r\n\r\nnot http\r\n--x--")


def _edm_reference(entity: dict[str, Any]) -> dict[str, Any]:
    """``batch.edm`` as plainly stated: one isinstance chain, every time through strftime."""
    out: dict[str, Any] = {}
    for name, value in entity.items():
        if value is None:
            continue
        if isinstance(value, bool | str | float):
            out[name] = value
        elif isinstance(value, int):
            if not -(2**31) <= value < 2**31:
                raise ValueError(name)
            out[name] = value
        elif isinstance(value, datetime):
            out[name] = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            out[f"{name}@odata.type"] = "Edm.DateTime"
        else:
            raise ValueError(name)
    return out


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=5),
    st.floats(allow_nan=False),
    st.integers(-(2**32), 2**32),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=5))])),
    st.datetimes(min_value=datetime(1, 1, 2), timezones=st.just(UTC)),  # noqa: DTZ001 - naive bound, as hypothesis takes it
    st.binary(max_size=2),
)


@given(st.dictionaries(st.sampled_from(["A", "B", "C", "Time"]), _VALUES))
@settings(max_examples=2000, derandomize=True)
def test_the_exact_type_paths_write_what_the_plain_definition_writes(
    entity: dict[str, Any],
) -> None:
    try:
        expected: Any = _edm_reference(entity)
    except ValueError:
        expected = ValueError
    try:
        got: Any = batch.edm(entity)
    except ValueError:
        got = ValueError
    assert got == expected
    if got is not ValueError:
        assert list(got) == list(expected)  # the same order of properties
