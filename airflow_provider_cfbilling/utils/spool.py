"""Large usage answers kept on local disk and parsed record by record, never whole in memory.

A month of zone-level usage can be a JSON document of hundreds of megabytes. Parsed at once with
``json.loads`` it becomes four to five times its size in Python objects. Writing it to a file needs no such
thing: the hook spools the body to a local temporary file as it arrives, checks the envelope's ``success``
and the type of its ``result`` (:func:`scan_head`, which reads no more than that takes), and hands over
:class:`SpooledRecords`, which parses the ``result`` array afresh, one record at a time, each time it is
iterated (ijson's C backend; about as fast as ``json.loads``), checking as it goes that each item is a
record and that the document is complete.

Records come out exactly as :meth:`CloudflareBillingHook.get_paygo_usage` would return them: the API's
keys in the API's order, JSON integers as ``int`` and other JSON numbers as exact ``Decimal``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any

from airflow_provider_cfbilling.exceptions import CloudflareResponseError


@dataclass
class SpooledEnvelope:
    """What one streaming pass learns of a Cloudflare envelope, without building its ``result``."""

    success: Any = None
    errors: list[dict[str, Any]] = field(default_factory=list)  # read by scan_envelope only
    result_kind: str = "missing"  # read by scan_head only: "array", "null", "object", ... or "missing"


def scan_envelope(fileobj: IO[bytes]) -> SpooledEnvelope:
    """Read a spooled failure answer whole, for its ``success`` and ``errors`` (the message of the error).

    :raises CloudflareResponseError: the body is not one complete JSON object (an HTML page, a truncated
        body)
    """
    import ijson

    envelope = SpooledEnvelope()
    errors_builder: Any = None
    fileobj.seek(0)
    try:
        for prefix, event, value in ijson.parse(fileobj):
            if prefix == "success":
                envelope.success = value  # a container's last event (its end) leaves None: not a flag
            elif prefix == "errors" or prefix.startswith("errors."):
                if errors_builder is None:
                    errors_builder = ijson.ObjectBuilder()
                errors_builder.event(event, value)
    except ijson.JSONError as exc:
        raise _not_complete(exc) from None
    if errors_builder is not None and isinstance(errors_builder.value, list):
        envelope.errors = [e for e in errors_builder.value if isinstance(e, dict)]
    return envelope


def scan_head(fileobj: IO[bytes]) -> SpooledEnvelope:
    """Read only as much of a spooled answer as it takes to learn ``success`` and the type of ``result``.

    When ``success`` comes first (or ``result`` is not an array) that is the head of the file; when a
    large ``result`` array comes first, ``success`` is found by ijson's C parser, which builds nothing on
    the way. The records themselves, their count and the completeness of the document are checked by
    the pass that reads them (:class:`SpooledRecords`). For the ``errors`` of a failure, use
    :func:`scan_envelope`.

    :raises CloudflareResponseError: the head is not JSON (an HTML page)
    """
    import ijson

    envelope = SpooledEnvelope()
    success_seen = False
    fileobj.seek(0)
    try:
        for prefix, event, value in ijson.parse(fileobj):
            if prefix == "result" and event in _KIND_OF_EVENT:
                envelope.result_kind = _KIND_OF_EVENT[event]
                if success_seen or event == "start_array":
                    break
            elif prefix == "success" and event not in ("start_map", "start_array"):
                envelope.success, success_seen = value, True
                if envelope.result_kind != "missing":
                    break
        if envelope.result_kind == "array" and not success_seen:
            fileobj.seek(0)
            envelope.success = next(ijson.items(fileobj, "success"), None)
    except ijson.JSONError as exc:
        raise _not_complete(exc) from None
    return envelope


def _not_complete(exc: Exception) -> CloudflareResponseError:
    return CloudflareResponseError(
        f"Cloudflare's answer is not a complete JSON document ({str(exc).splitlines()[0]}): a proxy page or a "
        "cut-off body. Nothing was used; retry later."
    )


# The events that open a JSON value, and the kind of value they open.
_KIND_OF_EVENT = {
    "start_array": "array",
    "start_map": "object",
    "null": "null",
    "string": "string",
    "number": "number",
    "boolean": "boolean",
}


class SpooledRecords:
    """The records of one usage answer, spooled in a local file; each iteration parses them afresh.

    Iterable any number of times (each iteration reads the file through its own handle) and sized, while
    memory holds one record at a time. Each iteration also checks what the envelope scan left to it: that
    every item of ``result`` is a record, and that the document is complete. Close it (or use it as a
    context manager) to delete the spool file.

    :param path: the spooled body (deleted on close)
    :param count: the number of records, if known; else counted by the first complete iteration (or by
        ``len``, which then makes a pass of its own)
    :param not_a_record: builds the error for an item of ``result`` that is not an object, from the JSON
        name of its type
    """

    def __init__(
        self, path: str, count: int | None = None, not_a_record: Callable[[str], Exception] | None = None
    ) -> None:
        self.path = path
        self._count = count
        self._not_a_record = not_a_record or _not_a_record

    def __len__(self) -> int:
        if self._count is None:
            for _ in self:
                pass
        assert self._count is not None
        return self._count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import ijson

        count = 0
        with open(self.path, "rb") as body:
            try:
                # Without use_float ijson reads a number with a fraction or exponent from its text as a Decimal
                # (a cost keeps every digit the API sent) and an integer as an unbounded int (no overflow past
                # 2**63).
                for record in ijson.items(body, "result.item"):
                    if record.__class__ is not dict:
                        raise self._not_a_record(_json_kind(record))
                    count += 1
                    yield record
            except ijson.JSONError as exc:
                raise _not_complete(exc) from None
        self._count = count

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> SpooledRecords:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _not_a_record(kind: str) -> CloudflareResponseError:
    return CloudflareResponseError(f"Cloudflare's usage answer holds a {kind} where a record belongs.")


def _json_kind(value: Any) -> str:
    """The JSON name of a parsed value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "number" if isinstance(value, (int, Decimal)) else type(value).__name__
