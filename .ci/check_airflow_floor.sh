#!/usr/bin/env bash
# The declared floor is apache-airflow 3.1: run the tests of every public class (hook, operator, sensor,
# trigger, example DAGs, demo) against Airflow 3.1.8 too, in a venv of its own. The main suite runs on the
# locked 3.3.2; here only Airflow is pinned, and the resolver picks what 3.1.8 accepts.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
uv venv --quiet --python python3.11 "$venv"
uv pip install --quiet --python "$venv/bin/python" "apache-airflow==3.1.8" apache-airflow-providers-standard \
  requests pendulum ijson pyarrow hypothesis pytest pytest-timeout
uv pip install --quiet --python "$venv/bin/python" --no-deps -e .
"$venv/bin/python" -c "import airflow; print('Airflow', airflow.__version__)"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_hook.py tests/test_operator.py tests/test_sensor.py \
  tests/test_trigger.py tests/test_periods.py tests/test_example_dags.py tests/test_demo.py
