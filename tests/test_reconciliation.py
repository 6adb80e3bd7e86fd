"""Reconciliation as a user reads it in the manifest: every field of a mismatch, against figures computed here.

The simulator sends one row whose ``ContractedCost`` disagrees with the movement of
``CumulatedContractedCost`` (its ``cost_mismatch`` fault); the expected entry is computed in this file from the
API's answer fetched without the provider, with plain decimal arithmetic.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import fetch_answer

from airflow_provider_cfbilling.exceptions import CloudflareResponseError
from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.testing.simulator import LARGE_ACCOUNT, STANDARD_ACCOUNT
from airflow_provider_cfbilling.utils.reconcile import RunningReconciliation, reconcile


def served(sim: Any, account: str, **query: str) -> list[dict[str, Any]]:
    return list(json.loads(fetch_answer(sim, account, **query), parse_float=Decimal)["result"])


def plain(number: Decimal) -> str:
    text = format(number, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def expected_entry(rows: list[dict[str, Any]], day: str, service: str, zoned: bool) -> dict[str, Any]:
    def group(row: dict[str, Any]) -> tuple[Any, ...]:
        return (row["BillingPeriodStart"], row["BillingCurrency"], row["ServiceName"], row.get("ZoneId"))

    bad = next(r for r in rows if r["ChargePeriodStart"] == f"{day}T00:00:00Z" and r["ServiceName"] == service)
    same = sorted((r for r in rows if group(r) == group(bad)), key=lambda r: r["ChargePeriodStart"])
    before = same[same.index(bad) - 1]
    movement = bad["CumulatedContractedCost"] - before["CumulatedContractedCost"]
    entry = {
        "BillingPeriodStart": bad["BillingPeriodStart"],
        "BillingCurrency": bad["BillingCurrency"],
        "ServiceName": service,
        **({"ZoneId": bad["ZoneId"]} if zoned else {}),
        "ChargePeriodStart": bad["ChargePeriodStart"],
        "ContractedCost": plain(bad["ContractedCost"]),
        "CumulatedContractedCost": plain(bad["CumulatedContractedCost"]),
        "previous_CumulatedContractedCost": plain(before["CumulatedContractedCost"]),
        "movement": plain(movement),
        "difference": plain(bad["ContractedCost"] - movement),
    }
    return entry


def land(tmp_path: Path, account: str) -> dict[str, Any]:
    destination = (tmp_path / f"{account}.jsonl").as_uri()
    operator = CloudflarePaygoUsageOperator(
        task_id="land", account_id=account, billing_period_of="2025-10-01", destination=destination
    )
    return operator.execute({})


def test_a_mismatch_is_reported_field_by_field(sim: Any, cloudflare_conn: str, tmp_path: Path) -> None:
    sim.add_fault("cost_mismatch", day="2025-09-20", service="Workers Standard", delta="999.5")
    rows = served(sim, STANDARD_ACCOUNT, **{"from": "2025-09-14", "to": "2025-10-13"})

    check = land(tmp_path, STANDARD_ACCOUNT)["reconciliation"]

    expected = expected_entry(rows, "2025-09-20", "Workers Standard", zoned=False)
    assert expected["difference"] == "999.5"
    assert check == {
        "ok": False,
        "rows_checked": len(rows),
        "groups": len({(r["ServiceName"]) for r in rows}),
        "mismatch_count": 1,
        "mismatches": [expected],
    }


def test_zone_level_rows_are_reconciled_per_zone(sim: Any, cloudflare_conn: str, tmp_path: Path) -> None:
    sim.set_large_zones(3)
    sim.add_fault("cost_mismatch", day="2025-10-05", service="Workers Standard", delta="-0.000001")
    rows = served(sim, LARGE_ACCOUNT, **{"from": "2025-10-01", "to": "2025-10-31"})

    check = land(tmp_path, LARGE_ACCOUNT)["reconciliation"]

    expected = expected_entry(rows, "2025-10-05", "Workers Standard", zoned=True)
    assert expected["difference"] == "-0.000001" and "ZoneId" in expected
    assert check == {
        "ok": False,
        "rows_checked": len(rows),
        "groups": len({(r["ServiceName"], r["ZoneId"]) for r in rows}),
        "mismatch_count": 1,
        "mismatches": [expected],
    }


def october_row(day: int, cost: Any, cumulated: Any) -> dict[str, Any]:
    """One Workers Standard row of October 2025, as a caller outside the operator might pass it."""
    return {
        "BillingPeriodStart": "2025-10-01T00:00:00Z",
        "BillingCurrency": "USD",
        "ServiceName": "Workers Standard",
        "ChargePeriodStart": f"2025-10-0{day}T00:00:00Z",
        "ContractedCost": cost,
        "CumulatedContractedCost": cumulated,
    }


def test_a_null_cost_is_listed_and_breaks_the_chain_in_both_reconcilers() -> None:
    """Used outside the operator (which refuses null costs before reconciling), a null cost is a listed
    mismatch, and the next row anchors the chain again instead of being checked against it."""
    rows = [
        october_row(1, Decimal("1.5"), Decimal("1.5")),
        october_row(2, Decimal("0.25"), None),
        october_row(3, Decimal("9"), Decimal("20")),
        october_row(4, Decimal("1.25"), Decimal("21.25")),
    ]
    expected = {
        "ok": False,
        "rows_checked": 2,  # day 1 from zero, day 4 against day 3; day 3 only anchors again
        "groups": 1,
        "mismatch_count": 1,
        "mismatches": [
            {
                "BillingPeriodStart": "2025-10-01T00:00:00Z",
                "BillingCurrency": "USD",
                "ServiceName": "Workers Standard",
                "ChargePeriodStart": "2025-10-02T00:00:00Z",
                "ContractedCost": "0.25",
                "CumulatedContractedCost": None,
                "previous_CumulatedContractedCost": "1.5",
                "problem": "null cost value",
            }
        ],
    }
    assert reconcile(rows) == expected
    running = RunningReconciliation(complete_periods=True)
    for record in rows:
        running.add(record)
    assert running.in_order
    assert running.result() == expected


def test_a_cost_that_is_not_a_number_is_named_by_its_column() -> None:
    """Used outside the operator (whose contract check refuses such a row first), the reconciliation names the
    column of a cost that is not a number."""
    with pytest.raises(CloudflareResponseError) as failure:
        reconcile([october_row(1, "abc", Decimal(1))])
    assert str(failure.value) == "Column ContractedCost holds 'abc', which is not a number."
    with pytest.raises(CloudflareResponseError) as failure:
        reconcile([october_row(1, Decimal(1), True)])
    assert str(failure.value) == "Column CumulatedContractedCost holds a boolean (True), not a number."
