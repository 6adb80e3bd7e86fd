"""Defaults that come from Airflow's configuration, read at the moment Airflow reads them.

Each case runs in a fresh interpreter with ``[operators] default_deferrable`` set one way or the other, so a
default written into the code (``deferrable: bool = False``) fails one of the two. The expected values are
written out here, never computed from the classes under test.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, airflow_env

BUILD_BOTH = (
    "import json\n"
    "from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator\n"
    "from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor\n"
    "operator = CloudflarePaygoUsageOperator(task_id='usage')\n"
    "sensor = CloudflareBillingPeriodSensor(task_id='wait')\n"
    "print(json.dumps({'operator': operator.deferrable, 'sensor': sensor.deferrable}))\n"
)


@pytest.mark.parametrize(("setting", "expected"), [("True", True), ("False", False)])
def test_deferrable_follows_operators_default_deferrable(setting: str, expected: bool) -> None:
    env = {**airflow_env(), "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": setting}
    out = subprocess.run(
        [sys.executable, "-c", BUILD_BOTH], capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"operator": expected, "sensor": expected}


def test_an_explicit_deferrable_wins_over_the_setting() -> None:
    env = {**airflow_env(), "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"}
    code = BUILD_BOTH.replace("task_id='usage')", "task_id='usage', deferrable=False)").replace(
        "task_id='wait')", "task_id='wait', deferrable=False)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"operator": False, "sensor": False}
