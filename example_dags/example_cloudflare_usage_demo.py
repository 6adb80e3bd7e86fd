"""
The demo: fetch this billing period's Cloudflare usage and print rows and cost per service.

The smallest useful pipeline: the operator lands the current billing period's records in XCom, a task
summarises them. It reads the ``cloudflare_default`` connection at run time only, so the same file works
against the real API (a token with Billing Read) or the local simulator (``scripts/run_demo.py``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["cloudflare", "finops", "example"],
)
def example_cloudflare_usage_demo() -> None:
    usage = CloudflarePaygoUsageOperator(task_id="fetch_usage")

    @task
    def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
        """Rows and cost per service, summed exactly (costs are decimals, not floats)."""
        by_service: dict[str, dict[str, Any]] = {}
        for record in records:
            entry = by_service.setdefault(record["ServiceName"], {"rows": 0, "cost": Decimal(0)})
            entry["rows"] += 1
            entry["cost"] += Decimal(str(record["ContractedCost"]))
        currency = records[0]["BillingCurrency"] if records else "USD"
        lines = [f"{'service':<28}{'rows':>6}  {'cost (' + currency + ')':>14}"]
        for name, entry in sorted(by_service.items()):
            lines.append(f"{name:<28}{entry['rows']:>6}  {entry['cost']:>14.6f}")
        total = sum((entry["cost"] for entry in by_service.values()), Decimal(0))
        lines.append(f"{'TOTAL':<28}{len(records):>6}  {total:>14.6f}")
        print("\n".join(lines))
        return {name: {"rows": e["rows"], "cost": str(e["cost"])} for name, e in by_service.items()}

    summarise(usage.output)


example_cloudflare_usage_demo()
