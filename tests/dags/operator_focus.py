"""Test DAG: FOCUS records handed on through XCom, the FOCUS version chosen by a template (``params``)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator

with DAG(
    "operator_focus",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"focus_version": "1.2"},
):
    CloudflarePaygoUsageOperator(
        task_id="land",
        billing_period_of="2025-10-01",
        focus_version="{{ params.focus_version }}",
    )
