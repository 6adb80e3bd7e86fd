"""Large usage answers kept on local disk and parsed record by record, never whole in memory.

A month of zone-level usage can be a JSON document of hundreds of megabytes. Parsed at once with
``json.loads`` it becomes four to five times its size in Python objects. Writing it to a file needs no such
thing: the hook spools the body to a local temporary file as it arrives, checks the envelope in one
streaming pass, and hands over :class:`SpooledRecords`, which parses the ``result`` array afresh, one
record at a time, each time it is iterated (ijson's C backend; about as fast as ``json.loads``).

Records come out exactly as :meth:`CloudflareBillingHook.get_paygo_usage` would return them: the API's
keys in the API's order, JSON integers as ``int`` and other JSON numbers as exact ``Decimal``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from airflow_provider_cfbilling.exceptions import CloudflareResponseError


@dataclass
class SpooledEnvelope:
    """What one streaming pass learns of a Cloudflare envelope, without building its ``result``."""

    success: Any = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    result_kind: str = "missing"  # "array", "null", "object", "string", "number", "boolean" or "missing"
    records: int = 0
    non_object_records: int = 0


def scan_envelope(fileobj: IO[bytes]) -> SpooledEnvelope:
    """Read a spooled answer once: ``success``, ``errors``, the type of ``result`` and its record count.

    :raises CloudflareResponseError: the body is not one complete JSON object (an HTML page, a truncated
        body)
    """
    import ijson

    envelope = SpooledEnvelope()
    errors_builder: Any = None
    fileobj.seek(0)
    try:
        for prefix, event, value in ijson.parse(fileobj):
            if prefix == "result":
                if event in _KIND_OF_EVENT:
                    envelope.result_kind = _KIND_OF_EVENT[event]
            elif prefix == "result.item":
                if event == "start_map":
                    envelope.records += 1
                elif event in _KIND_OF_EVENT:  # an array, a string, a number... where a record belongs
                    envelope.non_object_records += 1
            elif prefix == "success" and event not in ("start_map", "start_array"):
                envelope.success = value
            elif prefix == "errors" or prefix.startswith("errors."):
                if errors_builder is None:
                    errors_builder = ijson.ObjectBuilder()
                errors_builder.event(event, value)
        fileobj.seek(0)
    except ijson.JSONError as exc:
        raise CloudflareResponseError(
            f"Cloudflare's answer is not a complete JSON document ({str(exc).splitlines()[0]}): a proxy page or a "
            "cut-off body. "
            "Nothing was used; retry later."
        ) from None
    if errors_builder is not None and isinstance(errors_builder.value, list):
        envelope.errors = [e for e in errors_builder.value if isinstance(e, dict)]
    return envelope


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

    Iterable any number of times (each iteration reads the file through its own handle) and sized, so the
    operator's checks and writers make their passes over it as over a list, while memory holds one record
    at a time. Close it (or use it as a context manager) to delete the spool file.

    :param path: the spooled body (deleted on close)
    :param count: the number of records, from :func:`scan_envelope`
    """

    def __init__(self, path: str, count: int) -> None:
        self.path = path
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import ijson

        with open(self.path, "rb") as body:
            # Without use_float ijson reads a number with a fraction or exponent from its text as a Decimal (a
            # cost keeps every digit the API sent) and an integer as an unbounded int (no overflow past 2**63).
            yield from ijson.items(body, "result.item")

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> SpooledRecords:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class FilteredRecords:
    """A re-iterable, sized view of the records a predicate keeps (e.g. the rows inside a window).

    :param records: any re-iterable source of records (a list, :class:`SpooledRecords`)
    :param keep: the predicate
    """

    def __init__(self, records: Iterable[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]) -> None:
        self._records = records
        self._keep = keep
        self._count: int | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (record for record in self._records if self._keep(record))

    def __len__(self) -> int:
        if self._count is None:
            self._count = sum(1 for _ in self)
        return self._count
