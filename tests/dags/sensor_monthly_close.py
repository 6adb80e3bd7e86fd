"""
Test DAG: wait for a billing period to close, then hand its bounds to a booking task.

The shape of a FinOps month-end close: the sensor gates, the next task fetches exactly the period the
sensor named. The tests run it in each sensor mode and move the simulator's clock; what varies between
runs comes from the environment:

- ``SENSOR_MODE``: ``deferrable`` (default), ``poke`` or ``reschedule``
- ``SENSOR_TARGET``: an instant inside the period to wait for (default: the run's data interval start)
- ``SENSOR_ACCOUNT_ID``: the account (default: the connection's)
- ``SENSOR_SETTLE_SECONDS``: the settle time (default 3600)
- ``SENSOR_TIMEOUT_SECONDS``: the sensor's timeout (default 60); ``SENSOR_SOFT_FAIL=1`` skips on timeout
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor

MODE = os.environ.get("SENSOR_MODE", "deferrable")


def book(from_: str, to: str, anchor: str) -> str:
    """Stands in for the usage operator: it receives exactly the period's bounds."""
    print(f"booking Cloudflare usage from {from_} to {to} (anchor {anchor})")
    return f"{from_}/{to}"


with DAG(
    dag_id="sensor_monthly_close",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
):
    wait = CloudflareBillingPeriodSensor(
        task_id="wait",
        account_id=os.environ.get("SENSOR_ACCOUNT_ID"),
        target=os.environ.get("SENSOR_TARGET"),
        settle=timedelta(seconds=float(os.environ.get("SENSOR_SETTLE_SECONDS", "3600"))),
        deferrable=MODE == "deferrable",
        mode="reschedule" if MODE == "reschedule" else "poke",
        poke_interval=1,
        timeout=float(os.environ.get("SENSOR_TIMEOUT_SECONDS", "60")),
        soft_fail=os.environ.get("SENSOR_SOFT_FAIL") == "1",
    )
    booking = PythonOperator(
        task_id="book",
        python_callable=book,
        op_kwargs={
            "from_": "{{ ti.xcom_pull(task_ids='wait')['start'] }}",
            "to": "{{ ti.xcom_pull(task_ids='wait')['end'] }}",
            "anchor": "{{ ti.xcom_pull(task_ids='wait')['anchor'] }}",
        },
    )
    wait >> booking
