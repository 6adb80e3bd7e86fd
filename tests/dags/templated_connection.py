"""Test DAG: the Cloudflare connection chosen by a template, as teams do per environment or per tenant.

``params.cloudflare_conn_id`` names the connection; ``cloudflare_default`` does not exist in the tests, so a
task that ignored the template would fail. The sensor confirms a closed period, then the operator lands it.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor

with DAG(
    "templated_connection",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"cloudflare_conn_id": "cloudflare_finops_team"},
):
    wait = CloudflareBillingPeriodSensor(
        task_id="wait",
        cloudflare_conn_id="{{ params.cloudflare_conn_id }}",
        target="2025-10-20",
        mode="poke",
    )
    land = CloudflarePaygoUsageOperator(
        task_id="land",
        cloudflare_conn_id="{{ params.cloudflare_conn_id }}",
        from_="{{ ti.xcom_pull(task_ids='wait')['start'] }}",
        to="{{ ti.xcom_pull(task_ids='wait')['end'] }}",
    )
    wait >> land
