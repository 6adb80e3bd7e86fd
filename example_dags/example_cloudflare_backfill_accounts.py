"""
Backfill and multi-account: land past billing periods by logical date, for many accounts at once.

One mapped task per account (``.partial(...).expand(account_id=...)``). A run with logical date in month M+1
lands, for every account, the billing period containing the 1st of month M (``billing_period_of``): each
account's own period, computed from its own billing-cycle anchor, so accounts anchored on different days
stay correct side by side. Consecutive months give consecutive periods (every month holds exactly one
period start), and a period containing the 1st of M ends by the 1st of M+1 at the latest, so the run on
the 3rd finds it closed, with two days for late usage data.

Backfill past periods with ``airflow backfill create --dag-id example_cloudflare_backfill_accounts
--from-date 2025-02-01 --to-date 2025-11-30``; re-runs overwrite the same objects with identical bytes.

Configuration: the ``account_ids`` param (a list; default from ``CFBILLING_EXAMPLE_ACCOUNT_IDS``,
comma-separated, else the connection's account) and ``CFBILLING_EXAMPLE_BASE_URI`` (default
``file:///tmp/cloudflare-usage``), both read at parse time.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator

BASE_URI = os.environ.get("CFBILLING_EXAMPLE_BASE_URI", "file:///tmp/cloudflare-usage").rstrip("/")
ACCOUNT_IDS = [a.strip() for a in os.environ.get("CFBILLING_EXAMPLE_ACCOUNT_IDS", "").split(",") if a.strip()]


@dag(
    schedule="0 6 3 * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"account_ids": Param(ACCOUNT_IDS, type="array", description="Cloudflare account ids")},
    tags=["cloudflare", "finops", "example"],
)
def example_cloudflare_backfill_accounts() -> None:
    @task
    def account_ids(**context: Any) -> list[str | None]:
        """The accounts to land (the run's ``account_ids`` param); None stands for the connection's account."""
        return list(context["params"]["account_ids"]) or [None]

    CloudflarePaygoUsageOperator.partial(
        task_id="land_period",
        billing_period_of="{{ logical_date.subtract(months=1).start_of('month') | ds }}",
        destination=f"{BASE_URI}/periods/account={{account_id}}/billing_period={{billing_period}}/usage.parquet",
        max_active_tis_per_dagrun=4,
    ).expand(account_id=account_ids())


example_cloudflare_backfill_accounts()
