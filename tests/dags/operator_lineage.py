"""Test DAG: the usage operator's OpenLineage facets, one task landing a closed period, one returning XCom.

``CFBILLING_TEST_OUT`` (a ``file://`` URI) and ``CFBILLING_TEST_FOCUS`` (a FOCUS version, or empty) are set by
the test.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator

OUT = os.environ.get("CFBILLING_TEST_OUT", "file:///tmp/cfbilling-test")

with DAG(
    "operator_lineage",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    CloudflarePaygoUsageOperator(
        task_id="land",
        billing_period_of="2025-10-20",
        destination=f"{OUT}/account={{account_id}}/billing_period={{billing_period}}/usage.parquet",
        focus_version=os.environ.get("CFBILLING_TEST_FOCUS") or None,
    )
    CloudflarePaygoUsageOperator(task_id="to_xcom", billing_period_of="2025-10-20")
