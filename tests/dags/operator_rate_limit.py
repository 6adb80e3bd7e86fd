"""Test DAG: a deferrable usage operator meets a long 429, waits in the triggerer, resumes and lands.

``CFBILLING_TEST_OUT`` (a ``file://`` URI) is where the file goes; the test sets it.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator

OUT = os.environ.get("CFBILLING_TEST_OUT", "file:///tmp/cfbilling-test")

with DAG(
    "operator_rate_limit",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    CloudflarePaygoUsageOperator(task_id="land", destination=f"{OUT}/usage.jsonl", deferrable=True)
