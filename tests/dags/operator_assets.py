"""Test DAG: the usage operator with an outlet Asset (the dataset's root) and an AssetAlias.

The Asset's event carries the manifest as its extra; the alias resolves to the object actually written
(a templated path no static Asset can name). ``CFBILLING_TEST_OUT`` (a ``file://`` URI) is set by the test.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Asset, AssetAlias

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator

OUT = os.environ.get("CFBILLING_TEST_OUT", "file:///tmp/cfbilling-test")

with DAG(
    "operator_assets",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    CloudflarePaygoUsageOperator(
        task_id="land",
        billing_period_of="2025-10-01",
        destination=f"{OUT}/account={{account_id}}/usage.parquet",
        # Named by its URI (the default): one name per test directory, so a second run in the same metadata
        # database (another test session, a mutation-testing phase) never meets a name taken by another URI.
        outlets=[Asset(uri=f"{OUT}/"), AssetAlias("cloudflare_usage_files")],
    )
