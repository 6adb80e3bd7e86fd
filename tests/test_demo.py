"""The README's first command: the demo DAG against the simulator, through real Airflow."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import requests
from conftest import EXAMPLE_DAGS, REPO_ROOT

from airflow_provider_cfbilling.testing.simulator import SIM_TOKEN, STANDARD_ACCOUNT


def test_demo_dag_summarises_rows_and_cost_per_service(sim, cloudflare_conn, dag_runner):
    result = dag_runner(EXAMPLE_DAGS / "example_cloudflare_usage_demo.py", "example_cloudflare_usage_demo")

    assert result.state == "success", result.task_states
    served = requests.get(
        f"{sim.url}/accounts/{STANDARD_ACCOUNT}/billable-usage",
        headers={"Authorization": f"Bearer {SIM_TOKEN}"},
        timeout=10,
    ).json()["result"]
    expected: dict[str, dict[str, object]] = {}
    for row in served:
        entry = expected.setdefault(row["ServiceName"], {"rows": 0, "cost": Decimal(0)})
        entry["rows"] += 1  # type: ignore[operator]
        entry["cost"] += Decimal(str(row["ContractedCost"]))  # type: ignore[operator]
    summary = result.xcom("summarise")
    assert {name: (e["rows"], Decimal(e["cost"])) for name, e in summary.items()} == {
        name: (e["rows"], e["cost"]) for name, e in expected.items()
    }
    assert len(summary) >= 3


def test_demo_script_runs_airflow_dags_test_end_to_end(tmp_path):
    run = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "run_demo.py")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "DAG run state: success" in run.stdout
    lines = run.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("service"))
    total = next(line for line in lines if line.startswith("TOTAL"))
    assert header < lines.index(total)
    assert Decimal(total.split()[-1]) > 0
