"""5. Rate limits across a fleet: every account of one token, one Airflow task each, on real deployments.

The example DAG ``example_cloudflare_all_accounts`` (one task discovers the token's accounts, one mapped
task per account lands its current period, deferrable, in the token's pool) runs on deployments started
by the benchmark on loopback (see ``tests/engine.py``):

* ``celery``: CeleryExecutor, Redis broker, PostgreSQL 15 metadata database, two Celery workers of 4 slots
  each, api-server, scheduler, dag-processor and triggerer; pool of 8 slots;
* ``local-4`` and ``local-8``: LocalExecutor with parallelism 4 (pool of 4) and 8 (pool of 8), sqlite.

On each deployment, three runs of the same DAG, each with a fresh token (a fresh window on the API's side;
every task is a fresh process, so a fresh budget on the client's side) seeing the same accounts, after a
warm-up run over two accounts (a deployment's first run is slower), which is not reported:

* **limit lifted**: the deployment's own pace, the baseline of the minimum below;
* **pool-aware budget**: the connection's ``concurrent_tasks`` set to the pool's slots, as documented: each
  task keeps ``slots - 1`` requests of every window for the others and hands its slot over safely;
* **per-process budget only** (the baseline the issue asked for): ``concurrent_tasks`` = 1, the default,
  i.e. each task's budget knows only its own requests. That is the provider before pool-aware sharing, with
  two differences that favour the baseline: the budget still keeps the floor of 2 % of the reported quota
  (here 1 request), and a task that itself saw the window spent down to that floor hands its slot over.

The simulator enforces a scaled-down limit: 45 requests per 60 s per token, a 120 s block on excess (a block
as long as Cloudflare's can be). The limit must bind at the deployment's pace, or neither budget is put to
the test: on two shared cores Airflow runs about one of these tasks per second, under the 2 requests/s of
the issue's example (60 per 30 s), at which no run was throttled or blocked. 45 per 60 s (0.75/s) binds,
and keeps the pool-aware budget's reserve (7 of a pool of 8) from costing a window of its own for ~110
requests: the reserve costs ``slots - 1`` requests per window, 0.6 % of Cloudflare's real 1,200.
The minimum the limit allows: the requests of the limit-lifted run, sent at that run's pace but never more
than the quota per window. The DAG copy is unscheduled (``schedule=None``), so that only the benchmark's
runs run; otherwise it is the example as shipped.

Sizes: ``BENCH_FLEET_ACCOUNTS`` (default 100) and ``BENCH_FLEET_DEPLOYMENTS`` (default
``celery,local-4,local-8``) in the environment. Smoke mode does not start a deployment (that takes minutes
on two cores): ``tests/test_fleet_e2e.py`` runs the same deployments in CI, and asserts their answers.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, Section, SimulatorProcess, Target, ratio, secs, simulator, times

TITLE = "5. Rate limits across a fleet of tasks (Celery and LocalExecutor)"
TARGET_VS_MINIMUM = 1.3
DAG_ID = "example_cloudflare_all_accounts"
POOL = "cloudflare_billing"
#: requests, window seconds, block seconds (``BENCH_FLEET_LIMIT``, e.g. ``60/30/120``); see the docstring
LIMIT = tuple(int(part) for part in os.environ.get("BENCH_FLEET_LIMIT", "45/60/120").split("/"))
LIFTED = (10**9, 300, 0)
RUN_TIMEOUT = 1800.0
#: name -> (executor, pool slots)
DEPLOYMENTS = {"celery": ("celery", 8), "local-4": ("local", 4), "local-8": ("local", 8)}
CLIENTS = {
    "lifted": "limit lifted (pace baseline)",
    "pool": "**pool-aware budget** (`concurrent_tasks` = slots)",
    "process": "per-process budget only (`concurrent_tasks` = 1)",
}


@dataclass
class Outcome:
    seconds: float  # the DAG run's start to end, as Airflow recorded them
    tasks: int
    failed: int
    requests: int
    too_many_requests: int
    blocks: int  # 429s that started a block: the first 429 after an answer that was not one


def minimum_seconds(requests: int, paced_seconds: float, quota: int, window: float) -> float:
    """Least seconds for ``requests`` at the pace of ``paced_seconds`` for all, never more than ``quota``
    requests per window: the limit's waits on top of the deployment's own pace."""
    rate = requests / paced_seconds
    left, elapsed = float(requests), 0.0
    while left > min(quota, rate * window):
        left -= min(quota, rate * window)
        elapsed += window
    return elapsed + left / rate


def _engine_module() -> Any:
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return importlib.import_module("engine")


def _timestamp(value: Any) -> dt.datetime:
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _deploy(name: str, home: Path, landing: Path) -> Any:
    engine_module = _engine_module()
    kind, slots = DEPLOYMENTS[name]
    (home / "dags").mkdir(parents=True)
    source = (REPO / "example_dags" / f"{DAG_ID}.py").read_text()
    assert 'schedule="@daily"' in source, "the example DAG's schedule moved: update the benchmark's copy"
    (home / "dags" / f"{DAG_ID}.py").write_text(source.replace('schedule="@daily"', "schedule=None"))
    env = {"CFBILLING_EXAMPLE_BASE_URI": f"file://{landing}", "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
    if kind == "celery":
        engine = engine_module.CeleryEngine(home, env, workers=2, concurrency=slots // 2)
    else:
        engine = engine_module.Engine(home, {**env, "AIRFLOW__CORE__PARALLELISM": str(slots)})
    try:
        engine.airflow("db", "migrate")
        engine.airflow("pools", "set", POOL, str(slots), "Cloudflare token", "--include-deferred")
        engine.start()
        engine_module.wait_until(
            engine, "the DAG to be parsed", lambda: engine.query("SELECT 1 FROM dag WHERE dag_id = ?", DAG_ID)
        )
    except BaseException:
        engine.stop()
        raise
    return engine


def _run(engine: Any, sim: SimulatorProcess, token: str, concurrent_tasks: int, limit: tuple[int, int, int]) -> Outcome:
    connection = {"conn_type": "cloudflare", "host": sim.url, "password": token}
    connection["extra"] = {"concurrent_tasks": concurrent_tasks}
    existing = engine.query("SELECT 1 FROM connection WHERE conn_id = ?", "cloudflare_default")
    if existing:
        engine.airflow("connections", "delete", "cloudflare_default")
    engine.airflow("connections", "add", "cloudflare_default", "--conn-json", json.dumps(connection))
    sim.configure(rate_limit=list(limit))  # also starts the counters afresh
    logged = len(sim.requests())
    before = {run_id for (run_id,) in engine.query("SELECT run_id FROM dag_run WHERE dag_id = ?", DAG_ID)}
    engine.airflow("dags", "trigger", DAG_ID)
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        runs = engine.query("SELECT run_id, state, start_date, end_date FROM dag_run WHERE dag_id = ?", DAG_ID)
        new = [run for run in runs if run[0] not in before]
        if new and new[0][1] in ("success", "failed"):
            run_id, _, start, end = new[0]
            break
        engine.check_alive()
        assert time.monotonic() < deadline, f"the run did not finish in {RUN_TIMEOUT:.0f} s\n{engine.diagnostics()}"
        time.sleep(1)
    states = [s for (s,) in engine.query("SELECT state FROM task_instance WHERE run_id = ?", run_id)]
    statuses = [entry["status"] for entry in sim.requests()[logged:]]
    blocks = sum(1 for previous, status in zip([None, *statuses], statuses, strict=False) if status == 429 != previous)
    return Outcome(
        seconds=(_timestamp(end) - _timestamp(start)).total_seconds(),
        tasks=len(states),
        failed=sum(1 for state in states if state != "success"),
        requests=len(statuses),
        too_many_requests=statuses.count(429),
        blocks=blocks,
    )


def run(*, smoke: bool) -> Section:
    section = Section(TITLE)
    if smoke:
        _engine_module()  # the harness the full run needs imports
        section.intro = (
            "Not run in smoke mode: each deployment takes minutes to start on two cores. "
            "`tests/test_fleet_e2e.py` runs the same deployments (Celery and LocalExecutor) in CI."
        )
        return section
    accounts_count = int(os.environ.get("BENCH_FLEET_ACCOUNTS", "100"))
    deployments = os.environ.get("BENCH_FLEET_DEPLOYMENTS", ",".join(DEPLOYMENTS)).split(",")
    assert len(LIMIT) == 3, "BENCH_FLEET_LIMIT is requests/window seconds/block seconds, e.g. 45/60/120"
    quota, window, block = LIMIT
    outcomes: dict[tuple[str, str], Outcome] = {}
    with simulator() as sim, tempfile.TemporaryDirectory(prefix="cfbilling-bench-fleet-") as work:
        accounts = sim.generate_accounts(accounts_count)
        for deployment in deployments:
            print(f"   {deployment}: starting", flush=True)
            engine = _deploy(deployment, Path(work) / deployment / "home", Path(work) / deployment / "landing")
            try:
                slots = DEPLOYMENTS[deployment][1]
                # Warm-up, not reported: a deployment's first run is slower (first parse in each process).
                sim.add_token(f"cfsim-bench-fleet-{deployment}-warmup", accounts[:2])
                _run(engine, sim, f"cfsim-bench-fleet-{deployment}-warmup", slots, LIFTED)
                for client, concurrent_tasks, limit in (
                    ("lifted", slots, LIFTED),
                    ("pool", slots, LIMIT),
                    ("process", 1, LIMIT),
                ):
                    token = f"cfsim-bench-fleet-{deployment}-{client}"
                    sim.add_token(token, accounts)
                    outcome = _run(engine, sim, token, concurrent_tasks, limit)
                    print(f"   {deployment} {client}: {outcome}", flush=True)
                    outcomes[deployment, client] = outcome
            finally:
                engine.stop()

    rows = []
    verdicts = []
    for deployment in deployments:
        lifted = outcomes[deployment, "lifted"]
        minimum = minimum_seconds(lifted.requests, lifted.seconds, quota, window)
        for client, label in CLIENTS.items():
            outcome = outcomes[deployment, client]
            versus = ratio(outcome.seconds, minimum)
            rows.append(
                (
                    deployment,
                    label,
                    f"{outcome.tasks - outcome.failed}/{outcome.tasks}",
                    outcome.failed,
                    outcome.requests,
                    outcome.too_many_requests,
                    outcome.blocks,
                    secs(outcome.seconds),
                    secs(minimum),
                    "—" if client == "lifted" else times(versus),
                )
            )
        pool = outcomes[deployment, "pool"]
        met = pool.failed == 0 and pool.blocks == 0 and ratio(pool.seconds, minimum) <= TARGET_VS_MINIMUM
        verdicts.append(met)
        section.targets.append(
            Target(
                TITLE,
                f"{deployment}: 0 failed tasks, 0 blocks, within {TARGET_VS_MINIMUM:.1f}x the minimum the limit allows",
                f"{pool.failed} failed, {pool.too_many_requests} 429s, {pool.blocks} blocks, "
                f"{times(ratio(pool.seconds, minimum))} the minimum ({secs(pool.seconds)} vs {secs(minimum)})",
                met,
                why="" if met else "see the table",
            )
        )
    section.intro = (
        f"{accounts_count} accounts discovered by one token, one mapped task each (plus the discovery task); "
        f"limit {quota} requests per {window} s per token, {block} s block on excess. One run per row "
        "(each run takes minutes); time: the DAG run's start to end as Airflow recorded it. Minimum: the "
        "limit-lifted run's requests at its pace, at most the quota per window."
    )
    headers = ("deployment", "budget", "tasks succeeded", "failed", "requests", "429s", "blocks", "time")
    section.tables.append(((*headers, "minimum", "vs minimum"), rows))
    return section
