"""Properties (hypothesis): records of any shape the API may send survive every file format, and money stays exact.

"Any shape the API may send": the 11 required columns, always present and typed as documented; any subset of
the FOCUS 1.3 columns, nullable; and any number of unknown future columns, each of one JSON type (text,
integer, decimal, boolean, list, object) plus nulls. Text is any Unicode (commas, quotes, newlines, NUL,
emoji); costs are decimals with up to 15 significant digits and up to 18 decimal places, negative ones
(credits) included; date-times are ISO 8601 with ``Z`` or an offset, to the millisecond. Each example is built
as the API's JSON text, then parsed as the hook parses it (``json.loads``) and, as the oracle, with exact
decimals (``parse_float=Decimal``).

What "without loss" means per format (``docs/faults.md``):

* JSONL and JSON: every record reads back equal, field by field, and every number reads back as the API's
  exact decimal.
* CSV: the header is the column order; a text value reads back as itself, any other value as its JSON text
  (which parses back to the API's exact value). A null is an empty field, and so is an empty string: CSV has
  no way to tell them apart (use JSONL or Parquet where that matters).
* Parquet: date-times as the same instants (UTC), costs and quantities as the exact decimals, integers as
  themselves, text as itself; an unknown column's non-text values as their JSON text.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_cfbilling.utils import formats
from airflow_provider_cfbilling.utils.formats import KNOWN_COLUMNS, RecordCheck, column_order
from airflow_provider_cfbilling.utils.reconcile import RunningReconciliation, cost_totals, reconcile

PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# -- strategies: values as the API writes them (JSON literals) -------------------------------------------

# Money and quantities: up to 15 significant digits (a double carries them exactly), at most 18 places
# (the Parquet scale), below 10**20 (the Parquet precision); negative for credits.
decimals = st.builds(
    lambda sign, digits, places: Decimal(f"{sign}{digits}").scaleb(-min(places, 18)),
    st.sampled_from(["", "-"]),
    st.integers(min_value=0, max_value=10**15 - 1),
    st.integers(min_value=0, max_value=18),
)
# How the API may spell a decimal: plain, or in exponent form (what some JSON encoders emit).
decimal_literals = st.tuples(decimals, st.booleans()).map(lambda d: f"{d[0]:E}" if d[1] else format(d[0], "f"))
int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)
texts = st.text(max_size=20)  # any Unicode, NUL, newlines, quotes and commas included


@st.composite
def instants(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)))
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)  # Parquet keeps milliseconds
    offset = draw(st.sampled_from(["Z", "+00:00", "+02:00", "-05:30"]))
    text = moment.isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds"])))
    return text + offset


def json_literal(value: Any) -> str:
    """A drawn value as JSON text; decimal literals (already text) are wrapped in a marker class."""
    return value.text if isinstance(value, Literal) else json.dumps(value, ensure_ascii=False)


class Literal:
    def __init__(self, text: str) -> None:
        self.text = text


number_literals = decimal_literals.map(Literal)
EXTRA_TYPES = {
    "text": texts,
    "integer": st.integers(min_value=-(10**30), max_value=10**30),
    "decimal": number_literals,
    "boolean": st.booleans(),
    "list": st.lists(st.one_of(texts, st.integers(), st.booleans()), max_size=3),
    "object": st.dictionaries(st.text(max_size=5), st.one_of(texts, st.integers(), st.none()), max_size=3),
}
FOCUS_TEXT = [c for c in formats.FOCUS_COLUMNS if c not in formats.DECIMAL_COLUMNS]
FOCUS_DECIMAL = [c for c in formats.FOCUS_COLUMNS if c in formats.DECIMAL_COLUMNS]


@st.composite
def api_answers(draw: st.DrawFn) -> str:
    """The ``result`` array of a usage answer, as JSON text."""
    focus = draw(st.lists(st.sampled_from(formats.FOCUS_COLUMNS), unique=True, max_size=6))
    names = st.text(min_size=1, max_size=12).filter(lambda n: n not in KNOWN_COLUMNS)
    extras = draw(st.dictionaries(names, st.sampled_from(sorted(EXTRA_TYPES)), max_size=4))
    rows = []
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        row: dict[str, Any] = {
            "BillingCurrency": draw(st.sampled_from(["USD", "EUR", "GBP", "JPY"])),
            "BillingPeriodStart": draw(instants()),
            "ChargePeriodEnd": draw(instants()),
            "ChargePeriodStart": draw(instants()),
            "ConsumedQuantity": draw(number_literals),
            "ConsumedUnit": draw(texts),
            "ContractedCost": draw(number_literals),
            "CumulatedContractedCost": draw(number_literals),
            "CumulatedPricingQuantity": draw(int64s),
            "PricingQuantity": draw(int64s),
            "ServiceName": draw(texts),
        }
        for column in focus:
            value_strategy = number_literals if column in FOCUS_DECIMAL else texts
            row[column] = draw(st.one_of(st.none(), value_strategy))
        for column, kind in extras.items():
            row[column] = draw(st.one_of(st.none(), EXTRA_TYPES[kind]))
        keys = draw(st.permutations(list(row)))  # the API's key order is its own
        rows.append("{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{json_literal(row[k])}" for k in keys) + "}")
    return "[" + ",".join(rows) + "]"


def parse(answer: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records as the hook parses them, records with the API's exact decimals)."""
    return json.loads(answer), json.loads(answer, parse_float=Decimal)


def write(records: list[dict[str, Any]], file_format: str) -> bytes:
    buffer = io.BytesIO()
    formats.write_records(records, buffer, file_format)
    return buffer.getvalue()


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values, numbers exactly (parsed with ``parse_float=Decimal``): 1.50 equals 1.5, but an
    integer never equals a decimal, and text never equals a number."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (bool, str, dict, list)) or a is None or isinstance(b, (bool, str, dict, list)) or b is None:
        return type(a) is type(b) and a == b
    return isinstance(a, int) == isinstance(b, int) and a == b


# -- the round trips ---------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(api_answers())
def test_any_answer_is_a_valid_record_set(answer: str) -> None:
    records, _ = parse(answer)
    check = RecordCheck("a generated answer")  # the generator stays within the API's contract
    for row, record in enumerate(records, 1):
        check(record, row)


@PROPERTY_SETTINGS
@given(api_answers())
def test_jsonl_and_json_keep_every_value_exactly(answer: str) -> None:
    records, exact = parse(answer)
    order = column_order(records)
    lines = write(records, "jsonl").decode("utf-8").splitlines()
    assert len(lines) == len(records)
    for line, record, want in zip(lines, records, exact, strict=True):
        assert json.loads(line) == record
        assert same_json(json.loads(line, parse_float=Decimal), want)
        assert list(json.loads(line)) == [c for c in order if c in record]
    document = write(records, "json")
    assert json.loads(document) == records
    assert all(same_json(a, b) for a, b in zip(json.loads(document, parse_float=Decimal), exact, strict=True))


@PROPERTY_SETTINGS
@given(api_answers())
def test_csv_keeps_every_value_as_its_text(answer: str) -> None:
    records, exact = parse(answer)
    header, *rows = list(csv.reader(io.StringIO(write(records, "csv").decode("utf-8"), newline="")))
    assert header == column_order(records)
    assert len(rows) == len(records)
    for row, want in zip(rows, exact, strict=True):
        for column, cell in zip(header, row, strict=True):
            value = want.get(column)
            if value is None or isinstance(value, str):
                assert cell == (value or "")  # null and "" are both an empty field
            else:
                assert same_json(json.loads(cell, parse_float=Decimal), value), (column, cell, value)


@PROPERTY_SETTINGS
@given(api_answers())
def test_parquet_keeps_instants_decimals_integers_and_text(answer: str) -> None:
    records, exact = parse(answer)
    table = pq.read_table(io.BytesIO(write(records, "parquet")))
    assert table.column_names == column_order(records)
    assert table.num_rows == len(records)
    for got, want in zip(table.to_pylist(), exact, strict=True):
        for column in table.column_names:
            value, stored = want.get(column), got[column]
            if value is None:
                assert stored is None, column
            elif column in formats.TIMESTAMP_COLUMNS:
                assert stored == dt.datetime.fromisoformat(value.replace("Z", "+00:00")), column
            elif column in formats.DECIMAL_COLUMNS:
                assert stored == value, column  # Decimal == Decimal: the API's exact figure
            elif column in formats.INTEGER_COLUMNS or isinstance(value, str):
                assert stored == value, column
            else:
                assert same_json(json.loads(stored, parse_float=Decimal), value), column


@PROPERTY_SETTINGS
@given(api_answers(), st.sampled_from(formats.FILE_FORMATS))
def test_the_same_records_always_give_the_same_bytes(answer: str, file_format: str) -> None:
    records, _ = parse(answer)
    shuffled = [dict(reversed(list(r.items()))) for r in records]  # the API's key order does not matter
    assert write(records, file_format) == write(shuffled, file_format) == write(parse(answer)[0], file_format)


# -- money sums ----------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(api_answers())
def test_cost_totals_and_parquet_sums_are_the_exact_decimal_sums(answer: str) -> None:
    records, exact = parse(answer)
    with decimal.localcontext() as context:
        context.prec = 100  # the oracle itself must not round (the default context keeps 28 digits)
        by_currency: dict[str, Decimal] = defaultdict(Decimal)
        for record in exact:
            by_currency[record["BillingCurrency"]] += record["ContractedCost"]
        sums = {c: sum((r[c] for r in exact), Decimal(0)) for c in ("ContractedCost", "ConsumedQuantity")}
    totals = cost_totals(records)["by_currency"]
    assert {c: Decimal(v) for c, v in totals.items()} == by_currency
    if records:
        table = pq.read_table(io.BytesIO(write(records, "parquet")))
        for column, total in sums.items():
            assert pc.sum(table[column]).as_py() == total


@st.composite
def billing_periods(draw: st.DrawFn) -> str:
    """One service's days in a billing period, costs to the micro-unit, cumulated exactly, as the API's JSON."""
    start = draw(st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2026, 12, 1)))
    costs = draw(
        st.lists(
            st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False, allow_infinity=False),
            min_size=1,
            max_size=31,
        )
    )
    rows, cumulated = [], Decimal(0)
    for day, cost in enumerate(costs):
        cumulated += cost
        charge = start + dt.timedelta(days=day)
        rows.append(
            f'{{"BillingPeriodStart":"{start}T00:00:00Z","BillingCurrency":"USD","ServiceName":"Workers",'
            f'"ChargePeriodStart":"{charge}T00:00:00Z","ContractedCost":{cost},"CumulatedContractedCost":{cumulated}}}'
        )
    return "[" + ",".join(rows) + "]"


@PROPERTY_SETTINGS
@given(billing_periods())
def test_reconciliation_never_reports_float_drift(answer: str) -> None:
    records, exact = parse(answer)
    result = reconcile(records)
    assert result["ok"], result["mismatches"]
    assert result["rows_checked"] == len(records)
    assert Decimal(cost_totals(records)["by_currency"]["USD"]) == exact[-1]["CumulatedContractedCost"]


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Workers", "R2"]),
            st.integers(0, 5),  # day
            st.one_of(st.none(), st.integers(-2, 6)),  # ContractedCost in quarters, or null
            st.integers(0, 12),  # CumulatedContractedCost in quarters
        ),
        max_size=25,
    ),
    st.booleans(),
    st.sampled_from(["window from the period's start", "window from mid-period", "current period", "unknown"]),
)
def test_reconciling_in_the_pass_gives_reconciles_result(
    rows: list[tuple[str, int, int | None, int]], in_api_order: bool, completeness: str
) -> None:
    """The single pass's running reconciliation equals reconcile() over the same rows whenever each group's
    rows come in day order (the API's order), and says so when they do not."""
    records = [
        {
            "BillingPeriodStart": "2025-01-01T00:00:00Z",
            "BillingCurrency": "USD",
            "ServiceName": service,
            "ChargePeriodStart": f"2025-01-0{day + 1}T00:00:00Z",
            "ContractedCost": None if cost is None else Decimal(cost) / 4,
            "CumulatedContractedCost": Decimal(cumulated) / 4,
        }
        for service, day, cost, cumulated in rows
    ]
    if in_api_order:
        records.sort(key=lambda r: r["ChargePeriodStart"])
    complete_from = {
        "window from the period's start": dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc),
        "window from mid-period": dt.datetime(2025, 1, 3, tzinfo=dt.timezone.utc),
        "current period": dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc),  # the earliest period start
        "unknown": None,
    }[completeness]
    running = RunningReconciliation(
        None if completeness == "current period" else complete_from, complete_periods=completeness == "current period"
    )
    for record in records:
        running.add(record)
    if in_api_order:
        assert running.in_order
    if running.in_order:
        assert running.result() == reconcile(records, complete_from)
