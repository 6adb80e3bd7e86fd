"""Test DAG: the usage operator as a DAG author writes it, for the fault matrix's real DAG runs.

``CFBILLING_TEST_OUT`` (a ``file://`` URI) and ``CFBILLING_TEST_FORMAT`` are set by the test.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator

OUT = os.environ.get("CFBILLING_TEST_OUT", "file:///tmp/cfbilling-test")
FORMAT = os.environ.get("CFBILLING_TEST_FORMAT", "jsonl")

with DAG(
    "faults_matrix",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    CloudflarePaygoUsageOperator(task_id="land", destination=f"{OUT}/usage.{FORMAT}", retries=0)
