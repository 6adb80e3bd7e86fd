"""
Closed periods: once a billing period has closed, land exactly that period as Parquet and emit an Asset; re-land
the periods before it, so that a restatement by Cloudflare is caught.

The monthly close pipeline. A run on the 1st of a month waits (deferred: no worker slot) for the account's
billing period containing that day to close: its end plus two days for late usage data, confirmed by the
API. The operator then fetches exactly that period, ``[start, end)`` from the sensor's XCom, into
``account=<id>/billing_period=<start YYYY-MM-DD>/usage.parquet`` and records the manifest (rows, sha256,
totals per currency and service, reconciliation) as the extra of an event on the ``cloudflare_usage_closed``
Asset, which can schedule the downstream cost-allocation DAGs.

**Look-back**: Cloudflare can restate a closed period. Each run also re-lands the ``look_back_periods``
(a run parameter, default 1) closed periods before the one just closed, one mapped task each, at the same
paths. A period whose figures did not change is left as it is (the manifest says ``"unchanged": true``); one
that changed is replaced atomically, its manifest records the replaced object and its totals
(``"restatement": true``), the task logs one warning, and the ``cloudflare_usage_restatements`` alias gets an
event for the replaced object (an alias gets events only for objects written), with the manifest as its extra.

Every month has exactly one billing-period start per account, so monthly runs land every period exactly once,
whatever the account's anchor day (the 1st, the 14th, the 31st). Backfilling past months lands past periods.

Configuration, read at parse time: ``CFBILLING_EXAMPLE_BASE_URI`` (default ``file:///tmp/cloudflare-usage``).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, AssetAlias, Param, dag, task

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor

BASE_URI = os.environ.get("CFBILLING_EXAMPLE_BASE_URI", "file:///tmp/cloudflare-usage").rstrip("/")
CLOSED_USAGE = Asset(name="cloudflare_usage_closed", uri=f"{BASE_URI}/closed_periods/")
RESTATEMENTS = AssetAlias(name="cloudflare_usage_restatements")
DESTINATION = f"{BASE_URI}/closed_periods/account={{account_id}}/billing_period={{billing_period}}/usage.parquet"
PERIOD = "ti.xcom_pull(task_ids='wait_for_close')"


@dag(
    schedule="0 6 1 * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "look_back_periods": Param(
            1, type="integer", minimum=0, maximum=24, description="Closed periods before this one to re-land"
        )
    },
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
        destination=DESTINATION,
        outlets=[CLOSED_USAGE],
        retries=3,
        retry_delay=timedelta(minutes=5),
    )

    @task
    def earlier_periods(period: dict[str, Any], params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        """The ``look_back_periods`` billing periods before ``period``, newest first, as the operator's window."""
        from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook

        hook = CloudflareBillingHook()
        windows: list[dict[str, str]] = []
        start = pendulum.parse(period["start"])
        for _ in range(int((params or {})["look_back_periods"])):
            # The day before a period's start lies in the period before it.
            earlier = hook.get_billing_period(
                period["account_id"], at=start.subtract(days=1), subscription_id=period["subscription_id"]
            )
            windows.append({"from_": earlier.start.isoformat(), "to": earlier.end.isoformat()})
            start = earlier.start
        return windows

    reland_earlier_periods = CloudflarePaygoUsageOperator.partial(
        task_id="reland_earlier_periods",
        account_id=f"{{{{ {PERIOD}['account_id'] }}}}",
        destination=DESTINATION,
        outlets=[RESTATEMENTS],
        retries=3,
        retry_delay=timedelta(minutes=5),
    ).expand_kwargs(earlier_periods(wait_for_close.output))
    wait_for_close >> land_closed_period
    wait_for_close >> reland_earlier_periods


example_cloudflare_closed_periods()
