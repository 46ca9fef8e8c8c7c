"""Entity-group transactions of the incident table, encoded here and sent through the SDK.

Why: profiling a backfill, ``TableClient.submit_transaction`` was a quarter to two fifths of
the ingest process's CPU, most of it azure-core building the ``$batch`` body with the standard
library's ``email`` package (after running each sub-request's policies on a thread pool it
starts per transaction) and parsing the answer with it again: 20-30 ms of CPU per 50-row
transaction, in our process, wherever the storage is. The body is a documented format
(https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions):
a ``multipart/mixed`` batch holding one changeset of ``application/http`` sub-requests, each an
Insert Entity or an Update Entity with ``If-Match``; the answer is the same shape, with one
status line (and ``ETag``) per operation, or one failed operation's status if the service
refused the changeset (it is atomic). Encoding it here costs well under a millisecond.

The request still goes through the SDK's own pipeline (``TableClient._client.send_request``:
authentication, ``x-ms-version``, retries, logging), so credentials, clouds and retries stay the
SDK's. That reaches one private attribute of ``TableClient``; when it is missing (another SDK
version, or a test double) ``submit`` falls back to ``submit_transaction``, and a test asserts
the fast path is the one used against Azurite.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from azure.core.exceptions import AzureError
from azure.core.rest import HttpRequest
from azure.data.tables import TableTransactionError

from shared.core.errors import StorageError

_INT32 = 2**31


class Refused(Exception):  # noqa: N818 - a refusal, raised and caught inside the storage wing
    """The service refused the changeset on an operation's condition (409 the row exists,
    412 its ETag changed, 404 it is gone): nothing in the transaction was written."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message[:200]}")
        self.status = status


def edm(entity: Mapping[str, Any]) -> dict[str, Any]:
    """An entity as the Table service's JSON, the way the SDK writes it (so the SDK reads the
    same types back): strings, booleans, doubles, 32-bit integers, ``Edm.DateTime`` annotated.

    Raises:
        ValueError: a value of another type, or an integer beyond 32 bits (as the SDK).
    """
    out: dict[str, Any] = {}
    for name, value in entity.items():
        kind = type(value)
        # exact types first: every row of a backfill passes here (tests/storage/test_batch.py
        # compares with the plain isinstance chain)
        if kind is str or kind is float or kind is bool:
            out[name] = value
        elif kind is datetime and value.tzinfo is UTC and value.year >= 1000:
            out[name] = value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
            out[f"{name}@odata.type"] = "Edm.DateTime"
        elif value is None:
            continue
        elif isinstance(value, bool | str | float):
            out[name] = value
        elif isinstance(value, int):
            if not -_INT32 <= value < _INT32:  # as the SDK: a plain int is an Edm.Int32
                raise ValueError(f"{name}: {value} does not fit a 32-bit table property")
            out[name] = value
        elif isinstance(value, datetime):
            out[name] = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            out[f"{name}@odata.type"] = "Edm.DateTime"
        else:
            raise ValueError(f"{name}: a {type(value).__name__} is not a table property here")
    return out


def _key(value: str) -> str:
    # OData key literal: quotes doubled, then percent-encoded as a path segment
    return quote(value.replace("'", "''"), safe="")


def encode(
    base_url: str, table: str, operations: Sequence[tuple[str, Mapping[str, Any], str | None]]
) -> tuple[str, bytes]:
    """The ``$batch`` request body of ``(kind, entity, etag)`` operations, ``kind`` being
    ``"create"`` or ``"update"`` (replace, with ``If-Match: etag``). Returns (content type,
    body). Pure."""
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    parts = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode()]
    for index, (kind, entity, etag) in enumerate(operations):
        body = orjson.dumps(edm(entity))
        if kind == "create":
            line = f"POST {base_url}/{table} HTTP/1.1\r\nPrefer: return-no-content\r\n"
        elif kind == "update":
            if not etag:
                # without the row's ETag the replace would be unconditional ("*") and could move
                # a row back in time over another writer's newer version
                raise ValueError("an update needs the row's ETag")
            where = (
                f"PartitionKey='{_key(entity['PartitionKey'])}',RowKey='{_key(entity['RowKey'])}'"
            )
            line = f"PUT {base_url}/{table}({where}) HTTP/1.1\r\nIf-Match: {etag}\r\n"
        else:
            raise ValueError(f"unknown operation {kind!r}")
        parts.append(
            (
                f"--{changeset}\r\nContent-Type: application/http\r\n"
                f"Content-Transfer-Encoding: binary\r\nContent-ID: {index + 1}\r\n\r\n{line}"
                "Content-Type: application/json\r\nAccept: application/json;odata=minimalmetadata"
                f"\r\nDataServiceVersion: 3.0\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
            + b"\r\n"
        )
    parts.append(f"--{changeset}--\r\n\r\n--{batch}--\r\n".encode())
    return f"multipart/mixed; boundary={batch}", b"".join(parts)


def _boundary(content_type: str) -> str:
    for piece in content_type.split(";"):
        name, _, value = piece.strip().partition("=")
        if name.lower() == "boundary":
            return value.strip('"')
    raise StorageError("the table service's transaction answer has no multipart boundary")


def decode(content_type: str, body: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The operations' answers in a ``$batch`` response: (status, headers, body) each. Pure.

    Raises:
        StorageError: the answer is not a multipart batch response.
    """
    outer = _boundary(content_type).encode()
    answers: list[tuple[int, dict[str, str], bytes]] = []
    for section in body.split(b"--" + outer)[1:]:
        if section.startswith(b"--"):
            break
        head, _, rest = section.partition(b"\r\n\r\n")
        headers = _headers(head)
        if "multipart/mixed" in headers.get("content-type", ""):
            inner = _boundary(headers["content-type"]).encode()
            chunks = [c for c in rest.split(b"--" + inner)[1:] if not c.startswith(b"--")]
        else:
            chunks = [section]
        for chunk in chunks:
            _, _, http = chunk.partition(b"\r\n\r\n")  # past the part's own MIME headers
            status_line, _, after = http.partition(b"\r\n")
            fields = status_line.split(b" ", 2)
            if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
                raise StorageError("the table service's transaction answer is malformed")
            part_head, _, part_body = after.partition(b"\r\n\r\n")
            answers.append((int(fields[1]), _headers(part_head), part_body.strip()))
    if not answers:
        raise StorageError("the table service's transaction answer holds no operation")
    return answers


def _headers(block: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in block.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = raw.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def submit(table: Any, operations: Sequence[tuple[str, dict[str, Any], str | None]]) -> list[str]:
    """Send one transaction of ``(kind, entity, etag)``; the rows' new ETags, in order.

    Raises:
        Refused: the service refused it on a row's condition; nothing was written.
        StorageError: it failed otherwise.
    """
    pipeline = getattr(getattr(table, "_client", None), "send_request", None)
    url = getattr(table, "url", None)
    name = getattr(table, "table_name", None)
    if not callable(pipeline) or not isinstance(url, str) or not isinstance(name, str):
        return _submit_sdk(table, operations)
    content_type, body = encode(url.rstrip("/"), name, operations)
    request = HttpRequest(
        "POST",
        f"{url.rstrip('/')}/$batch",
        headers={
            "Content-Type": content_type,
            "Accept": "application/json",
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
        },
        content=body,
    )
    try:
        response = pipeline(request, stream=True)  # the SDK would decode a JSON answer
        answer = response.read()
    except AzureError as exc:
        raise StorageError(f"could not write incident rows: {type(exc).__name__}") from exc
    if response.status_code != 202:
        raise StorageError(f"could not write incident rows: HTTP {response.status_code}")
    answers = decode(response.headers.get("Content-Type", ""), answer)
    for status, _, text in answers:
        if status in (404, 409, 412):
            raise Refused(status, text.decode("utf-8", "replace"))
        if not 200 <= status < 300:
            raise StorageError(f"could not write incident rows: HTTP {status} in the transaction")
    if len(answers) != len(operations):
        raise StorageError(
            f"the table service answered {len(answers)} of {len(operations)} operations"
        )
    return _etags([headers.get("etag", "") for _, headers, _ in answers])


def _etags(etags: list[str]) -> list[str]:
    """The rows' new ETags; each written row must have one, since its next update is
    conditional on it (Insert Entity and Update Entity both answer an ``ETag`` header:
    https://learn.microsoft.com/rest/api/storageservices/insert-entity)."""
    if not all(etags):
        raise StorageError("the table service answered a written row without its ETag")
    return etags


def _submit_sdk(
    table: Any, operations: Sequence[tuple[str, dict[str, Any], str | None]]
) -> list[str]:
    """The SDK's own ``submit_transaction`` (slower; see the module docstring)."""
    from azure.core import MatchConditions
    from azure.data.tables import UpdateMode

    ops: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for kind, entity, etag in operations:
        if kind == "create":
            ops.append(("create", entity, {}))
        else:
            options = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
            ops.append(("update", entity, {"mode": UpdateMode.REPLACE, **options}))
    try:
        results = table.submit_transaction(ops)
    except TableTransactionError as exc:
        # the SDK raises this for any failed operation: only a row's condition is a refusal
        # to decide again from fresh reads, anything else (400, 413) is a failure
        if exc.status_code in (404, 409, 412):
            raise Refused(exc.status_code, str(exc.message or "")) from exc
        raise StorageError(
            f"could not write incident rows: HTTP {exc.status_code} in the transaction"
        ) from exc
    except AzureError as exc:
        raise StorageError(f"could not write incident rows: {type(exc).__name__}") from exc
    return _etags([str((r.get("etag") if isinstance(r, Mapping) else None) or "") for r in results])
