"""
Month-to-date, daily: land the current billing period's usage every day, one object per account and period.

Each run asks the API for the current billing period (no window parameters: the API's own definition) and
overwrites ``account=<id>/billing_period=<YYYY-MM-DD>/usage.jsonl``. The operator fills ``{account_id}`` and
``{billing_period}`` in the destination after the fetch, so the object follows the account's billing cycle
(not the calendar month) and a day Cloudflare restates is picked up by the next run. The write is atomic and
byte-identical for identical data, so re-runs and retries are safe.

The period's last day can still change after the period closes (usage data lags up to 24 h): the
closed-periods DAG (``example_cloudflare_closed_periods``) lands each period once it is final.

Configuration, read at parse time: ``CFBILLING_EXAMPLE_BASE_URI`` (default ``file:///tmp/cloudflare-usage``),
e.g. ``s3://my-finops-bucket/cloudflare`` with ``destination_conn_id`` set to an ``aws`` connection. The
Cloudflare connection (``cloudflare_default``) is read at run time only.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator

BASE_URI = os.environ.get("CFBILLING_EXAMPLE_BASE_URI", "file:///tmp/cloudflare-usage").rstrip("/")


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cloudflare", "finops", "example"],
)
def example_cloudflare_month_to_date() -> None:
    CloudflarePaygoUsageOperator(
        task_id="land_month_to_date",
        destination=f"{BASE_URI}/month_to_date/account={{account_id}}/billing_period={{billing_period}}/usage.jsonl",
    )


example_cloudflare_month_to_date()
