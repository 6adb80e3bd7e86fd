"""End to end on the real engine: every account of a token, fanned out over task processes, without a 429.

The test starts Airflow's components itself (see ``engine.py``: LocalExecutor with parallelism 4, sqlite,
loopback), creates the token's pool (4 slots, deferred tasks counted) and runs the example DAG
``example_cloudflare_all_accounts``: one task discovers the 20 accounts the token sees, 20 mapped tasks
land them, each in a process of its own, as Airflow runs every task. The simulator enforces a scaled-down
limit, 5 requests per 6 s with a 60 s block on excess, far less than the tasks would send unthrottled.

The same test runs on a distributed deployment (``celery``, see :class:`engine.CeleryEngine`): CeleryExecutor
with a Redis broker and a PostgreSQL metadata database, two Celery workers of 2 slots each, and must show
that both workers ran tasks (two hostnames in ``task_instance.hostname``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE_DAGS
from engine import CeleryEngine, Engine, wait_until

DAG_ID = "example_cloudflare_all_accounts"
ACCOUNTS = 20
POOL_SLOTS = 4
RUN_TIMEOUT = 600


@pytest.fixture(params=["local", "celery"])
def fleet_engine(request: pytest.FixtureRequest, sim: Any, tmp_path: Path) -> Iterator[tuple[Engine, list[str], Path]]:
    home = tmp_path / "airflow-home"
    (home / "dags").mkdir(parents=True)
    shutil.copy(EXAMPLE_DAGS / f"{DAG_ID}.py", home / "dags")
    token = "cfsim-fleet-e2e-token"
    accounts = sim.add_generated_accounts(ACCOUNTS)
    sim.add_token(token, accounts=accounts)
    sim.set_rate_limit((5, 6, 60))
    landing = tmp_path / "landing"
    connection = {
        "conn_type": "cloudflare",
        "host": sim.url,
        "password": token,
        "extra": {"concurrent_tasks": POOL_SLOTS},
    }
    env = {"AIRFLOW_CONN_CLOUDFLARE_DEFAULT": json.dumps(connection), "CFBILLING_EXAMPLE_BASE_URI": f"file://{landing}"}
    # Two workers of 2 slots: the pool's 4 slots span both.
    engine = CeleryEngine(home, env, workers=2, concurrency=2) if request.param == "celery" else Engine(home, env)
    try:
        engine.airflow("db", "migrate")
        engine.airflow("pools", "set", "cloudflare_billing", str(POOL_SLOTS), "Cloudflare token", "--include-deferred")
        engine.start()
        yield engine, accounts, landing
    finally:
        engine.stop()


@pytest.mark.e2e
@pytest.mark.timeout(RUN_TIMEOUT + 300)
def test_every_discovered_account_lands_once_and_the_token_is_never_rate_limited(
    fleet_engine: tuple[Engine, list[str], Path], sim: Any
) -> None:
    engine, accounts, landing = fleet_engine
    wait_until(engine, "the DAG to be parsed", lambda: engine.query("SELECT 1 FROM dag WHERE dag_id = ?", DAG_ID))
    engine.airflow("dags", "trigger", DAG_ID)

    # The DAG is daily and unpaused: besides the manual run, the scheduler may start the latest interval's
    # run. Every run fans out the same way, so both count.
    def runs() -> list[tuple[str, str]]:
        return engine.query("SELECT run_id, state FROM dag_run WHERE dag_id = ?", DAG_ID)

    def states() -> list[tuple[str, str, int, str]]:
        return engine.query("SELECT run_id, task_id, map_index, state FROM task_instance WHERE dag_id = ?", DAG_ID)

    def finished() -> bool:
        current = runs()
        # A run that failed early (its discovery failed: no mapped tasks) finishes too; the asserts tell.
        return any(run_id.startswith("manual__") for run_id, _ in current) and all(
            state in ("success", "failed") for _, state in current
        )

    wait_until(engine, "the fleet to finish", finished, timeout=RUN_TIMEOUT)

    assert {state for *_, state in states()} == {"success"}, f"{states()}\n{engine.diagnostics()}"
    assert len(states()) == len(runs()) * (1 + ACCOUNTS), states()
    log = sim.requests
    assert [r["status"] for r in log].count(429) == 0, [r["status"] for r in log]
    fetched = [r["account_id"] for r in log if r["path"].endswith("/billable-usage")]
    # A task that deferred for the rate limit fetches again when it resumes: at least once per run.
    assert set(fetched) == set(accounts) and all(fetched.count(a) >= len(runs()) for a in accounts)
    landed = sorted(p.relative_to(landing).parts[1] for p in landing.rglob("usage.jsonl"))
    assert landed == sorted(f"account={account}" for account in accounts)  # every account once
    if isinstance(engine, CeleryEngine):  # the fleet really was spread over both workers
        hostnames = {h for (h,) in engine.query("SELECT DISTINCT hostname FROM task_instance WHERE dag_id = ?", DAG_ID)}
        assert hostnames == {f"{worker}.cfbilling-e2e" for worker in engine.workers}, hostnames
    print(f"fleet e2e ({type(engine).__name__}): {len(runs())} run(s), {len(log)} requests, {len(fetched)} fetches")
