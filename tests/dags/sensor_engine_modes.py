"""
Test DAG for the real engine: the billing-period sensor in its three modes, side by side.

Each sensor waits on its own simulator account, so the test can read each mode's API bill from the
simulator's request log. All three periods close at the same wall-clock moment, ``SENSOR_CLOSE_AT`` (set by
the test a few seconds ahead): the settle of each sensor stretches from its period's end to that moment.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor
from airflow_provider_cfbilling.testing.simulator import ANCHOR31_ACCOUNT, FOCUS_ACCOUNT, STANDARD_ACCOUNT

CLOSE_AT = pendulum.parse(os.environ.get("SENSOR_CLOSE_AT", "2025-12-16T00:00:00Z"))
TARGET = "2025-11-20"
# mode -> (account, end of the billing period containing TARGET on that account's cycle)
WAITS = {
    "deferrable": (STANDARD_ACCOUNT, pendulum.datetime(2025, 12, 14, tz="UTC")),  # anchor 2025-01-14
    "poke": (ANCHOR31_ACCOUNT, pendulum.datetime(2025, 11, 30, tz="UTC")),  # anchor 2024-01-31
    "reschedule": (FOCUS_ACCOUNT, pendulum.datetime(2025, 12, 1, tz="UTC")),  # anchor 2025-06-01
}


def book(from_: str, to: str) -> str:
    print(f"booking Cloudflare usage from {from_} to {to}")
    return f"{from_}/{to}"


with DAG(
    dag_id="sensor_engine_modes",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    sensors = {
        mode: CloudflareBillingPeriodSensor(
            task_id=f"wait_{mode}",
            account_id=account_id,
            target=TARGET,
            settle=CLOSE_AT - end,
            deferrable=mode == "deferrable",
            mode="reschedule" if mode == "reschedule" else "poke",
            poke_interval=1,
            timeout=120,
        )
        for mode, (account_id, end) in WAITS.items()
    }
    sensors["deferrable"] >> PythonOperator(
        task_id="book",
        python_callable=book,
        op_kwargs={
            "from_": "{{ ti.xcom_pull(task_ids='wait_deferrable')['start'] }}",
            "to": "{{ ti.xcom_pull(task_ids='wait_deferrable')['end'] }}",
        },
    )
