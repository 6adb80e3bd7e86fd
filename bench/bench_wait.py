"""4. Waiting out a 30-day billing period: deferrable against poke mode (poke_interval 300 s).

The sensor waits for STANDARD_ACCOUNT's period 2025-11-14 to 2025-12-14 (plus the default two-day
settle) from the day after it began. A simulated wall clock drives the sensor, its trigger and Airflow's
sensor loop; the simulator's date follows it, so the API sees the period close when the clock says so.
Counted: API calls (from the simulator's request log), worker-slot time (simulated seconds a worker runs
the task: the whole wait in poke mode, only the checks when deferred), wake-ups, and real CPU time. The
baseline is poke mode, measured in the same run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pendulum

from bench.common import Section, Target, median, ms

TITLE = "4. Waiting for a period to close"
START = pendulum.datetime(2025, 11, 15, 6, tz="UTC")
TARGET = "2025-11-20"
TARGET_API_CALLS = 3


class SimulatedClock:
    """The wall clock of the sensor, its trigger and Airflow's sensor loop; sleeping moves it forward and
    the API's date follows."""

    def __init__(self, sim: Any, now: pendulum.DateTime) -> None:
        self.sim, self.now, self.sleeps = sim, now, 0
        sim.set_today(now.date())

    def utcnow(self) -> pendulum.DateTime:
        return self.now

    def set(self, now: pendulum.DateTime) -> None:
        self.now = now
        self.sim.set_today(now.date())

    def sleep(self, seconds: float) -> None:  # what airflow.sdk.bases.sensor uses of `time`
        self.sleeps += 1
        self.set(self.now.add(seconds=seconds))

    def monotonic(self) -> float:
        return self.now.timestamp()


@contextmanager
def simulated_time(sim: Any) -> Iterator[SimulatedClock]:
    import airflow.sdk.bases.sensor as base_sensor_module

    from airflow_provider_cfbilling.sensors import billing as sensor_module
    from airflow_provider_cfbilling.triggers import billing as trigger_module

    clock = SimulatedClock(sim, START)
    patches: list[tuple[Any, str, Any]] = [
        (sensor_module, "_utcnow", clock.utcnow),
        (trigger_module, "_utcnow", clock.utcnow),
        (base_sensor_module, "time", clock),
        (base_sensor_module, "timezone", types.SimpleNamespace(utcnow=clock.utcnow)),
    ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, value in patches:
        setattr(module, name, value)
    try:
        yield clock
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def api_calls(sim: Any) -> int:
    return len(sim.requests)


def wait_poke(sim: Any) -> dict[str, Any]:
    from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor

    with simulated_time(sim) as clock:
        sensor = CloudflareBillingPeriodSensor(
            task_id="wait", target=TARGET, mode="poke", poke_interval=300, timeout=dt.timedelta(days=40)
        )
        began, cpu = clock.now, time.process_time()
        context: Any = {}
        result = sensor.execute(context)
        return {
            "result": result,
            "api_calls": api_calls(sim),
            "slot_seconds": (clock.now - began).total_seconds(),  # a worker runs the task throughout
            "wakeups": clock.sleeps,
            "cpu": time.process_time() - cpu,
            "closed_at": clock.now,
        }


def wait_deferred(sim: Any, *, api_lags_days: int = 0) -> dict[str, Any]:
    from airflow_provider_cfbilling.compat import TaskDeferred
    from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor

    def new_sensor() -> CloudflareBillingPeriodSensor:  # every resume is a new worker process
        return CloudflareBillingPeriodSensor(
            task_id="wait", target=TARGET, deferrable=True, poke_interval=3600, timeout=dt.timedelta(days=40)
        )

    with simulated_time(sim) as clock:
        cpu, slot_seconds, wakeups = time.process_time(), 0.0, 0
        event: Any = None
        while True:
            began = clock.now
            try:
                sensor = new_sensor()
                context: Any = {}
                if event is None:
                    result = sensor.execute(context)
                else:
                    result = sensor.resume_execution("execute_complete", {"event": event}, context)
                break
            except TaskDeferred as deferred:
                slot_seconds += (clock.now - began).total_seconds()
                trigger = deferred.trigger
                clock.set(trigger.moment)  # the triggerer sleeps until then: no worker, no API call
                if api_lags_days:
                    sim.set_today(clock.now.date().subtract(days=api_lags_days))
                    api_lags_days = 0  # lag once: the next check finds the period closed
                wakeups += 1
                event = asyncio.run(_first_event(trigger))
        slot_seconds += (clock.now - began).total_seconds()
        return {
            "result": result,
            "api_calls": api_calls(sim),
            "slot_seconds": slot_seconds,
            "wakeups": wakeups,
            "cpu": time.process_time() - cpu,
            "closed_at": clock.now,
        }


async def _first_event(trigger: Any) -> Any:
    return (await anext(trigger.run())).payload


def run(*, smoke: bool) -> Section:
    from airflow_provider_cfbilling.testing.simulator import SIM_TOKEN, STANDARD_ACCOUNT, CloudflareSimulator
    from bench.common import use_connection

    repeats = 1 if smoke else 5
    scenarios: dict[str, Callable[[Any], dict[str, Any]]] = {
        "poke, poke_interval 300 s (baseline)": wait_poke,
        "deferrable": wait_deferred,
        "deferrable, API still shows the period open at the close moment": lambda sim: wait_deferred(
            sim, api_lags_days=3
        ),
    }
    rows: list[list[Any]] = []
    measured: dict[str, dict[str, Any]] = {}
    with CloudflareSimulator(today=START.date()) as sim:
        use_connection("cloudflare_default", sim.url, SIM_TOKEN, account_id=STANDARD_ACCOUNT)
        for name, scenario in scenarios.items():
            runs = []
            for _ in range(repeats):
                sim.reset()
                runs.append(scenario(sim))
            first = runs[0]
            assert all(r["result"] == first["result"] for r in runs)
            assert first["result"]["start"] == "2025-11-14T00:00:00Z", first["result"]
            assert first["result"]["end"] == "2025-12-14T00:00:00Z", first["result"]
            measured[name] = first | {"cpu": median([r["cpu"] for r in runs])}
            rows.append(
                [
                    name,
                    first["api_calls"],
                    f"{first['slot_seconds'] / 86400:.2f} days ({first['slot_seconds']:,.0f} s)",
                    first["wakeups"],
                    ms(measured[name]["cpu"]),
                    first["closed_at"].isoformat(),
                ]
            )
    baseline = measured["poke, poke_interval 300 s (baseline)"]
    deferred = measured["deferrable"]
    section = Section(
        TITLE,
        intro=__doc__.split("\n\n", 1)[1].strip() if __doc__ else "",
        tables=[
            (
                [
                    "mode",
                    "API calls",
                    "worker-slot time",
                    "wake-ups (pokes / trigger firings)",
                    "CPU (median)",
                    "succeeded at (simulated)",
                ],
                rows,
            )
        ],
        notes=[
            f"Deferrable holds a worker slot for {deferred['slot_seconds']:.0f} simulated seconds against "
            f"{baseline['slot_seconds']:,.0f} in poke mode. API calls: {deferred['api_calls']} deferred, "
            f"{baseline['api_calls']} in poke mode: in every mode the sensor computes the close moment once "
            "and asks the API nothing before it."
        ],
    )
    section.targets += [
        Target(
            TITLE,
            f"deferrable: at most {TARGET_API_CALLS} API calls for a 30-day wait",
            f"{deferred['api_calls']} (poke mode: {baseline['api_calls']})",
            None if smoke else deferred["api_calls"] <= TARGET_API_CALLS,
        ),
        Target(
            TITLE,
            "deferrable: no worker slot while deferred",
            f"{deferred['slot_seconds']:.0f} s of slot time (poke mode: {baseline['slot_seconds']:,.0f} s)",
            None if smoke else deferred["slot_seconds"] == 0,
        ),
    ]
    return section
