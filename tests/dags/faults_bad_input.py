"""Test DAG: templates that render to nothing, each on its own task; every task must fail before any request.

The params default to empty strings, as a missing Variable or an unset param would render.
``CFBILLING_TEST_OUT`` (a ``file://`` URI) is set by the test.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor

OUT = os.environ.get("CFBILLING_TEST_OUT", "file:///tmp/cfbilling-test")

with DAG(
    "faults_bad_input",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"start": "", "end": "", "uri": "", "name": "", "account": ""},
    default_args={"retries": 0},
):
    CloudflarePaygoUsageOperator(task_id="empty_window", from_="{{ params.start }}", to="{{ params.end }}")
    CloudflarePaygoUsageOperator(task_id="empty_destination", destination="{{ params.uri }}")
    CloudflarePaygoUsageOperator(task_id="folder_destination", destination=f"{OUT}/{{{{ params.name }}}}")
    CloudflarePaygoUsageOperator(task_id="empty_account", account_id="{{ params.account }}")
    CloudflareBillingPeriodSensor(task_id="empty_target", target="{{ params.start }}", mode="reschedule")
