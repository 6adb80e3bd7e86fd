"""Shared fixtures: a throw-away Airflow home, the Cloudflare API simulator, and a DAG runner.

Airflow reads its configuration when first imported, so the environment is set here, at the top of the
first module pytest imports, before anything imports ``airflow``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DAGS = REPO_ROOT / "example_dags"

# Guarded so that importing this module a second time (e.g. as ``tests.conftest``) keeps the same home.
_AIRFLOW_HOME = Path(
    os.environ.get("_CFBILLING_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="cfbilling-airflow-home-")
)
os.environ["_CFBILLING_TEST_AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
_DAGS_FOLDER = _AIRFLOW_HOME / "dags"
_DAGS_FOLDER.mkdir(exist_ok=True)
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(_DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)
# A connection left over from the developer's shell must not leak into the tests.
os.environ.pop("AIRFLOW_CONN_CLOUDFLARE_DEFAULT", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under mutation testing (scripts/mutation.sh), run a mutant's tests fastest first.

    mutmut hands a worker the tests that reached the mutated function in an unordered set and stops at the first
    failure (``-x``): with the quickest tests first, a killed mutant costs the time of its quickest failing test
    instead of whichever slow test came first. Each test's time comes from mutmut's first pass
    (``mutmut-stats.json`` beside ``tests/`` in ``mutants/``). Outside a mutant's run nothing is reordered.
    """
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    stats = REPO_ROOT / "mutmut-stats.json"
    if not stats.exists():
        return
    seconds = json.loads(stats.read_text())["duration_by_test"]
    items.sort(key=lambda item: seconds.get(item.nodeid, float("inf")))  # stable: file order among equals


def airflow_env() -> dict[str, str]:
    """The environment for an ``airflow`` subprocess that shares the tests' Airflow home."""
    return dict(os.environ)


def connection_uri_json(
    url: str,
    token: str,
    account_id: str | None = None,
    login: str | None = None,
    **extra: Any,
) -> str:
    """The JSON form of an ``AIRFLOW_CONN_*`` variable for a ``cloudflare`` connection."""
    extras: dict[str, Any] = dict(extra)
    if account_id is not None:
        extras["account_id"] = account_id
    conn: dict[str, Any] = {"conn_type": "cloudflare", "host": url, "password": token, "extra": extras}
    if login is not None:
        conn["login"] = login
    return json.dumps(conn)


def fetch_answer(sim: Any, account: str, route: str = "billable-usage", **query: str) -> bytes:
    """The body the simulator serves for an account's usage, fetched without the provider (the reference answer
    the tests compare with), with the full-access token."""
    import requests

    from airflow_provider_cfbilling.testing.simulator import SIM_TOKEN

    response = requests.get(
        f"{sim.url}/accounts/{account}/{route}",
        params=query,
        headers={"Authorization": f"Bearer {SIM_TOKEN}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.content


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[Any]:
    """One simulator for the whole session; ``sim`` resets it for each test."""
    import datetime as dt

    from airflow_provider_cfbilling.testing.simulator import CloudflareSimulator

    server = CloudflareSimulator(today=dt.date(2025, 11, 20)).start()
    yield server
    server.stop()


@pytest.fixture
def sim(simulator_server: Any) -> Any:
    """The simulator, reset to its start state (clock 2025-11-20, no faults, empty request log).

    The hook's per-process memory of moved endpoint paths is cleared too: a test that moves a path must not
    decide where the next test's first request goes. So are the per-process rate-limit budgets: the
    simulator's counters start afresh, and a budget must not carry the last test's window into this one.
    """
    from airflow_provider_cfbilling.hooks import billing
    from airflow_provider_cfbilling.utils import ratelimit

    simulator_server.reset()
    with billing._learned_paths_lock:
        billing._learned_paths.clear()
    with ratelimit._budgets_lock:
        ratelimit._budgets.clear()
    return simulator_server


@pytest.fixture
def cloudflare_conn(sim: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """``cloudflare_default`` pointing at the simulator with a Billing Read token; returns the conn id."""
    from airflow_provider_cfbilling.testing.simulator import SIM_TOKEN, STANDARD_ACCOUNT

    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_DEFAULT", connection_uri_json(sim.url, SIM_TOKEN, STANDARD_ACCOUNT))
    return "cloudflare_default"


@pytest.fixture
def use_conn(sim: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``cloudflare_default`` pointing at the simulator (as ``cloudflare_conn``), and a function to change it.

    ``use_conn(token=..., account_id=..., login=..., **extra)`` re-points the connection with other
    credentials or extras (e.g. ``max_retry_wait=0``) and returns a hook on it.
    """
    from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook
    from airflow_provider_cfbilling.testing.simulator import SIM_TOKEN, STANDARD_ACCOUNT

    def _use(token: str = SIM_TOKEN, account_id: str | None = STANDARD_ACCOUNT, **extra: Any) -> Any:
        monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_DEFAULT", connection_uri_json(sim.url, token, account_id, **extra))
        return CloudflareBillingHook()

    _use()
    return _use


def run_operator(*, render_with: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Build the operator as a DAG author would (``task_id`` "usage" unless given) and execute it outside a
    DAG run. ``context`` is the execution context (default: outlet events only); with ``render_with``, the
    templates are first rendered against that context, as the task runner does.
    """
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator

    kwargs.setdefault("task_id", "usage")
    context: Any = kwargs.pop("context", None) or {"outlet_events": OutletEventAccessors()}
    operator = CloudflarePaygoUsageOperator(**kwargs)
    if render_with is not None:
        operator.render_template_fields(render_with)  # type: ignore[arg-type]
    return operator.execute(context)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated sqlite metadata DB in the session's Airflow home (about 5 s, once)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=airflow_env(),
        check=True,
        capture_output=True,
    )
    return _AIRFLOW_HOME


@dataclass
class DagRunResult:
    """What a test wants to know after a DAG run: its state, each task's state and XComs."""

    state: str
    run_id: str
    task_states: dict[str, str]
    xcoms: dict[tuple[str, str, int], Any]

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        return self.xcoms[(task_id, key, map_index)]


def run_dag(dag_file: Path, dag_id: str, **test_kwargs: Any) -> DagRunResult:
    """Run one DAG for real with ``dag.test()`` (in-process; deferred tasks run their trigger inline).

    The file is copied into the DAGs folder first: ``dag.test()`` serialises the DAG from there.
    """
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    # Only the DAG under test in the DAGs folder: Airflow may parse the whole folder during a run, and another
    # test's DAG parsed under this test's environment would register its assets with the wrong URIs.
    for other in _DAGS_FOLDER.glob("*.py"):
        other.unlink()
    target = _DAGS_FOLDER / dag_file.name
    shutil.copy(dag_file, target)
    bag = DagBag(dag_folder=str(target))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[dag_id]
    dagrun = dag.test(**test_kwargs)
    with create_session() as session:
        task_states = {
            ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": str(ti.state)
            for ti in dagrun.get_task_instances(session=session)
        }
        rows = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == dagrun.run_id).all()
        xcoms = {(row.task_id, row.key, row.map_index): row.value for row in rows}
    return DagRunResult(str(dagrun.state), dagrun.run_id, task_states, xcoms)


@pytest.fixture
def dag_runner(airflow_db: Path) -> Any:
    """``run_dag`` with the metadata DB ready."""
    return run_dag


# -- S3: moto's server on loopback -----------------------------------------------------------------------

BUCKET = "finops-landing"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-protocol server on loopback (moto's server mode), one per test module."""
    import moto.server as moto_server

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def moto_connection(conn_id: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An ``aws`` connection ``conn_id`` pointing at moto's S3 server; returns a boto3 client on that server."""
    import boto3

    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
            }
        ),
    )
    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """A fresh bucket and an ``aws`` connection (unique id: Airflow caches a filesystem per connection)."""
    import uuid

    conn_id = f"aws_moto_{uuid.uuid4().hex[:8]}"
    client = moto_connection(conn_id, s3_endpoint, monkeypatch)
    client.create_bucket(Bucket=BUCKET)
    yield client, conn_id
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def keys(client: Any) -> list[str]:
    """The bucket's keys, sorted."""
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def body(client: Any, key: str) -> bytes:
    """An object's bytes, read back with boto3."""
    return bytes(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
