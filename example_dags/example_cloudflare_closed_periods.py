"""
Closed periods: once a billing period has closed, land exactly that period as Parquet and emit an Asset.

The monthly close pipeline. A run on the 1st of a month waits (deferred: no worker slot) for the account's
billing period containing that day to close: its end plus two days for late usage data, confirmed by the
API. The operator then fetches exactly that period, ``[start, end)`` from the sensor's XCom, into
``account=<id>/billing_period=<start YYYY-MM-DD>/usage.parquet`` and records the manifest (rows, sha256,
totals per currency and service, reconciliation) as the extra of an event on the ``cloudflare_usage_closed``
Asset, which can schedule the downstream cost-allocation DAGs.

Every month has exactly one billing-period start per account, so monthly runs land every period exactly once,
whatever the account's anchor day (the 1st, the 14th, the 31st). Backfilling past months lands past periods.

Configuration, read at parse time: ``CFBILLING_EXAMPLE_BASE_URI`` (default ``file:///tmp/cloudflare-usage``).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor

BASE_URI = os.environ.get("CFBILLING_EXAMPLE_BASE_URI", "file:///tmp/cloudflare-usage").rstrip("/")
CLOSED_USAGE = Asset(name="cloudflare_usage_closed", uri=f"{BASE_URI}/closed_periods/")
PERIOD = "ti.xcom_pull(task_ids='wait_for_close')"


@dag(
    schedule="0 6 1 * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["cloudflare", "finops", "example"],
)
def example_cloudflare_closed_periods() -> None:
    wait_for_close = CloudflareBillingPeriodSensor(
        task_id="wait_for_close",
        deferrable=True,
        timeout=timedelta(days=35),
    )
    land_closed_period = CloudflarePaygoUsageOperator(
        task_id="land_closed_period",
        account_id=f"{{{{ {PERIOD}['account_id'] }}}}",
        from_=f"{{{{ {PERIOD}['start'] }}}}",
        to=f"{{{{ {PERIOD}['end'] }}}}",
        destination=f"{BASE_URI}/closed_periods/account={{account_id}}/billing_period={{billing_period}}/usage.parquet",
        outlets=[CLOSED_USAGE],
        retries=3,
        retry_delay=timedelta(minutes=5),
    )
    wait_for_close >> land_closed_period


example_cloudflare_closed_periods()
