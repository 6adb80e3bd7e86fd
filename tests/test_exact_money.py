"""Exact money: a cost is read from the API's JSON text and lands with every digit, in every format.

A DAG author's view first: costs with more digits than a binary float keeps (the simulator's
``long_decimals`` fault) land digit for digit in JSONL, JSON, CSV and Parquet, and the manifest's totals are
the exact sums. Then the two paths numbers take (in memory, spooled), integers above 2**63, what Parquet
cannot hold, the XCom boundary, and property tests over number texts of up to 38 significant digits.

The oracle is the simulator's raw answer with every number kept as its literal text
(``parse_float=str``-like parsing), never our own conversion.
"""

from __future__ import annotations

import csv
import decimal
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import fetch_answer
from conftest import run_operator as run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_cfbilling.exceptions import CloudflareResponseError
from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook
from airflow_provider_cfbilling.testing.simulator import LARGE_ACCOUNT, STANDARD_ACCOUNT
from airflow_provider_cfbilling.utils import formats
from airflow_provider_cfbilling.utils.formats import write_records, xcom_records
from airflow_provider_cfbilling.utils.spool import SpooledRecords

MONEY = ("ContractedCost", "CumulatedContractedCost", "BilledCost", "EffectiveCost", "ListCost")


class Literal(str):
    """A JSON number kept as the text the API wrote (``parse_float``/``parse_int`` hook)."""


def literal_json(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Literal, parse_int=Literal)


def served_literals(sim: Any, account: str = STANDARD_ACCOUNT, **query: str) -> list[dict[str, Any]]:
    """The simulator's records, every number as its literal text (fetched without the hook)."""
    return literal_json(fetch_answer(sim, account, **query))["result"]


def exact_sum(records: list[dict[str, Any]], column: str) -> Decimal:
    with decimal.localcontext(prec=100):  # the default 28 digits would round long costs
        return sum((Decimal(r[column]) for r in records), Decimal(0))


# -- what a DAG author sees -------------------------------------------------------------------------------


@pytest.mark.parametrize("file_format", ["jsonl", "json", "csv", "parquet"])
def test_costs_beyond_a_floats_digits_land_digit_for_digit(
    sim: Any, cloudflare_conn: str, tmp_path: Path, file_format: str
) -> None:
    sim.add_fault("long_decimals", digits=17)  # up to 18 decimal places: Parquet's scale
    api = served_literals(sim)
    # The test can fail: a float loses digits of most of these costs.
    assert sum(Decimal(repr(float(r["ContractedCost"]))) != Decimal(r["ContractedCost"]) for r in api) > len(api) / 2

    target = tmp_path / f"usage.{file_format}"
    manifest = run(destination=target.as_uri())

    if file_format == "jsonl":
        landed = [literal_json(line) for line in target.read_text().splitlines()]
    elif file_format == "json":
        landed = literal_json(target.read_text())
    elif file_format == "csv":
        landed = list(csv.DictReader(io.StringIO(target.read_text(), newline="")))
    else:
        landed = pq.read_table(target).to_pylist()
    assert len(landed) == len(api)
    for got, want in zip(landed, api, strict=True):
        for column in (*MONEY, "ConsumedQuantity", "PricingQuantity", "CumulatedPricingQuantity"):
            if file_format == "parquet":
                assert got[column] == Decimal(want[column]), column  # the exact value, in decimal(38, 18)
            else:
                assert str(got[column]) == str(want[column]), column  # the API's very text
    totals = manifest["totals"]
    assert Decimal(totals["by_currency"]["USD"]) == exact_sum(api, "ContractedCost")
    assert totals["by_currency"]["USD"] == format(exact_sum(api, "ContractedCost").normalize(), "f")
    assert manifest["reconciliation"]["ok"] is True  # the running sums agree exactly


def test_a_cost_parquet_cannot_hold_fails_before_anything_is_written(
    sim: Any, cloudflare_conn: str, tmp_path: Path
) -> None:
    sim.add_fault("long_decimals", digits=18)  # some costs need 19 decimal places
    target = tmp_path / "usage.parquet"
    with pytest.raises(CloudflareResponseError) as failure:
        run(destination=target.as_uri())
    message = str(failure.value)
    assert STANDARD_ACCOUNT in message  # the account
    assert "decimal(38, 18)" in message and "without rounding" in message
    assert "file_format='jsonl'" in message  # what to do
    column, value = next(
        (c, r[c]) for r in served_literals(sim) for c in formats.DECIMAL_COLUMNS if c in message and r[c] in message
    )
    assert len(value.split(".")[1]) > 18, (column, value)
    assert list(tmp_path.iterdir()) == []  # no object, no staged file


# -- the two paths: in memory and spooled --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["in_memory", "spooled"])
def test_the_hook_reads_numbers_from_the_text_on_both_paths(
    sim: Any, cloudflare_conn: str, tmp_path: Path, path: str
) -> None:
    sim.add_fault("long_decimals", digits=38)
    hook = CloudflareBillingHook()
    records = hook.get_paygo_usage() if path == "in_memory" else hook.download_paygo_usage(directory=str(tmp_path))
    api = served_literals(sim)
    got = list(records)
    for row, want in zip(got, api, strict=True):
        for column in MONEY:
            assert isinstance(row[column], Decimal) and str(row[column]) == want[column], column
        assert type(row["PricingQuantity"]) is int


@pytest.mark.parametrize("path", ["in_memory", "spooled"])
def test_an_integer_above_2_63_lands_whole_and_parquet_names_why_it_cannot(
    sim: Any, cloudflare_conn: str, tmp_path: Path, path: str
) -> None:
    """Not 'a proxy page or a cut-off body': the spooled path parses it exactly, as the in-memory one does."""
    sim.add_fault("huge_integer")
    hook = CloudflareBillingHook()
    records = hook.get_paygo_usage() if path == "in_memory" else hook.download_paygo_usage(directory=str(tmp_path))
    api = served_literals(sim)
    assert [r["PricingQuantity"] for r in records] == [int(r["PricingQuantity"]) for r in api]
    assert min(r["PricingQuantity"] for r in records) > 2**63

    out = tmp_path / "out"
    out.mkdir()
    if path == "spooled":
        assert isinstance(records, SpooledRecords)
        jsonl = out / "usage.jsonl"
        run(destination=jsonl.as_uri())  # the operator spools every answer bound for a file
        landed = [literal_json(line) for line in jsonl.read_text().splitlines()]
        assert [r["CumulatedPricingQuantity"] for r in landed] == [r["CumulatedPricingQuantity"] for r in api]
    with pytest.raises(CloudflareResponseError, match=r"too large for Parquet's int64 column") as failure:
        run(destination=(out / "usage.parquet").as_uri())
    assert STANDARD_ACCOUNT in str(failure.value) and "JSON formats and CSV keep it whole" in str(failure.value)
    assert not (out / "usage.parquet").exists()


def test_a_large_spooled_answer_keeps_exact_sums(sim: Any, cloudflare_conn: str, tmp_path: Path) -> None:
    sim.set_large_zones(3)
    sim.add_fault("long_decimals", digits=16)  # at most 18 decimal places on this account
    manifest = run(account_id=LARGE_ACCOUNT, destination=(tmp_path / "usage.parquet").as_uri())
    api = served_literals(sim, LARGE_ACCOUNT)
    assert manifest["rows"] == len(api)
    assert Decimal(manifest["totals"]["by_currency"]["USD"]) == exact_sum(api, "ContractedCost")
    table = pq.read_table(tmp_path / "usage.parquet")
    assert sum(table["ContractedCost"].to_pylist(), Decimal(0)) == exact_sum(api, "ContractedCost")


# -- XCom: the one place numbers become floats ------------------------------------------------------------


def test_xcom_records_are_plain_json_and_survive_airflows_serialization(sim: Any, cloudflare_conn: str) -> None:
    """Airflow's serde would store a Decimal as a tagged float; the operator hands it plain floats instead."""
    import types

    from airflow.sdk.bases.xcom import BaseXCom

    sim.add_fault("long_decimals", digits=17)
    records = run()  # XCom mode

    api = served_literals(sim)
    assert [r["ContractedCost"] for r in records] == [float(r["ContractedCost"]) for r in api]
    assert all(type(v) is not Decimal for r in records for v in r.values())
    # What the task runner stores, and what a downstream task reads back.
    stored = json.dumps(BaseXCom.serialize_value(records))
    assert "__classname__" not in stored  # no Decimal reached Airflow's serde
    assert BaseXCom.deserialize_value(types.SimpleNamespace(value=json.loads(stored))) == records


def test_xcom_records_turn_nested_decimals_into_floats() -> None:
    record = {"a": Decimal("0.1"), "b": [Decimal("2.5"), {"c": Decimal("1E+2")}], "d": 7, "e": "x", "f": None}
    assert xcom_records([record]) == [{"a": 0.1, "b": [2.5, {"c": 100.0}], "d": 7, "e": "x", "f": None}]


# -- properties: any number text up to 38 significant digits --------------------------------------------------

# Number texts as an API may write them: a sign, up to 38 significant digits, a decimal point anywhere
# (or none, then ".0" keeps it a decimal literal), optionally an exponent.
number_texts = st.builds(
    lambda sign, digits, point, exponent: (
        sign
        + (digits[:point].lstrip("0") or "0")
        + "."
        + (digits[point:] or "0")
        + (f"e{exponent}" if exponent is not None else "")
    ),
    st.sampled_from(["", "-"]),
    st.text(alphabet="0123456789", min_size=1, max_size=38),
    st.integers(min_value=0, max_value=38),
    st.one_of(st.none(), st.integers(min_value=-20, max_value=20)),
)
PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTIES
@given(st.lists(number_texts, min_size=1, max_size=8))
def test_any_number_text_round_trips_through_the_text_formats(texts: list[str]) -> None:
    body = '{"success":true,"result":[' + ",".join(f'{{"ContractedCost":{t},"x_Extra":[{t}]}}' for t in texts) + "]}"
    in_memory = json.loads(body, parse_float=Decimal)["result"]
    spooled = _spooled(body)
    assert [str(r["ContractedCost"]) for r in spooled] == [str(r["ContractedCost"]) for r in in_memory]
    expected = [Decimal(t) for t in texts]
    for records in (in_memory, spooled):
        for file_format in ("jsonl", "json", "csv"):
            out = io.BytesIO()
            write_records(records, out, file_format)
            text = out.getvalue().decode()
            if file_format == "csv":
                rows = list(csv.DictReader(io.StringIO(text, newline="")))
                back = [Decimal(r["ContractedCost"]) for r in rows]
                extra = [json.loads(r["x_Extra"], parse_float=Decimal)[0] for r in rows]
            else:
                parsed = (
                    [json.loads(line, parse_float=Decimal) for line in text.splitlines()]
                    if file_format == "jsonl"
                    else json.loads(text, parse_float=Decimal)
                )
                back = [r["ContractedCost"] for r in parsed]
                extra = [r["x_Extra"][0] for r in parsed]
            assert back == expected, file_format
            assert extra == expected, file_format


@PROPERTIES
@given(st.lists(number_texts, min_size=1, max_size=8))
def test_parquet_holds_a_number_exactly_or_refuses_it(texts: list[str]) -> None:
    body = '{"success":true,"result":[' + ",".join(f'{{"ContractedCost":{t}}}' for t in texts) + "]}"
    records = json.loads(body, parse_float=Decimal)["result"]
    expected = [Decimal(t) for t in texts]
    fits = all(
        d.copy_abs() < Decimal(10) ** 20 and d == d.quantize(Decimal("1e-18"), context=formats._WIDE) for d in expected
    )
    out = io.BytesIO()
    if not fits:
        with pytest.raises(CloudflareResponseError, match="without rounding"):
            write_records(records, out, "parquet")
        assert out.getvalue() == b""  # refused before the writer opened
        return
    write_records(records, out, "parquet")
    assert pq.read_table(io.BytesIO(out.getvalue()))["ContractedCost"].to_pylist() == expected


def _spooled(body: str) -> list[dict[str, Any]]:
    """The records as the spooled path parses them (ijson over a file)."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        handle.write(body)
    with SpooledRecords(handle.name, 0) as records:
        return list(records)
