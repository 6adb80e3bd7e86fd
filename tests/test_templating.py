"""The Cloudflare connection id is templated in the operator and the sensor, like the other ids.

A real ``dag.test()`` run against the simulator: the connection is named only through ``params``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import connection_uri_json

from airflow_provider_cfbilling.exceptions import CloudflareBillingInputError
from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor
from airflow_provider_cfbilling.testing.simulator import SIM_TOKEN, STANDARD_ACCOUNT

DAG_FILE = Path(__file__).parent / "dags" / "templated_connection.py"


def test_operator_and_sensor_use_the_connection_a_template_names(
    sim: Any, dag_runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_FINOPS_TEAM", connection_uri_json(sim.url, SIM_TOKEN, STANDARD_ACCOUNT))

    result = dag_runner(DAG_FILE, "templated_connection")

    assert result.task_states == {"wait": "success", "land": "success"}
    assert result.xcom("wait")["start"] == "2025-10-14T00:00:00Z"
    records = result.xcom("land")
    assert records and {r["BillingPeriodStart"] for r in records} == {"2025-10-14T00:00:00Z"}
    # Every request carried the templated connection's token (the simulator knows no other here).
    assert sim.requests and all(r["status"] == 200 for r in sim.requests)


@pytest.mark.parametrize(
    ("task_class", "kwargs"),
    [(CloudflarePaygoUsageOperator, {}), (CloudflareBillingPeriodSensor, {"target": "2025-10-20", "mode": "poke"})],
)
def test_a_connection_template_rendering_to_nothing_is_refused_before_any_request(
    sim: Any, task_class: type, kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_DEFAULT", connection_uri_json(sim.url, SIM_TOKEN, STANDARD_ACCOUNT))
    # No account id either: the task must ask the connection for it, and so meet the blank id first.
    task = task_class(task_id="t", cloudflare_conn_id=" ", **kwargs)

    with pytest.raises(CloudflareBillingInputError, match=r"cloudflare_conn_id=' ' is blank.*render to nothing"):
        task.execute({})

    assert sim.requests == []
