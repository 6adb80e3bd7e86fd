"""File formats: every format round-trips what the simulator served, field by field, byte-stable.

The oracle is the simulator's raw answer parsed twice: with plain ``json`` (what the hook hands the
operator) and with ``parse_float=Decimal`` (the exact literals), so Parquet's decimals are checked against
the API's own digits, not against our own conversion.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import fetch_answer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_cfbilling.exceptions import CloudflareResponseError
from airflow_provider_cfbilling.testing.simulator import (
    EMPTY_ACCOUNT,
    FOCUS_ACCOUNT,
    LARGE_ACCOUNT,
    STANDARD_ACCOUNT,
)
from airflow_provider_cfbilling.utils import formats
from airflow_provider_cfbilling.utils.formats import (
    FILE_FORMATS,
    REQUIRED_COLUMNS,
    column_order,
    format_for_name,
    json_text,
    write_records,
)

# -- oracle helpers (shared with the operator and example-DAG tests) ------------------------------


def served(sim: Any, account: str, **query: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the simulator serves: (records as ``json`` parses them, records with exact Decimal numbers)."""
    body = fetch_answer(sim, account, **query)
    return json.loads(body)["result"], json.loads(body, parse_float=Decimal)["result"]


def in_window(records: list[dict[str, Any]], start: str, end: str) -> list[dict[str, Any]]:
    """Rows with ``start <= ChargePeriodStart < end`` (ISO dates), the operator's FOCUS window."""
    return [r for r in records if f"{start}T00:00:00Z" <= r["ChargePeriodStart"] < f"{end}T00:00:00Z"]


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_parquet_matches(table: Any, exact: list[dict[str, Any]]) -> None:
    """Every field of a Parquet table equals the API's value (exact decimals, UTC instants, ints)."""
    assert table.num_rows == len(exact)
    columns = table.column_names
    assert columns == column_order(exact)
    for got, want in zip(table.to_pylist(), exact, strict=True):
        assert set(want) <= set(columns)
        for column in columns:
            expected, value = want.get(column), got[column]
            if expected is None:
                assert value is None, column
            elif column in formats.TIMESTAMP_COLUMNS:
                assert value == _utc(expected), column
            elif column in formats.DECIMAL_COLUMNS:
                assert value == Decimal(expected), column
            elif column in formats.INTEGER_COLUMNS:
                assert value == int(expected), column
            elif isinstance(expected, str):
                assert value == expected, column
            else:
                assert json.loads(value, parse_float=Decimal) == expected, column


def assert_jsonl_matches(data: bytes, records: list[dict[str, Any]]) -> None:
    lines = data.decode("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records
    order = column_order(records)
    for line in lines:
        keys = list(json.loads(line))
        assert keys == [c for c in order if c in keys]


def assert_csv_matches(data: bytes, exact: list[dict[str, Any]]) -> None:
    """CSV: header = column order; each field is the API's JSON text (null -> empty)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    header, *rows = list(reader)
    assert header == column_order(exact)
    assert len(rows) == len(exact)
    for row, want in zip(rows, exact, strict=True):
        for column, text in zip(header, row, strict=True):
            expected = want.get(column)
            if expected is None:
                assert text == "", column
            elif isinstance(expected, str):
                assert text == expected, column
            else:
                # The API's literal, digit for digit (Decimal keeps the literal's text).
                assert text == str(expected), column


def write(records: list[dict[str, Any]], file_format: str) -> bytes:
    buffer = io.BytesIO()
    write_records(records, buffer, file_format)
    return buffer.getvalue()


# -- column order -----------------------------------------------------------------------------------


def test_column_order_is_required_then_focus_then_unknown_sorted() -> None:
    record = {"x_Zeta": 1, "ZoneId": "z", "ServiceName": "s", "x_Alpha": 2, "BilledCost": 1.0}
    order = column_order([record])
    assert order[: len(REQUIRED_COLUMNS)] == list(REQUIRED_COLUMNS)
    assert order[len(REQUIRED_COLUMNS) :] == ["BilledCost", "ZoneId", "x_Alpha", "x_Zeta"]


def test_column_order_ignores_row_and_key_order(sim: Any) -> None:
    records, _ = served(sim, FOCUS_ACCOUNT)
    shuffled = [dict(random.sample(list(r.items()), len(r))) for r in reversed(records)]
    assert column_order(shuffled) == column_order(records)


def test_required_columns_match_the_simulator() -> None:
    from airflow_provider_cfbilling.testing import simulator

    assert tuple(REQUIRED_COLUMNS) == tuple(simulator.PAYGO_REQUIRED_COLUMNS)
    assert set(simulator.FOCUS_EXTRA_COLUMNS) <= set(formats.KNOWN_COLUMNS)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("usage.jsonl", "jsonl"),
        ("usage.ndjson", "jsonl"),
        ("usage.json", "json"),
        ("USAGE.CSV", "csv"),
        ("usage.parquet", "parquet"),
        ("usage.txt", None),
    ],
)
def test_format_for_name(name: str, expected: str | None) -> None:
    assert format_for_name(name) == expected


# -- round trips against the simulator ----------------------------------------------------------------


@pytest.fixture(params=[STANDARD_ACCOUNT, FOCUS_ACCOUNT, LARGE_ACCOUNT, EMPTY_ACCOUNT])
def account(request: pytest.FixtureRequest, sim: Any) -> str:
    if request.param == LARGE_ACCOUNT:
        sim.set_large_zones(3)
    return str(request.param)


def test_jsonl_round_trips(sim: Any, account: str) -> None:
    records, _ = served(sim, account)
    assert_jsonl_matches(write(records, "jsonl"), records)


def test_json_round_trips(sim: Any, account: str) -> None:
    records, _ = served(sim, account)
    data = write(records, "json")
    assert json.loads(data) == records
    assert json.loads(data, parse_float=Decimal) == served(sim, account)[1]


def test_csv_round_trips(sim: Any, account: str) -> None:
    records, exact = served(sim, account)
    assert_csv_matches(write(records, "csv"), exact)


def test_parquet_round_trips(sim: Any, account: str) -> None:
    records, exact = served(sim, account)
    table = pq.read_table(io.BytesIO(write(records, "parquet")))
    assert_parquet_matches(table, exact)


@pytest.mark.parametrize("file_format", FILE_FORMATS)
def test_unknown_columns_are_kept(sim: Any, file_format: str) -> None:
    sim.add_fault("extra_columns", columns={"x_FutureColumn": "hello", "x_FutureAmount": 1.25, "AAA_new": None})
    records, exact = served(sim, STANDARD_ACCOUNT)
    assert {"x_FutureColumn", "x_FutureAmount", "AAA_new"} <= set(records[0])
    data = write(records, file_format)
    assert column_order(records)[-3:] == ["AAA_new", "x_FutureAmount", "x_FutureColumn"]
    if file_format == "parquet":
        assert_parquet_matches(pq.read_table(io.BytesIO(data)), exact)
    elif file_format == "csv":
        assert_csv_matches(data, exact)
    elif file_format == "jsonl":
        assert_jsonl_matches(data, records)
    else:
        assert json.loads(data) == records


def test_numbers_as_strings_still_typed_in_parquet(sim: Any) -> None:
    sim.add_fault("numbers_as_strings")
    records, exact = served(sim, STANDARD_ACCOUNT)
    assert isinstance(records[0]["ContractedCost"], str)
    table = pq.read_table(io.BytesIO(write(records, "parquet")))
    assert_parquet_matches(table, exact)
    assert_jsonl_matches(write(records, "jsonl"), records)  # JSONL keeps the strings as strings


def test_null_values_survive_every_format(sim: Any) -> None:
    sim.add_fault("null_column", column="ConsumedUnit")
    records, exact = served(sim, FOCUS_ACCOUNT)
    assert records[0]["ConsumedUnit"] is None
    assert_parquet_matches(pq.read_table(io.BytesIO(write(records, "parquet"))), exact)
    assert_csv_matches(write(records, "csv"), exact)
    assert_jsonl_matches(write(records, "jsonl"), records)


# -- Parquet schema and exact decimals -------------------------------------------------------------


def test_parquet_schema_is_explicit(sim: Any) -> None:
    records, _ = served(sim, FOCUS_ACCOUNT)
    schema = pq.read_schema(io.BytesIO(write(records, "parquet")))
    decimal = pa.decimal128(formats.DECIMAL_PRECISION, formats.DECIMAL_SCALE)
    assert schema.field("ChargePeriodStart").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("BillingPeriodStart").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("ChargePeriodEnd").type == pa.timestamp("ms", tz="UTC")
    for column in ("ContractedCost", "CumulatedContractedCost", "ConsumedQuantity", "BilledCost", "ListCost"):
        assert schema.field(column).type == decimal
    assert schema.field("PricingQuantity").type == pa.int64()
    assert schema.field("CumulatedPricingQuantity").type == pa.int64()
    assert schema.field("ServiceName").type == pa.string()
    assert schema.field("ChargeClass").type == pa.string()  # always null, still typed


def test_parquet_cost_sum_is_the_exact_decimal_sum(sim: Any) -> None:
    sim.set_large_zones(5)
    records, exact = served(sim, LARGE_ACCOUNT)
    table = pq.read_table(io.BytesIO(write(records, "parquet")))
    for column in ("ContractedCost", "ConsumedQuantity"):
        exact_sum = sum((r[column] for r in exact), Decimal(0))
        assert pc.sum(table[column]).as_py() == exact_sum


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=40,
    )
)
def test_parquet_decimals_equal_json_literals(costs: list[Decimal]) -> None:
    """Any cost the API can write with up to 6 places (15 significant digits) survives JSON -> float -> Parquet."""
    body = "[" + ",".join(f'{{"ContractedCost":{c}}}' for c in costs) + "]"
    records = json.loads(body)
    literals = json.loads(body, parse_float=Decimal)
    table = pq.read_table(io.BytesIO(write(records, "parquet")))
    assert table["ContractedCost"].to_pylist() == [r["ContractedCost"] for r in literals]
    assert pc.sum(table["ContractedCost"]).as_py() == sum(costs, Decimal(0))
    csv_rows = list(csv.DictReader(io.StringIO(write(records, "csv").decode())))
    assert [Decimal(r["ContractedCost"]) for r in csv_rows] == costs


# How every Parquet refusal of a value ends.
LAND_ELSEWHERE = (
    "Nothing was written. Land this answer as JSON Lines, JSON or CSV (e.g. file_format='jsonl' with a .jsonl "
    "destination) instead of Parquet."
)


@pytest.mark.parametrize(
    ("records", "row", "column", "shown"),
    [
        ([{"ContractedCost": 1.1234567890123457e-10}], 1, "ContractedCost", "0.00000000011234567890123457"),
        # 10**20 is the first value past decimal(38, 18)'s 20 integer digits.
        (
            [{"BilledCost": Decimal("99999999999999999999.999999999999999999")}, {"BilledCost": Decimal("1E+20")}],
            2,
            "BilledCost",
            "100000000000000000000.0",
        ),
    ],
    ids=["too-many-decimal-places", "twenty-one-integer-digits"],
)
def test_parquet_refuses_to_round_a_cost(records: list[dict[str, Any]], row: int, column: str, shown: str) -> None:
    with pytest.raises(CloudflareResponseError) as failure:
        write(records, "parquet")
    assert str(failure.value) == (
        f"In row {row}, {column} is {shown}, which Parquet's decimal(38, 18) column cannot hold without rounding "
        "(at most 20 digits before the decimal point and 18 after). The JSON formats and CSV keep every digit the "
        f"API sent. {LAND_ELSEWHERE}"
    )


def test_parquet_names_the_row_and_value_of_an_integer_beyond_int64() -> None:
    records = [{"PricingQuantity": 2**63 - 1}, {"PricingQuantity": 2**63}]
    with pytest.raises(CloudflareResponseError) as failure:
        write(records, "parquet")
    assert str(failure.value) == (
        "In row 2, PricingQuantity is 9223372036854775808, a number too large for Parquet's int64 column "
        f"(-2**63 to 2**63 - 1). The JSON formats and CSV keep it whole. {LAND_ELSEWHERE}"
    )


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("ContractedCost", "not-a-number", "Column ContractedCost holds 'not-a-number', which is not a number."),
        ("ContractedCost", True, "Column ContractedCost holds a boolean (True), not a number."),
        ("PricingQuantity", 1.5, "Column PricingQuantity holds 1.5, which is not an integer."),
        ("PricingQuantity", "many", "Column PricingQuantity holds 'many', which is not a number."),
        # A Decimal passes to pyarrow as it is; its refusal is explained by the column's name.
        ("BilledCost", Decimal("Infinity"), "Column BilledCost holds a non-finite number (Decimal('Infinity'))."),
        (
            "ChargePeriodStart",
            "2025-02-01T00:00:00",
            "Column ChargePeriodStart holds '2025-02-01T00:00:00', a date-time without a UTC offset; FOCUS "
            "date-times are UTC.",
        ),
        (
            "ChargePeriodStart",
            "yesterday",
            "Column ChargePeriodStart holds 'yesterday', which is not an ISO 8601 date-time.",
        ),
        (
            "ChargePeriodStart",
            "2025-02-01T00:00:00.0005Z",
            "Column ChargePeriodStart holds '2025-02-01T00:00:00.0005Z', finer than the milliseconds the Parquet "
            "schema keeps.",
        ),
    ],
)
def test_parquet_rejects_values_that_do_not_fit(column: str, value: Any, message: str) -> None:
    """Each refusal names the column and the value, in its whole message."""
    with pytest.raises(CloudflareResponseError) as failure:
        write([{column: value}], "parquet")
    assert str(failure.value) == message


def test_parquet_converts_offsets_to_utc() -> None:
    table = pq.read_table(io.BytesIO(write([{"ChargePeriodStart": "2025-02-01T02:00:00+02:00"}], "parquet")))
    assert table["ChargePeriodStart"].to_pylist() == [dt.datetime(2025, 2, 1, tzinfo=dt.timezone.utc)]


# -- determinism and empty results -----------------------------------------------------------------


@pytest.mark.parametrize("file_format", FILE_FORMATS)
def test_same_records_give_identical_bytes(sim: Any, file_format: str) -> None:
    records, _ = served(sim, FOCUS_ACCOUNT)
    reordered = [dict(reversed(list(r.items()))) for r in records]
    first, second = write(records, file_format), write(reordered, file_format)
    assert first == second
    assert write(json.loads(json.dumps(records)), file_format) == first


def test_empty_results_are_valid_files() -> None:
    assert write([], "jsonl") == b""
    assert json.loads(write([], "json")) == []
    assert write([], "csv") == (",".join(REQUIRED_COLUMNS) + "\r\n").encode()
    table = pq.read_table(io.BytesIO(write([], "parquet")))
    assert table.num_rows == 0
    assert table.column_names == list(REQUIRED_COLUMNS)
    assert table.schema.field("ContractedCost").type == pa.decimal128(38, 18)


def _batches_of_rows(rows: int) -> list[dict[str, Any]]:
    """``rows`` records of two unknown columns (ranked by name: ``x_a`` then ``x_b``), keys given the other way
    round; ``x_a`` needs CSV quoting and UTF-8."""
    return [{"x_b": Decimal(f"{row}.25"), "x_a": f'say "é", {row}'} for row in range(rows)]


@pytest.mark.parametrize("rows", [1, 2_000, 2_001, 4_003])  # one record; a whole batch; past one; three batches
def test_text_formats_are_exactly_these_bytes_across_write_batches(rows: int) -> None:
    """The writers encode and write 2,000 records at a time: the bytes are exactly the text written out here
    (an f-string per row, not the module's encoder), whichever batch a row fell in."""
    records = _batches_of_rows(rows)
    lines = [f'{{"x_a":"say \\"é\\", {row}","x_b":{row}.25}}' for row in range(rows)]
    assert write(records, "jsonl") == ("".join(line + "\n" for line in lines)).encode()
    assert write(records, "json") == ("[\n" + ",\n".join(lines) + "\n]\n").encode()
    # CSV's header is the columns it is given (write_records adds the API's required ones, tested above).
    buffer = io.BytesIO()
    writer = formats.open_writer(buffer, "csv", ["x_a", "x_b"])
    for record in records:
        writer.write(record)
    assert writer.close() == rows
    csv_rows = "".join(f'"say ""é"", {row}",{row}.25\r\n' for row in range(rows))
    assert buffer.getvalue() == ("x_a,x_b\r\n" + csv_rows).encode()


def test_a_declared_dataset_keeps_its_key_order_in_the_json_formats() -> None:
    """A declared dataset (FOCUS) keeps the order its records give, across batches, in JSON Lines and JSON."""
    records = _batches_of_rows(2_001)
    lines = [f'{{"x_b":{row}.25,"x_a":"say \\"é\\", {row}"}}' for row in range(2_001)]
    declared = {"x_b": formats.DECIMAL_KIND, "x_a": formats.STRING_KIND}
    for file_format, expected in (
        ("jsonl", "".join(line + "\n" for line in lines)),
        ("json", "[\n" + ",\n".join(lines) + "\n]\n"),
    ):
        buffer = io.BytesIO()
        writer = formats.open_writer(buffer, file_format, ["x_b", "x_a"], declared)
        for record in records:
            writer.write(record)
        assert writer.close() == 2_001
        assert buffer.getvalue() == expected.encode(), file_format


def test_json_text_keeps_plain_decimals() -> None:
    assert json_text({"a": 0.000005, "b": 3.0, "c": 150000, "d": None, "e": "x", "f": [1e22]}) == (
        '{"a":0.000005,"b":3.0,"c":150000,"d":null,"e":"x","f":[10000000000000000000000.0]}'
    )
    assert json.loads(json_text({"a": 0.000005, "f": [1e22]})) == {"a": 0.000005, "f": [1e22]}


def test_a_decimal_beyond_floats_range_is_written_whole() -> None:
    """1E+400 is a finite decimal (a float would be infinite): JSON text and CSV write every digit."""
    huge = Decimal("1E+400")
    assert json_text(huge) == "1" + "0" * 400 + ".0"
    rows = list(csv.DictReader(io.StringIO(write([{"ContractedCost": huge}], "csv").decode())))
    assert rows[0]["ContractedCost"] == "1" + "0" * 400 + ".0"


def test_parquet_writes_a_file_of_a_single_column() -> None:
    buffer = io.BytesIO()
    writer = formats.open_writer(buffer, "parquet", ["ContractedCost"])
    writer.write({"ContractedCost": Decimal("1.5")})
    writer.write({"ContractedCost": None})
    assert writer.close() == 2
    table = pq.read_table(io.BytesIO(buffer.getvalue()))
    assert table.column_names == ["ContractedCost"]
    assert table["ContractedCost"].to_pylist() == [Decimal("1.5"), None]


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="Unknown file format 'xlsx'"):
        write([], "xlsx")


@pytest.mark.parametrize(
    "record",
    [
        {"ServiceName": "nul \x00 inside", "ContractedCost": Decimal("1.5")},
        {"ServiceName": "\x001.5\x00", "ContractedCost": Decimal("2")},  # looks like a marked number
        {"ServiceName": "\\u0000 as text", "ContractedCost": Decimal("1E-7")},
        {"key \x00": Decimal("3.10"), "ZoneName": "line\u2028separator\x85"},
        {"ConsumedQuantity": 5e-06, "ListCost": [Decimal("1.0"), {"n": 2.5}]},
        {"ContractedCost": Decimal("1E+2"), "BillingCurrency": None, "x": True, "y": 10**30},
    ],
)
def test_jsonl_lines_are_json_text_of_each_record_in_column_order(record: dict[str, Any]) -> None:
    """The batched C-encoder path writes exactly json_text's bytes, whatever the strings hold."""
    ordered = {column: record[column] for column in column_order([record]) if column in record}
    expected = (json_text(ordered) + "\n").encode("utf-8")
    for batch in ([record], [record, record]):
        out = io.BytesIO()
        write_records(batch, out, "jsonl")
        assert out.getvalue() == expected * len(batch)
