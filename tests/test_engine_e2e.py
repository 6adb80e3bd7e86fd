"""End to end on the real engine: the sensor in each mode, the deferred one resumed by the triggerer.

The test starts Airflow's components itself (api-server, scheduler, dag-processor and triggerer, with the
LocalExecutor on an sqlite database, in a temporary AIRFLOW_HOME, on loopback and a free port), runs the
test DAG ``dags/sensor_engine_modes.py`` (one sensor per mode, each on its own simulator account) and stops
every component afterwards, also on failure. It needs nothing but this repository's virtualenv, so it runs
wherever the other tests run, CI included: it is never skipped. It takes about a minute.

The two clocks, as in production: the sensor decides when to look by the real wall clock, and whether the
period has closed by what the API says. The simulator's accounts have fixed anchors, so no period of
theirs ends "now"; the run's ``close_at`` (in its conf, set when the test triggers it) stretches each
sensor's settle from its November period's end to a moment shortly after the trigger. Until then no sensor
asks the API anything. At that moment the API (its clock on 2025-11-20) still shows November open, so the
deferrable sensor defers again; the simulator then moves its own clock past the periods' ends after the
deferrable sensor's first usage call (no thread of the test races it), and the next checks pass.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pendulum
import pytest
from engine import FINISHED, Engine, wait_until

from airflow_provider_cfbilling.testing.simulator import ANCHOR31_ACCOUNT, FOCUS_ACCOUNT, SIM_TOKEN, STANDARD_ACCOUNT

DAG_FILE = Path(__file__).parent / "dags" / "sensor_engine_modes.py"
DAG_ID = "sensor_engine_modes"
ACCOUNT_OF = {"deferrable": STANDARD_ACCOUNT, "poke": ANCHOR31_ACCOUNT, "reschedule": FOCUS_ACCOUNT}
TASKS = ("wait_deferrable", "wait_poke", "wait_reschedule", "book")
TRIGGER_CLASSPATH = "airflow_provider_cfbilling.triggers.billing.CloudflareBillingPeriodTrigger"
# The close moment, counted from the trigger: long enough for every sensor's first check (placing its period)
# to come before it on a loaded machine, short enough to keep the test near a minute.
CLOSE_AFTER_SECONDS = 30
RUN_TIMEOUT = 240


@pytest.fixture
def engine(sim: Any, tmp_path: Path) -> Iterator[Engine]:
    home = tmp_path / "airflow-home"
    (home / "dags").mkdir(parents=True)
    shutil.copy(DAG_FILE, home / "dags" / DAG_FILE.name)
    connection = {"conn_type": "cloudflare", "host": sim.url, "password": SIM_TOKEN}
    engine = Engine(
        home, {"AIRFLOW_CONN_CLOUDFLARE_DEFAULT": json.dumps({**connection, "extra": {"account_id": STANDARD_ACCOUNT}})}
    )
    engine.airflow("db", "migrate")
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


@pytest.mark.e2e
def test_on_the_real_engine_the_sensor_waits_in_each_mode_and_the_deferred_one_is_resumed_by_the_triggerer(
    engine: Engine, sim: Any
) -> None:
    wait_until(engine, "the DAG to be parsed", lambda: engine.query("SELECT 1 FROM dag WHERE dag_id = ?", DAG_ID))
    # The API rolls over to December (for every account: the simulator has one clock) by itself, right after
    # the deferrable sensor's account has had its billing-info call and its first usage call.
    sim.advance_clock_after(2, dt.date(2025, 12, 16), path=f"/accounts/{STANDARD_ACCOUNT}/")
    close_at = pendulum.now("UTC").add(seconds=CLOSE_AFTER_SECONDS)
    engine.airflow("dags", "trigger", DAG_ID, "--conf", json.dumps({"close_at": close_at.isoformat()}))

    history: dict[str, list[str]] = {task_id: [] for task_id in TASKS}
    seen_triggers: set[tuple[int, str, Any]] = set()

    def finished() -> bool:
        states = dict(engine.query("SELECT task_id, state FROM task_instance WHERE dag_id = ?", DAG_ID))
        for task_id, state in states.items():
            if state and (not history[task_id] or history[task_id][-1] != state):
                history[task_id].append(state)
        seen_triggers.update(
            engine.query(
                "SELECT t.id, t.classpath, t.triggerer_id FROM trigger t "
                "JOIN task_instance ti ON ti.trigger_id = t.id WHERE ti.dag_id = ?",
                DAG_ID,
            )
        )
        return len(states) == len(TASKS) and all(s in FINISHED for s in states.values())

    wait_until(engine, "the run to finish", finished, timeout=RUN_TIMEOUT)
    states = dict(engine.query("SELECT task_id, state FROM task_instance WHERE dag_id = ?", DAG_ID))

    assert states == dict.fromkeys(TASKS, "success"), f"{history}\n{engine.diagnostics()}"
    # Deferrable: deferred to our trigger, which the triggerer ran, then resumed to succeed.
    assert "deferred" in history["wait_deferrable"], history
    assert {classpath for _, classpath, _ in seen_triggers} == {TRIGGER_CLASSPATH}
    assert any(triggerer_id is not None for *_, triggerer_id in seen_triggers), seen_triggers
    # Reschedule: handed its slot back until the close moment.
    assert "up_for_reschedule" in history["wait_reschedule"], history
    # Poke: held its slot all along, never deferred or rescheduled.
    assert history["wait_poke"][-2:] == ["running", "success"], history
    assert "deferred" not in history["wait_poke"] and "up_for_reschedule" not in history["wait_poke"]
    # Deferral and rescheduling are not retries.
    assert engine.query("SELECT DISTINCT try_number FROM task_instance WHERE dag_id = ?", DAG_ID) == [(1,)]

    # The API bills. Each sensor placed its period (the billing info) before the close moment, and asked for
    # usage only from then on. Deferrable: the billing info once, one usage call that found November still
    # open, one after the API rolled over. Poke and reschedule: one or two usage calls, as their first check
    # came before or after the roll-over; reschedule mode asks for the billing info again on each run.
    bills = {mode: bill(sim, account) for mode, account in ACCOUNT_OF.items()}
    print(f"e2e: states {history}; API calls (info, usage) by mode: {bills}")
    for mode, account in ACCOUNT_OF.items():
        calls = [r for r in sim.requests if r["account_id"] == account]
        first_info = min(r["time"] for r in calls if r["path"].endswith("/info"))
        assert first_info < close_at.timestamp(), f"{mode}: the run started too late to wait for {close_at}"
        usage_times = [r["time"] for r in calls if not r["path"].endswith("/info")]
        assert min(usage_times) >= close_at.timestamp(), f"{mode}: the API was asked before the close moment"
    assert bills["deferrable"] == (1, 2)
    assert bills["poke"][0] == 1 and bills["poke"][1] in (1, 2)
    assert bills["reschedule"][1] in (1, 2)
    assert bills["reschedule"][0] - bills["reschedule"][1] in (0, 1)  # one info call per run

    (xcom,) = engine.query("SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'wait_deferrable'", DAG_ID)
    period = json.loads(xcom[0])
    assert (period["start"], period["end"], period["source"]) == (
        "2025-11-14T00:00:00Z",
        "2025-12-14T00:00:00Z",
        "info",
    )
    (booked,) = engine.query("SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'book'", DAG_ID)
    assert json.loads(booked[0]) == "2025-11-14T00:00:00Z/2025-12-14T00:00:00Z"


def bill(sim: Any, account_id: str) -> tuple[int, int]:
    """(info calls, usage calls) the simulator answered for an account."""
    calls = [r for r in sim.requests if r["account_id"] == account_id]
    info = sum(1 for r in calls if r["path"].endswith("/info"))
    return info, len(calls) - info
