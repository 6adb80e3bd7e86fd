"""A lake layout a query engine reads: several accounts and billing periods landed in Hive-style partitions,
read back whole by DuckDB, whose SQL sums must equal the manifests' exact totals.

DuckDB (a dev dependency) stands in for the warehouse a FinOps team points at the bucket.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.testing.simulator import ANCHOR31_ACCOUNT, FOCUS_ACCOUNT, STANDARD_ACCOUNT

LAYOUT = "billing_period={billing_period}/account_id={account_id}/usage.parquet"
ACCOUNTS = (STANDARD_ACCOUNT, ANCHOR31_ACCOUNT, FOCUS_ACCOUNT)
PERIODS_OF = ("2025-09-20", "2025-10-20")  # a date inside each billing period to land, per account's own cycle


def land_tree(root: Path, focus_version: str | None) -> list[dict[str, Any]]:
    manifests = []
    for account in ACCOUNTS:
        for day in PERIODS_OF:
            operator = CloudflarePaygoUsageOperator(
                task_id="land",
                account_id=account,
                billing_period_of=day,
                destination=f"{root.as_uri()}/{LAYOUT}",
                focus_version=focus_version,
            )
            manifests.append(operator.execute({}))
    return manifests


def sql_totals(root: Path, cost_column: str) -> dict[tuple[str, str], Decimal]:
    query = f"""
        SELECT account_id, billing_period, BillingAccountId, sum({cost_column})
        FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true, union_by_name = true)
        GROUP BY ALL
    """
    rows = duckdb.sql(query).fetchall()
    totals = {}
    for account_id, billing_period, account_in_rows, total in rows:
        assert account_in_rows == account_id  # the partition names the rows' own account
        totals[(str(account_id), str(billing_period))] = Decimal(total)
    return totals


def manifest_totals(manifests: list[dict[str, Any]]) -> dict[tuple[str, str], Decimal]:
    totals = {}
    for manifest in manifests:
        (period,) = manifest["billing_periods"]
        key = (manifest["account_id"], period[:10])
        totals[key] = sum((Decimal(v) for v in manifest["totals"]["by_currency"].values()), Decimal(0))
    return totals


@pytest.mark.parametrize(
    ("focus_version", "cost_column"), [(None, "ContractedCost"), ("1.2", "BilledCost")], ids=["as served", "FOCUS 1.2"]
)
def test_duckdb_reads_the_tree_and_its_sums_equal_the_manifests(
    sim: Any, cloudflare_conn: str, tmp_path: Path, focus_version: str | None, cost_column: str
) -> None:
    manifests = land_tree(tmp_path, focus_version)
    assert len({m["uri"] for m in manifests}) == len(ACCOUNTS) * len(PERIODS_OF)  # one object per account and period

    sql = sql_totals(tmp_path, cost_column)

    assert sql == manifest_totals(manifests)
    assert all(total > 0 for total in sql.values())
