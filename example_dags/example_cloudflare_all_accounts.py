"""
Every account a token can see: discover them, then land each one's current billing period, daily.

``discover_accounts`` asks Cloudflare's List Accounts (``GET /accounts``, every page) which accounts the
connection's token sees; ``land_current_period`` is mapped over them (``.expand(account_id=...)``), one
task per account, each overwriting ``account=<id>/billing_period=<YYYY-MM-DD>/usage.jsonl`` (Hive-style
partitions, the account's own billing cycle). An account added in Cloudflare is picked up by the next run.

**One pool per token.** Every task here runs in the pool ``cloudflare_billing``
(``CFBILLING_EXAMPLE_POOL``), so that all of them together stay within the token's rate limit on any number of
workers and machines. Create it once, counting deferred tasks, and tell the connection its size::

    airflow pools set cloudflare_billing 8 "Cloudflare API token of cloudflare_default" --include-deferred
    # connection cloudflare_default, extra: {"concurrent_tasks": 8}

Why this holds, and how to size the pool: "Many accounts, one token" in the hook's documentation.

Configuration, read at parse time: ``CFBILLING_EXAMPLE_BASE_URI`` (default ``file:///tmp/cloudflare-usage``)
and ``CFBILLING_EXAMPLE_POOL`` (default ``cloudflare_billing``). The Cloudflare connection
(``cloudflare_default``) is read at run time only.
"""

from __future__ import annotations

import datetime as dt
import os

import pendulum
from airflow.sdk import dag, task

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator

BASE_URI = os.environ.get("CFBILLING_EXAMPLE_BASE_URI", "file:///tmp/cloudflare-usage").rstrip("/")
POOL = os.environ.get("CFBILLING_EXAMPLE_POOL", "cloudflare_billing")


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cloudflare", "finops", "example"],
)
def example_cloudflare_all_accounts() -> None:
    @task(pool=POOL)
    def discover_accounts() -> list[str]:
        """The ids of every account the connection's token can see."""
        from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook

        hook = CloudflareBillingHook()
        try:
            return [account["id"] for account in hook.list_accounts()]
        finally:
            # This task holds a slot of the token's pool, like the operator: before the slot passes to the
            # next task, whose first request goes out before it can read the budget, leave the window safe.
            hook.wait_for_rate_limit_handover()

    CloudflarePaygoUsageOperator.partial(
        task_id="land_current_period",
        destination=f"{BASE_URI}/all_accounts/account={{account_id}}/billing_period={{billing_period}}/usage.jsonl",
        pool=POOL,
        deferrable=True,
        # A task that still fails (e.g. Cloudflare blocked the token for another client's excess) tries again.
        retries=2,
        retry_delay=dt.timedelta(minutes=5),
    ).expand(account_id=discover_accounts())


example_cloudflare_all_accounts()
