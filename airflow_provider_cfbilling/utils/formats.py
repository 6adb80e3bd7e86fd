"""File formats for usage records: JSON Lines, JSON, CSV and Parquet.

One module owns everything about how records become bytes, so every format agrees on:

* **Column names**: the API's own (FOCUS) names, never renamed. A FOCUS dataset (``utils.focus``) is the one
  source that declares its columns and their types (``column_types``): its columns, order and kinds are
  written as declared.
* **Column order** (:func:`column_order`): the 11 columns Cloudflare documents as required, in that order, then
  the known FOCUS 1.3 columns that occur in the data (alphabetical), then any unknown columns that occur in the
  data, sorted by name. The order depends on the set of columns only, never on the order of the rows or
  of the keys inside a row, so the same data always gives the same bytes. Unknown columns are kept:
  dropping a column Cloudflare adds tomorrow would lose data silently.
* **Values**: JSONL and JSON write each record's values exactly as parsed from the API (keys re-ordered,
  none added or dropped; numbers in plain decimal form, see :func:`json_text`). CSV writes each value as
  its JSON text (``null`` as an empty field, ``true``/``false``, numbers as the API wrote them, objects
  as compact JSON); strings as they are. Parquet has an explicit schema: UTC timestamps
  (``timestamp("ms", tz="UTC")``, Parquet's ``TIMESTAMP(MILLIS)`` adjusted to UTC) for the date-times,
  ``decimal128(38, 18)`` for costs and consumed quantities, ``int64`` for the integer quantities, strings
  for everything else (unknown columns included; a non-string value is stored as its compact JSON text,
  so a column's type never depends on one day's data).
* **Exact decimals**: the hook reads every JSON number with a fraction or exponent from the answer's text
  as a :class:`~decimal.Decimal` (``json.loads(..., parse_float=Decimal)``, ijson without ``use_float``),
  never through a binary float, so a cost sent as ``0.123456789012345678`` keeps all its digits. JSONL,
  JSON and CSV write those digits as sent (in plain decimal form, see :func:`json_text`); Parquet's
  ``decimal128(38, 18)`` columns hold them exactly, and a value that needs more than 18 decimal places or
  20 integer digits fails with :class:`CloudflareResponseError` instead of being rounded (as does an
  integer outside Parquet's ``int64``). Floats are still accepted (records built by hand): their shortest
  ``repr`` is taken as the decimal meant. XCom is the one place numbers become floats again:
  :func:`xcom_records`.
* **Deterministic bytes**: no timestamps, random ids or host names are written; the same records give a
  byte-identical file (Parquet's ``created_by`` names the pyarrow version, which is fixed per install).

pyarrow is imported only inside the Parquet functions: the operator module that imports this one is
parsed with every DAG file.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import IO, TYPE_CHECKING, Any, Protocol

from airflow_provider_cfbilling.exceptions import CloudflareResponseError

if TYPE_CHECKING:
    import pyarrow as pa

# The 11 columns Cloudflare documents as required, in its order (always present in a record).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "BillingCurrency",
    "BillingPeriodStart",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "CumulatedContractedCost",
    "CumulatedPricingQuantity",
    "PricingQuantity",
    "ServiceName",
)
# FOCUS 1.3 columns newer responses carry, alphabetical.
FOCUS_COLUMNS: tuple[str, ...] = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "EffectiveCost",
    "HostProviderName",
    "InvoiceIssuerName",
    "ListCost",
    "PricingUnit",
    "ServiceFamilyName",
    "ServiceProviderName",
    "SubscriptionId",
    "ZoneId",
    "ZoneName",
)
KNOWN_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + FOCUS_COLUMNS

TIMESTAMP_COLUMNS = frozenset({"BillingPeriodStart", "ChargePeriodStart", "ChargePeriodEnd"})
DECIMAL_COLUMNS = frozenset(
    {"ConsumedQuantity", "ContractedCost", "CumulatedContractedCost", "BilledCost", "EffectiveCost", "ListCost"}
)
INTEGER_COLUMNS = frozenset({"PricingQuantity", "CumulatedPricingQuantity"})
# How a column is typed (Parquet schema, parsing): by the sets above for the API's own columns, or as a record
# source declares it in ``column_types`` (a FOCUS dataset, see utils.focus).
TIMESTAMP_KIND, DECIMAL_KIND, INTEGER_KIND, STRING_KIND = "timestamp", "decimal", "integer", "string"
_STRING_COLUMNS = frozenset({"BillingCurrency", "ConsumedUnit", "ServiceName"})
_MISSING = object()
# Unicode line breaks json.dumps leaves raw (it escapes the ASCII ones): escaped in JSON text, see json_text.
_LINE_BREAK_ESCAPES = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}

DECIMAL_PRECISION = 38
DECIMAL_SCALE = 18

FILE_FORMATS: tuple[str, ...] = ("jsonl", "json", "csv", "parquet")
_SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_PARQUET_ROW_GROUP = 25_000  # records per row group
_PARQUET_BATCH = 2_500  # records held as Python objects before they become Arrow arrays

Record = Mapping[str, Any]


class Records(Protocol):
    """What the checks and writers need of their records: several passes, and a count.

    A list is one; so is a spooled answer parsed afresh at each pass (``utils.spool``), which is why the
    writers never index or slice. A source whose columns are fixed by a standard rather than by the data (a
    FOCUS dataset, ``utils.focus.FocusRecords``) also has ``column_types``: its columns in order, each with
    its kind (``TIMESTAMP_KIND`` ...); the writers then write exactly those columns, typed so.
    """

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def __len__(self) -> int: ...


def format_for_name(name: str) -> str | None:
    """The file format a file name's suffix implies (``usage.parquet`` -> ``parquet``), or None."""
    lowered = name.lower()
    for suffix, file_format in _SUFFIX_FORMATS.items():
        if lowered.endswith(suffix):
            return file_format
    return None


def column_order(records: Iterable[Record]) -> list[str]:
    """The columns of ``records`` in the stable order described in the module docstring.

    The 11 required columns are always included, so an empty result still has a header and a schema. A source
    that declares ``column_types`` (see :class:`Records`) gets its declared columns instead.
    """
    declared = getattr(records, "column_types", None)
    if declared is not None:
        return list(declared)
    seen: set[str] = set()
    for record in records:
        seen.update(record)
    return _ordered(seen)


def _ordered(seen: set[str]) -> list[str]:
    known = [c for c in KNOWN_COLUMNS if c in seen or c in REQUIRED_COLUMNS]
    return known + sorted(seen.difference(KNOWN_COLUMNS))


def to_decimal(value: Any, column: str = "value") -> Decimal | None:
    """The exact decimal of a JSON number (or numeric string, or None); see the module docstring."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise CloudflareResponseError(f"Column {column} holds a boolean ({value!r}), not a number.")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise CloudflareResponseError(f"Column {column} holds a non-finite number ({value!r}).")
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CloudflareResponseError(f"Column {column} holds a non-finite number ({value!r}).")
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            number = Decimal("NaN")
        if number.is_finite():
            return number
    raise CloudflareResponseError(f"Column {column} holds {value!r}, which is not a number.")


def to_utc_timestamp(value: Any, column: str = "value") -> dt.datetime | None:
    """An aware UTC datetime from the API's ISO 8601 date-time text (``2025-02-01T00:00:00Z``)."""
    if value is None:
        return None
    try:
        text = value.strip()
        parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except (AttributeError, ValueError):
        raise CloudflareResponseError(f"Column {column} holds {value!r}, which is not an ISO 8601 date-time.") from None
    if parsed.tzinfo is None:
        raise CloudflareResponseError(
            f"Column {column} holds {value!r}, a date-time without a UTC offset; FOCUS date-times are UTC."
        )
    return parsed.astimezone(dt.timezone.utc)


# Required columns by kind, for RecordCheck's fast path.
_REQUIRED_STRINGS = tuple(c for c in REQUIRED_COLUMNS if c in _STRING_COLUMNS)
_REQUIRED_STAMPS = tuple(c for c in REQUIRED_COLUMNS if c in TIMESTAMP_COLUMNS)
_REQUIRED_DECIMALS = tuple(c for c in REQUIRED_COLUMNS if c in DECIMAL_COLUMNS)
_REQUIRED_INTEGERS = tuple(c for c in REQUIRED_COLUMNS if c in INTEGER_COLUMNS)


class RecordCheck:
    """Checks that a record carries the 11 columns Cloudflare documents as required, non-null and typed.

    A record without its cost, currency, service or dates cannot be booked, and a number sent as a string
    changes the type of a whole column in the landed files (JSON Lines consumers would read text, sums would
    fail or silently skip it). Either way the API has broken its contract: nothing is written or returned,
    rather than a file that books a wrong cost. Unknown and FOCUS 1.3 columns are not checked here (they are
    kept as sent).

    Called once per record; the usual record (strings, date-times seen before, exact numbers) passes on type
    tests alone, and only a value that fails them is judged in full.

    :param source: what the records are, for the message (e.g. "the usage of account 023e...")
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._valid_stamps: set[str] = set()  # usage rows share a handful of date-times: parse each once

    def __call__(self, record: Record, row: int) -> None:
        """:raises CloudflareResponseError: naming the column, the row and the value"""
        get = record.get
        for column in _REQUIRED_STRINGS:
            if get(column).__class__ is not str:
                self._judge(record, row, column)
        for column in _REQUIRED_STAMPS:
            if get(column) not in self._valid_stamps:
                self._judge(record, row, column)
        for column in _REQUIRED_DECIMALS:
            value = get(column)
            if not (value.__class__ is int or (value.__class__ is Decimal and value.is_finite())):
                self._judge(record, row, column)
        for column in _REQUIRED_INTEGERS:
            if get(column).__class__ is not int:
                self._judge(record, row, column)

    def _judge(self, record: Record, row: int, column: str) -> None:
        value = record.get(column, _MISSING)
        problem = _contract_problem(column, value)
        if problem is None:
            if column in TIMESTAMP_COLUMNS:
                self._valid_stamps.add(value)
            return
        where = ", ".join(f"{name} {record[name]!r}" for name in ("ChargePeriodStart", "ServiceName") if name in record)
        raise CloudflareResponseError(
            f"Cloudflare sent {self.source} with a record (row {row}"
            f"{': ' + where if where else ''}) whose {column} {problem}. Cloudflare documents these 11 "
            f"columns as required and typed ({', '.join(REQUIRED_COLUMNS)}): the API broke its contract, "
            "so nothing was written or returned (a partial or retyped file would book a wrong cost). "
            "Retry later; if it persists, report it with this message."
        )


def _contract_problem(column: str, value: Any) -> str | None:
    """What is wrong with a required column's value (phrased to follow "whose <column> "), or None."""
    if value is _MISSING:
        return "is missing"
    if value is None:
        return "is null"
    if column in _STRING_COLUMNS:
        return None if isinstance(value, str) else f"holds {value!r}, not a string"
    if column in TIMESTAMP_COLUMNS:
        if not isinstance(value, str):
            return f"holds {value!r}, not an ISO 8601 date-time string"
        try:
            to_utc_timestamp(value, column)
        except CloudflareResponseError:
            return f"holds {value!r}, not an ISO 8601 date-time with a UTC offset"
        return None
    # The numeric columns: JSON numbers, never strings or booleans.
    if isinstance(value, str):
        return (
            f"holds the string {value!r} where the API sends a JSON number: the column's type changed, and "
            "landing it would turn a cost or quantity column into text"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return f"holds {value!r}, not a number"
    if isinstance(value, (float, Decimal)) and not _is_finite(value):
        return f"holds {value!r}, not a finite number"
    if column in INTEGER_COLUMNS and isinstance(value, (float, Decimal)) and value != int(value):
        return f"holds {value!r}, not an integer"
    return None


def _is_finite(value: float | Decimal) -> bool:
    return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)


def json_text(value: Any) -> str:
    """Compact JSON text of a parsed JSON value; numbers keep the API's digits, in plain decimal form.

    A :class:`~decimal.Decimal` (what the hook reads a JSON number with a fraction or exponent as) is
    written with exactly its digits, in plain form (``0.123456789012345678``, ``3.0``, ``0.0000001``
    for ``1e-7``), so it is the API's literal whenever the API writes plain decimals and always the
    API's exact value. A float (records built by hand) is written as the plain decimal of its shortest
    repr, which reads back as the very same float; Python's ``json`` would write ``5e-06``.

    Text is UTF-8 as it is, except the three characters some line readers take for a line break (U+0085,
    U+2028, U+2029; ``json`` already escapes the ASCII controls): they are escaped, so that one JSON Lines
    record is one line for any reader (Python's ``str.splitlines`` included). The value is unchanged.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, Decimal)):
        if not _is_finite(value):
            raise CloudflareResponseError(f"A record holds a non-finite number ({value!r}).")
        text = format(value if isinstance(value, Decimal) else Decimal(repr(value)), "f")
        return text if "." in text else text + ".0"  # keep it a decimal literal, as the API wrote it
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).translate(_LINE_BREAK_ESCAPES)
    if isinstance(value, list):
        return "[" + ",".join(json_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json_text(str(k))}:{json_text(v)}" for k, v in value.items()) + "}"
    raise CloudflareResponseError(f"A record holds a {type(value).__name__}, which is not a JSON value.")


def xcom_records(records: Iterable[Record]) -> list[dict[str, Any]]:
    """The records as XCom carries them: plain JSON types, every :class:`~decimal.Decimal` a float.

    Airflow's XCom serialisation has no exact decimal that reads back as a number everywhere, and XCom is
    the convenience path for small answers handed to Python tasks: there a float is what a task expects.
    Exact digits are for the file destinations and the manifest's totals (decimal strings). This is the
    one place the provider turns the API's exact numbers into floats.
    """
    return [{key: _json_compatible(value) for key, value in record.items()} for record in records]


def _json_compatible(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_json_compatible(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_compatible(item) for key, item in value.items()}
    return value


def text_value(value: Any) -> str | None:
    """A value as text: strings as they are, anything else as :func:`json_text`; None stays None."""
    if value is None or isinstance(value, str):
        return value
    return json_text(value)


# -- writers: each streams records to a binary file object ----------------------------------------


def write_records(records: Records, fileobj: IO[bytes], file_format: str) -> int:
    """Write ``records`` to ``fileobj`` in ``file_format`` (one of :data:`FILE_FORMATS`); return the rows written.

    A source that declares ``column_types`` (a FOCUS dataset) is written with exactly those columns and kinds.
    """
    column_types = getattr(records, "column_types", None)
    writer = open_writer(fileobj, file_format, column_order(records), column_types)
    for record in records:
        writer.write(record)
    return writer.close()


class NewColumnError(Exception):
    """A record carries a column the file's header or schema, already written, does not have."""


class RecordWriter(Protocol):
    """Writes records one at a time to a binary file; :meth:`close` finishes the file and returns the row count."""

    def write(self, record: Record) -> None: ...

    def close(self) -> int: ...


def needs_columns(file_format: str) -> bool:
    """Whether a format writes its columns before the first row (a header or a schema), so needs them all."""
    return file_format in ("csv", "parquet")


def open_writer(
    fileobj: IO[bytes], file_format: str, columns: Sequence[str], column_types: Mapping[str, str] | None = None
) -> RecordWriter:
    """A streaming writer of ``file_format`` to ``fileobj``.

    :param columns: the file's columns in :func:`column_order` (the header of CSV, the schema of Parquet);
        JSON Lines and JSON order each record's own keys the same way and need no list. A record with a
        column outside ``columns`` raises :class:`NewColumnError` in CSV and Parquet.
    :param column_types: a declared dataset's columns and kinds (a FOCUS dataset): Parquet types them so, and
        JSON keeps each record's keys in the order given (the declared order) instead of :func:`column_order`'s.
    """
    declared = column_types is not None
    if file_format == "jsonl":
        return _JsonLinesWriter(fileobj, keep_order=declared)
    if file_format == "json":
        return _JsonArrayWriter(fileobj, keep_order=declared)
    if file_format == "csv":
        return _CsvWriter(fileobj, columns)
    if file_format == "parquet":
        return _ParquetWriter(fileobj, columns, column_types)
    raise ValueError(f"Unknown file format {file_format!r}: use one of {', '.join(FILE_FORMATS)}.")


_RANK = {column: index for index, column in enumerate(KNOWN_COLUMNS)}
_LAYOUTS: dict[tuple[str, ...], tuple[list[str], bool]] = {}  # keys as sent -> (in column order, already so)


def _layout(record: Record) -> tuple[list[str], bool]:
    """The record's own keys in the order of :func:`column_order` (which ranks every name on its own), and
    whether the record already has them in that order."""
    sent = tuple(record)
    layout = _LAYOUTS.get(sent)
    if layout is None:
        known = sorted((k for k in sent if k in _RANK), key=_RANK.__getitem__)
        ordered = known + sorted(k for k in sent if k not in _RANK)
        layout = (ordered, tuple(ordered) == sent)
        if len(_LAYOUTS) < 1024:  # answers carry a handful of key layouts; never grow without bound
            _LAYOUTS[sent] = layout
    return layout


# JSON text is built by the json module's C encoder, which has no exact decimal: it hands each Decimal to
# _marked, which returns the number's text between two NULs; the encoder quotes it as a string and escapes
# the NULs, and the quotes and escaped NULs are then removed from its output. The count of escaped NULs
# proves that no string or key of the records held one (else each record takes the line-by-line path).
_NUMBER_MARK = "\x00"
_ESCAPED_MARK = "\\u0000"
_PLAIN_KINDS = frozenset({str, int, type(None), bool, Decimal})  # what the fast path encodes exactly


def _decimal_text(value: Decimal) -> str:
    """:func:`json_text` of a Decimal."""
    if not value.is_finite():
        raise CloudflareResponseError(f"A record holds a non-finite number ({value!r}).")
    text = format(value, "f")
    return text if "." in text else text + ".0"


class _MarkingEncoder:
    """The C JSON encoder set up for :func:`json_lines`, counting the numbers it marked."""

    def __init__(self) -> None:
        self.marked = 0
        encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=self._marked)
        make = getattr(json.encoder, "c_make_encoder", None)
        if make is None:  # a Python without the C accelerator
            self.encode: Callable[[Any], str] = encoder.encode
        else:
            c_encode = make(None, self._marked, json.encoder.encode_basestring, None, ":", ",", False, False, False)
            self.encode = lambda value: "".join(c_encode(value, 0))

    def _marked(self, value: Any) -> str:
        if value.__class__ is not Decimal:
            raise TypeError(f"{type(value).__name__} is not a JSON value")
        self.marked += 1
        return _NUMBER_MARK + _decimal_text(value) + _NUMBER_MARK


def json_lines(records: Sequence[Record], keep_order: bool = False) -> str:
    """The records as JSON Lines text (a line each, ``\\n``-terminated), keys in column order: :func:`json_text`'s text.

    Records of plain JSON values (strings, integers, Decimals, booleans, nulls) are encoded in one go by the C
    encoder; any other record (a float, a nested value) takes :func:`json_text`, line by line.

    :param keep_order: keep each record's keys in the order given (a declared dataset), not column order
    """
    if not records:
        return ""
    encoder = _MarkingEncoder()
    lines = []
    for record in records:
        if not _PLAIN_KINDS.issuperset(map(type, record.values())):
            return "".join(json_line(record, keep_order) + "\n" for record in records)
        if keep_order:
            lines.append(encoder.encode(record))
            continue
        keys, in_order = _layout(record)
        lines.append(encoder.encode(record if in_order else {key: record[key] for key in keys}))
    text = "\n".join(lines) + "\n"
    if encoder.marked:
        if text.count(_ESCAPED_MARK) != 2 * encoder.marked:  # a string held a NUL: judge line by line
            return "".join(json_line(record, keep_order) + "\n" for record in records)
        text = text.replace('"' + _ESCAPED_MARK, "").replace(_ESCAPED_MARK + '"', "")
    if "\x85" in text or "\u2028" in text or "\u2029" in text:
        text = text.translate(_LINE_BREAK_ESCAPES)
    return text


def json_line(record: Record, keep_order: bool = False) -> str:
    """A record as one line of compact JSON text, keys in column order (:func:`json_text` of the reordered record),
    or in the order given with ``keep_order``."""
    if keep_order:
        return json_text(record)
    keys, _ = _layout(record)
    return json_text({key: record[key] for key in keys})


_BATCH = 2_000  # records encoded and written per call


class _JsonLinesWriter:
    """JSON Lines: one record per line, keys in column order; an empty result is an empty file."""

    def __init__(self, fileobj: IO[bytes], keep_order: bool = False) -> None:
        self._fileobj = fileobj
        self._keep_order = keep_order
        self._pending: list[Record] = []
        self._rows = 0

    def write(self, record: Record) -> None:
        self._pending.append(record)
        if len(self._pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._fileobj.write(json_lines(self._pending, self._keep_order).encode("utf-8"))
            self._rows += len(self._pending)
            self._pending = []

    def close(self) -> int:
        self._flush()
        return self._rows


class _JsonArrayWriter(_JsonLinesWriter):
    """A JSON array, one record per line, keys in column order; an empty result is ``[]``."""

    def __init__(self, fileobj: IO[bytes], keep_order: bool = False) -> None:
        super().__init__(fileobj, keep_order)
        fileobj.write(b"[")

    def _flush(self) -> None:
        if self._pending:
            # JSON text holds no raw line break: each record's line ends at a newline.
            lines = json_lines(self._pending, self._keep_order)[:-1].replace("\n", ",\n")
            self._fileobj.write(((",\n" if self._rows else "\n") + lines).encode("utf-8"))
            self._rows += len(self._pending)
            self._pending = []

    def close(self) -> int:
        self._flush()
        self._fileobj.write(b"\n]\n" if self._rows else b"]\n")
        return self._rows


class _CsvWriter:
    """RFC 4180 CSV (UTF-8, CRLF), a header row of column names, then one row per record."""

    def __init__(self, fileobj: IO[bytes], columns: Sequence[str]) -> None:
        self._columns = list(columns)
        self._known = frozenset(columns)
        self._text = io.TextIOWrapper(fileobj, encoding="utf-8", newline="", write_through=True)
        self._writer = csv.writer(self._text, dialect="excel")
        self._writer.writerow(self._columns)
        self._rows = 0

    def write(self, record: Record) -> None:
        if not self._known.issuperset(record):
            raise NewColumnError(sorted(set(record) - self._known))
        self._writer.writerow(["" if (v := text_value(record.get(c))) is None else v for c in self._columns])
        self._rows += 1

    def close(self) -> int:
        self._text.flush()
        self._text.detach()  # leave the caller's file object open
        return self._rows


def column_kind(column: str, column_types: Mapping[str, str] | None = None) -> str:
    """How ``column`` is typed: as ``column_types`` declares it, else by the API's column name."""
    if column_types is not None and column in column_types:
        return column_types[column]
    if column in TIMESTAMP_COLUMNS:
        return TIMESTAMP_KIND
    if column in DECIMAL_COLUMNS:
        return DECIMAL_KIND
    if column in INTEGER_COLUMNS:
        return INTEGER_KIND
    return STRING_KIND


def parquet_schema(columns: Sequence[str], column_types: Mapping[str, str] | None = None) -> pa.Schema:
    """The explicit Parquet schema for ``columns`` (types in the module docstring; kinds by :func:`column_kind`)."""
    import pyarrow as pa

    def field_type(column: str) -> pa.DataType:
        kind = column_kind(column, column_types)
        if kind == TIMESTAMP_KIND:
            return pa.timestamp("ms", tz="UTC")
        if kind == DECIMAL_KIND:
            return pa.decimal128(DECIMAL_PRECISION, DECIMAL_SCALE)
        if kind == INTEGER_KIND:
            return pa.int64()
        return pa.string()

    return pa.schema([pa.field(column, field_type(column), nullable=True) for column in columns])


def _to_integer(value: Any, column: str) -> int | None:
    number = to_decimal(value, column)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise CloudflareResponseError(f"Column {column} holds {value!r}, which is not an integer.")
    return int(number)


_INT64_RANGE = range(-(2**63), 2**63)
_DECIMAL_LIMIT = Decimal(10) ** (DECIMAL_PRECISION - DECIMAL_SCALE)
_DECIMAL_QUANTUM = Decimal(1).scaleb(-DECIMAL_SCALE)
_WIDE = decimal.Context(prec=DECIMAL_PRECISION + 2)  # quantizing a value below the limit never rounds here


def _parquet_misfit(column: str, value: Any, kind: str) -> str | None:
    """Why a decimal or integer column's value cannot be stored exactly in the Parquet schema, or None."""
    if value is None:
        return None
    if kind == INTEGER_KIND:
        number = _to_integer(value, column)
        if number in _INT64_RANGE:
            return None
        return (
            f"is {json_text(value)}, a number too large for Parquet's int64 column (-2**63 to 2**63 - 1). "
            "The JSON formats and CSV keep it whole"
        )
    exact = to_decimal(value, column)
    assert exact is not None
    if exact.copy_abs() < _DECIMAL_LIMIT and exact.quantize(_DECIMAL_QUANTUM, context=_WIDE) == exact:
        return None
    return (
        f"is {json_text(value)}, which Parquet's decimal({DECIMAL_PRECISION}, {DECIMAL_SCALE}) column cannot hold "
        f"without rounding (at most {DECIMAL_PRECISION - DECIMAL_SCALE} digits before the decimal point and "
        f"{DECIMAL_SCALE} after). The JSON formats and CSV keep every digit the API sent"
    )


def _to_timestamp_ms(value: Any, column: str) -> dt.datetime | None:
    stamp = to_utc_timestamp(value, column)
    if stamp is not None and stamp.microsecond % 1000:
        raise CloudflareResponseError(
            f"Column {column} holds {value!r}, finer than the milliseconds the Parquet schema keeps."
        )
    return stamp


def _parquet_column(column: str, values: list[Any], kind: str) -> list[Any]:
    """A column's values as pyarrow takes them exactly: the common types pass as they are."""
    if kind == TIMESTAMP_KIND:
        stamps: dict[Any, dt.datetime | None] = {}  # usage rows share a handful of date-times: parse each once
        out = []
        for value in values:
            stamp = stamps.get(value, _MISSING) if value.__class__ is str or value is None else _MISSING
            if stamp is _MISSING:
                stamp = _to_timestamp_ms(value, column)
                if value.__class__ is str or value is None:
                    stamps[value] = stamp
            out.append(stamp)
        return out
    if kind == DECIMAL_KIND:
        return [v if v.__class__ is Decimal or v is None else to_decimal(v, column) for v in values]
    if kind == INTEGER_KIND:
        return [v if v.__class__ is int or v is None else _to_integer(v, column) for v in values]
    return [v if v.__class__ is str or v is None else text_value(v) for v in values]


def _transpose(chunk: list[Record], columns: list[str]) -> list[list[Any]]:
    """The chunk's values column by column (None where a record lacks a column)."""
    if len(columns) > 1:
        row = operator.itemgetter(*columns)  # a tuple per record, built in C
        try:
            return [list(values) for values in zip(*map(row, chunk), strict=True)] if chunk else [[] for _ in columns]
        except KeyError:  # some record lacks a column
            pass
    return [[record.get(column) for record in chunk] for column in columns]


class _ParquetWriter:
    """Parquet with the explicit schema of :func:`parquet_schema`, in row groups of 25,000 records.

    Records are turned into Arrow arrays 2,500 at a time (pyarrow refuses a decimal it cannot hold without
    rounding and an integer outside int64; the refusal is then explained value by value by
    :func:`_parquet_misfit`, and the staged file is discarded by the caller), and the arrays written as one
    row group per 25,000 records. Memory holds 2,500 records as Python objects (a record's dict is about
    7 KB) and one row group as Arrow buffers (about 0.6 KB a record): about 60 MB in all, whatever the size
    of the answer.
    """

    def __init__(
        self, fileobj: IO[bytes], columns: Sequence[str], column_types: Mapping[str, str] | None = None
    ) -> None:
        self._fileobj = fileobj
        self._schema = parquet_schema(columns, column_types)
        self._kinds = {column: column_kind(column, column_types) for column in columns}
        self._known = frozenset(columns)
        self._chunk: list[Record] = []
        self._batches: list[Any] = []  # pyarrow RecordBatches of the row group being gathered
        self._gathered = 0
        self._rows = 0
        self._writer: Any = None  # opened with the first row group that converts: a refusal there writes nothing

    def write(self, record: Record) -> None:
        if not self._known.issuperset(record):
            raise NewColumnError(sorted(set(record) - self._known))
        self._chunk.append(record)
        if len(self._chunk) >= _PARQUET_BATCH:
            self._convert()
            if self._gathered >= _PARQUET_ROW_GROUP:
                self._flush()

    def _convert(self) -> None:
        import pyarrow as pa

        chunk, self._chunk = self._chunk, []
        if not chunk:
            return
        arrays = []
        for field, column in zip(self._schema, _transpose(chunk, self._schema.names), strict=True):
            values = _parquet_column(field.name, column, self._kinds[field.name])
            try:
                arrays.append(pa.array(values, type=field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                if self._writer is not None:  # finish it while the file is open; the caller discards the file
                    self._writer.close()
                    self._writer = None
                self._explain(field.name, chunk)
                raise CloudflareResponseError(
                    f"Column {field.name} does not fit its Parquet type {field.type}: {exc}. "
                    f"Costs and quantities are stored as decimals with {DECIMAL_SCALE} decimal places."
                ) from exc
        self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=self._schema))
        self._gathered += len(chunk)

    def _flush(self) -> None:
        import pyarrow as pa

        self._convert()
        if not self._batches:
            return
        if self._writer is None:
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self._fileobj, self._schema, compression="snappy")
        table = pa.Table.from_batches(self._batches, schema=self._schema)
        self._writer.write_table(table, row_group_size=self._gathered)
        self._rows += self._gathered
        self._batches, self._gathered = [], 0

    def _explain(self, column: str, chunk: list[Record]) -> None:
        """Name the row and value pyarrow refused, with what to do instead."""
        kind = self._kinds[column]
        if kind not in (DECIMAL_KIND, INTEGER_KIND):
            return
        for index, record in enumerate(chunk):
            problem = _parquet_misfit(column, record.get(column), kind)
            if problem is not None:
                raise CloudflareResponseError(
                    f"In row {self._rows + self._gathered + index + 1}, {column} {problem}. Nothing was "
                    "written. Land this answer as JSON Lines, JSON or CSV (e.g. file_format='jsonl' with a "
                    ".jsonl destination) instead of Parquet."
                )

    def close(self) -> int:
        self._flush()
        if self._writer is None:  # no rows: the file still carries the schema
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self._fileobj, self._schema, compression="snappy")
        self._writer.close()
        return self._rows


# -- readers: a file this module wrote, streamed back --------------------------------------------


def read_records(local_path: str, file_format: str, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Stream the records of a local file in ``file_format`` (as this module writes it), with only ``columns``.

    Numbers come back exact (JSON numbers as :class:`~decimal.Decimal`, Parquet decimals as they are stored,
    CSV fields as text, an empty field as None); one record or one Parquet batch is held at a time.

    :raises ValueError: the file is not in that format, or lacks one of ``columns`` (saying which)
    """
    if file_format in ("jsonl", "json"):
        import ijson

        with open(local_path, "rb") as handle:
            # ijson without use_float: every number with a fraction is a Decimal, as in the hook.
            items = (
                ijson.items(handle, "", multiple_values=True) if file_format == "jsonl" else ijson.items(handle, "item")
            )
            try:
                for row, item in enumerate(items, 1):
                    if not isinstance(item, dict):
                        raise ValueError(f"record {row} of {local_path} is not a JSON object")
                    yield {column: _present(item, column, row) for column in columns}
            except ijson.JSONError as exc:
                raise ValueError(f"{local_path} is not {file_format.upper()}: {exc}") from None
    elif file_format == "csv":
        with open(local_path, encoding="utf-8", newline="") as text:
            reader = csv.DictReader(text, dialect="excel")
            missing = [c for c in columns if c not in (reader.fieldnames or ())]
            if missing:
                raise ValueError(f"{local_path} has no column {', '.join(missing)} in its header")
            for line in reader:
                yield {column: line[column] or None for column in columns}
    elif file_format == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(local_path)
        missing = [c for c in columns if c not in parquet.schema_arrow.names]
        if missing:
            raise ValueError(f"{local_path} has no column {', '.join(missing)} in its schema")
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH, columns=list(columns)):
            yield from batch.to_pylist()
    else:
        raise ValueError(f"Unknown file format {file_format!r}: use one of {', '.join(FILE_FORMATS)}.")


def _present(item: Mapping[str, Any], column: str, row: int) -> Any:
    if column not in item:
        raise ValueError(f"record {row} has no column {column}")
    return item[column]


def file_columns(local_path: str, file_format: str, column_types: Mapping[str, str] | None = None) -> dict[str, str]:
    """The columns of a local file in ``file_format`` (as this module writes it) and their types.

    Parquet gives its schema's Arrow types (``decimal128(38, 18)``, ``timestamp[ms, tz=UTC]``, ``int64``,
    ``string``). CSV (its header) and JSON Lines and JSON (read through once: their records carry their own
    keys) give this module's kinds (``timestamp``, ``decimal``, ``integer``, ``string``), as :func:`column_kind`
    gives them for ``column_types`` (a FOCUS dataset's) or the API's column names.
    """
    if file_format == "parquet":
        import pyarrow.parquet as pq

        return {field.name: str(field.type) for field in pq.read_schema(local_path)}
    if file_format == "csv":
        with open(local_path, encoding="utf-8", newline="") as text:
            names: list[str] = next(csv.reader(text, dialect="excel"), [])
    else:
        import ijson

        seen: set[str] = set()
        prefix = "" if file_format == "jsonl" else "item"
        with open(local_path, "rb") as handle:
            for path, event, value in ijson.parse(handle, multiple_values=True):
                if event == "map_key" and path == prefix:
                    seen.add(value)
        names = [c for c in column_types if c in seen] if column_types is not None else _ordered(seen)
        names += sorted(seen.difference(names))
    return {name: column_kind(name, column_types) for name in names}
