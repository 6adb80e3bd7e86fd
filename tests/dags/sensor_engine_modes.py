"""
Test DAG for the real engine: the billing-period sensor in its three modes, side by side.

Each sensor waits on its own simulator account, so the test can read each mode's API bill from the
simulator's request log. All three periods close at the same wall-clock moment, the run's ``close_at`` (the
test triggers the run with it in its conf, a little after the trigger): each sensor's settle stretches from
its period's end to that moment. Computing it at trigger time, not when the components start, keeps a slow
start-up from eating the margin the sensors need to make their first check before it.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor
from airflow_provider_cfbilling.testing.simulator import ANCHOR31_ACCOUNT, FOCUS_ACCOUNT, STANDARD_ACCOUNT

TARGET = "2025-11-20"
# mode -> (account, end of the billing period containing TARGET on that account's cycle)
WAITS = {
    "deferrable": (STANDARD_ACCOUNT, pendulum.datetime(2025, 12, 14, tz="UTC")),  # anchor 2025-01-14
    "poke": (ANCHOR31_ACCOUNT, pendulum.datetime(2025, 11, 30, tz="UTC")),  # anchor 2024-01-31
    "reschedule": (FOCUS_ACCOUNT, pendulum.datetime(2025, 12, 1, tz="UTC")),  # anchor 2025-06-01
}


class CloseAtSensor(CloudflareBillingPeriodSensor):
    """The sensor with its settle taken from the run's ``close_at`` (test scaffolding: settle is a timedelta
    fixed when the DAG is parsed; this sets it each time the sensor reads its inputs, before any check)."""

    def __init__(self, *, period_end: pendulum.DateTime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.period_end = period_end

    def _read_inputs(self, context: Any) -> None:
        self.settle = pendulum.parse(context["dag_run"].conf["close_at"]) - self.period_end
        super()._read_inputs(context)


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
        mode: CloseAtSensor(
            task_id=f"wait_{mode}",
            account_id=account_id,
            period_end=end,
            target=TARGET,
            deferrable=mode == "deferrable",
            mode="reschedule" if mode == "reschedule" else "poke",
            # Well above the few seconds a worker takes to report a deferred or rescheduled try finished:
            # shorter re-deferrals meet a race inside Airflow (a late executor event for the same try).
            poke_interval=10,
            timeout=180,
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
