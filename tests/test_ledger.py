"""The single pass over an answer (utils/ledger.py): what it writes equals the writers' own output for the
same kept records, whatever the order of columns' first appearance, and it refuses what the checks refuse."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq
import pytest

from airflow_provider_cfbilling.exceptions import CloudflareResponseError
from airflow_provider_cfbilling.utils.formats import FILE_FORMATS, write_records
from airflow_provider_cfbilling.utils.ledger import UsageLedger
from airflow_provider_cfbilling.utils.reconcile import cost_totals, reconcile

UTC = dt.timezone.utc


def usage(days: int, zones: int) -> list[dict[str, Any]]:
    """A January 2025 answer: one row per zone per day, cumulated exactly; the last zone has a ZoneName."""
    rows = []
    for zone in range(zones):
        cumulated = Decimal(0)
        for day in range(days):
            cost = Decimal(zone + 1) / 8 + Decimal(day) / 1000
            cumulated += cost
            row: dict[str, Any] = {
                "BillingCurrency": "USD",
                "BillingPeriodStart": "2025-01-01T00:00:00Z",
                "ChargePeriodEnd": f"2025-01-{day + 2:02d}T00:00:00Z",
                "ChargePeriodStart": f"2025-01-{day + 1:02d}T00:00:00Z",
                "ConsumedQuantity": day,
                "ConsumedUnit": "GB",
                "ContractedCost": cost,
                "CumulatedContractedCost": cumulated,
                "CumulatedPricingQuantity": day,
                "PricingQuantity": 1,
                "ServiceName": "Workers",
                "ZoneId": f"zone{zone}",
            }
            if zone == zones - 1:
                row["ZoneName"] = "late.example.com"  # a column first seen far into the answer
            rows.append(row)
    return sorted(rows, key=lambda r: r["ChargePeriodStart"])  # the API's order: day by day


@pytest.mark.parametrize("file_format", FILE_FORMATS)
def test_the_pass_writes_what_the_writers_write_for_the_kept_rows(file_format: str) -> None:
    records = usage(days=20, zones=300)  # 6,000 rows: several Parquet batches; ZoneName only in the last zone
    start, end = dt.datetime(2025, 1, 3, tzinfo=UTC), dt.datetime(2025, 1, 15, tzinfo=UTC)
    kept = [r for r in records if "2025-01-03" <= r["ChargePeriodStart"][:10] < "2025-01-15"]
    expected = io.BytesIO()
    write_records(kept, expected, file_format)

    ledger = UsageLedger("the usage", start, end)
    out = io.BytesIO()
    assert ledger.write(records, out, file_format) == len(kept)
    assert out.getvalue() == expected.getvalue()
    assert (ledger.fetched, ledger.kept) == (len(records), len(kept))
    assert ledger.totals.as_dict() == cost_totals(kept)
    assert ledger.reconcile(records) == reconcile(kept, start)
    assert ledger.reconcile(records)["ok"] and ledger.reconcile(records)["rows_checked"] == len(kept) - 300


def test_rows_out_of_the_apis_order_are_reconciled_in_a_second_pass() -> None:
    records = usage(days=5, zones=3)
    records[4]["CumulatedContractedCost"] += 1  # a mismatch
    shuffled = records[::-1]
    ledger = UsageLedger("the usage")
    ledger.run(shuffled)
    assert ledger.reconcile(shuffled) == reconcile(records, dt.datetime(2025, 1, 1, tzinfo=UTC))
    assert ledger.reconcile(shuffled)["mismatch_count"] == 2  # that row, and the next one of its zone


def test_out_of_order_current_period_rows_are_all_checked_from_the_periods_first_day() -> None:
    """The current period's answer is complete from the period's first day: a zone first used on day 3 is
    checked from zero, in the second pass too, so a wrong first row of it is found."""
    records = [
        r for r in usage(days=5, zones=3) if not (r["ZoneId"] == "zone1" and r["ChargePeriodStart"] < "2025-01-03")
    ]
    for record in records:
        if record["ZoneId"] == "zone1":  # its running sum starts on day 3
            record["CumulatedContractedCost"] -= Decimal(2) / 8 + Decimal(0) / 1000 + Decimal(2) / 8 + Decimal(1) / 1000
    first_of_zone1 = next(r for r in records if r["ZoneId"] == "zone1")
    first_of_zone1["CumulatedContractedCost"] += 1  # a mismatch only a check from zero sees

    ledger = UsageLedger("the usage")
    ledger.run(records[::-1])
    result = ledger.reconcile(records[::-1])
    assert result["rows_checked"] == len(records) == 13
    assert [(m["ZoneId"], m["ChargePeriodStart"]) for m in result["mismatches"]] == [
        ("zone1", "2025-01-03T00:00:00Z"),
        ("zone1", "2025-01-04T00:00:00Z"),  # the next row moves from the wrong figure
    ]


def test_a_value_parquet_cannot_hold_is_refused_with_its_row_in_a_later_batch() -> None:
    records = usage(days=10, zones=500)  # 5,000 rows
    records[4_321]["ListCost"] = Decimal("0.1234567890123456789")  # 19 places: Parquet keeps 18
    with pytest.raises(CloudflareResponseError, match=r"The usage: In row 4322, ListCost .* without rounding"):
        UsageLedger("the usage").write(records, io.BytesIO(), "parquet")


def test_a_broken_contract_stops_the_pass_with_the_row() -> None:
    records = usage(days=3, zones=2)
    records[3]["ContractedCost"] = "1.5"
    with pytest.raises(CloudflareResponseError, match=r"row 4: .*ContractedCost holds the string '1.5'"):
        UsageLedger("the usage").write(records, io.BytesIO(), "jsonl")


def test_parquet_row_groups_and_row_count() -> None:
    records = usage(days=30, zones=1000)  # 30,000 rows
    out = io.BytesIO()
    UsageLedger("the usage").write(records, out, "parquet")
    metadata = pq.read_metadata(io.BytesIO(out.getvalue()))
    assert metadata.num_rows == len(records)
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [25_000, 5_000]
