"""CloudflareBillingPeriodSensor: wait until a billing period has closed, then name it downstream.

A DAG author's view first: the test DAG ``dags/sensor_monthly_close.py`` (sensor, then a task that books
exactly the period the sensor named) runs with ``dag.test()`` in each mode against the simulator. Then the
API-call budget of a whole month's wait, then the details.

Two clocks meet here, as in production. The sensor decides *when to look* by the real wall clock (late
2026 on this machine), and *whether the period has closed* by what the API says: the simulator's clock
(2025-11-20 unless a test moves it). Periods of 2025 are long over by the wall clock, so the simulator's
clock alone decides whether the API shows them open or closed.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import types
from pathlib import Path
from typing import Any

import pendulum
import pytest

from airflow_provider_cfbilling.compat import (
    AirflowRescheduleException,
    AirflowSensorTimeout,
    TaskDeferred,
)
from airflow_provider_cfbilling.exceptions import CloudflareBillingInputError, CloudflarePermissionError
from airflow_provider_cfbilling.sensors import billing as sensor_module
from airflow_provider_cfbilling.sensors.billing import DEFAULT_SETTLE, CloudflareBillingPeriodSensor
from airflow_provider_cfbilling.testing.simulator import (
    ACCOUNTS,
    ANCHOR31_ACCOUNT,
    EMPTY_ACCOUNT,
    FOCUS_ACCOUNT,
    SIM_TOKEN_NO_BILLING,
    STANDARD_ACCOUNT,
)
from airflow_provider_cfbilling.triggers import billing as trigger_module

DAG_FILE = Path(__file__).parent / "dags" / "sensor_monthly_close.py"
MODES = ["deferrable", "poke", "reschedule"]
# STANDARD_ACCOUNT's cycle is anchored on 2025-01-14: 2025-11-20 lies in [2025-11-14, 2025-12-14).
NOVEMBER = {
    "account_id": STANDARD_ACCOUNT,
    "subscription_id": ACCOUNTS[STANDARD_ACCOUNT].subscriptions[0].id,
    "anchor": "2025-01-14T00:00:00Z",
    "start": "2025-11-14T00:00:00Z",
    "end": "2025-12-14T00:00:00Z",
    "source": "info",
}
NOVEMBER_END = pendulum.datetime(2025, 12, 14, tz="UTC")


def api_calls(sim: Any) -> dict[str, int]:
    """The simulator's request log, as the API bill: info calls and usage calls."""
    info = sum(1 for r in sim.requests if r["path"].endswith(("/info", "-info")))
    return {"info": info, "usage": len(sim.requests) - info}


@pytest.fixture
def dag_env(monkeypatch: pytest.MonkeyPatch, cloudflare_conn: str) -> Any:
    """Configure the test DAG through its environment variables (read when the file is parsed)."""

    def configure(mode: str, target: str | None = "2025-11-20", **settings: Any) -> None:
        monkeypatch.setenv("SENSOR_MODE", mode)
        if target is None:
            monkeypatch.delenv("SENSOR_TARGET", raising=False)
        else:
            monkeypatch.setenv("SENSOR_TARGET", target)
        for name, value in settings.items():
            monkeypatch.setenv(f"SENSOR_{name.upper()}", str(value))

    return configure


def settle_closing_in(seconds: float, end: pendulum.DateTime = NOVEMBER_END) -> float:
    """A settle that puts the close moment ``seconds`` from now on the wall clock.

    The simulator's accounts have fixed anchors, so no period of theirs ends "now" on the wall clock; a
    settle stretching from the period's end to a few seconds from now gives the same close moment.
    """
    return (pendulum.now("UTC").add(seconds=seconds) - end).total_seconds()


# -- dag.test(): what a DAG author sees -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_closed_period_passes_at_once_and_the_next_task_books_exactly_it(
    sim: Any, dag_env: Any, dag_runner: Any, mode: str
) -> None:
    sim.set_today(dt.date(2025, 12, 20))  # the API has moved on to the period starting 2025-12-14
    dag_env(mode)

    result = dag_runner(DAG_FILE, "sensor_monthly_close")

    assert result.task_states == {"wait": "success", "book": "success"}
    assert result.xcom("wait") == NOVEMBER
    assert result.xcom("book") == "2025-11-14T00:00:00Z/2025-12-14T00:00:00Z"
    assert api_calls(sim) == {"info": 1, "usage": 1}


@pytest.mark.parametrize("mode", MODES)
def test_while_the_api_shows_the_period_open_the_sensor_keeps_waiting(
    sim: Any, dag_env: Any, dag_runner: Any, mode: str
) -> None:
    """The wall clock says November's period closed long ago, but the API (its clock on 2025-11-20) still
    reports it as the current one: the sensor waits, then passes once the API has rolled over."""
    dag_env(mode)
    # The API rolls over by itself right after the billing-info call and the first usage call (the simulator
    # counts them; no thread races the sensor).
    sim.advance_clock_after(2, dt.date(2025, 12, 16))

    result = dag_runner(DAG_FILE, "sensor_monthly_close")

    assert result.task_states == {"wait": "success", "book": "success"}
    assert result.xcom("wait") == NOVEMBER
    # One confirmation that found the period open, one that found it closed; reschedule mode asks for
    # the billing info again each time the task comes back.
    assert api_calls(sim) == {"info": 2 if mode == "reschedule" else 1, "usage": 2}


@pytest.mark.parametrize("mode", MODES)
def test_it_sleeps_until_the_close_moment_without_calling_the_api(
    sim: Any, dag_env: Any, dag_runner: Any, mode: str
) -> None:
    """The close moment (end + settle) lies 5 s ahead on the wall clock: the sensor pokes every second
    (poke mode), or sleeps in the triggerer, or is rescheduled for that moment, but asks the API nothing
    until then."""
    sim.set_today(dt.date(2025, 12, 20))
    dag_env(mode, settle_seconds=settle_closing_in(5))

    started = time.monotonic()
    result = dag_runner(DAG_FILE, "sensor_monthly_close")

    assert result.task_states == {"wait": "success", "book": "success"}
    assert time.monotonic() - started >= 5
    assert api_calls(sim) == {"info": 2 if mode == "reschedule" else 1, "usage": 1}


@pytest.mark.parametrize("mode", MODES)
def test_the_timeout_covers_the_whole_wait_and_fails_the_sensor(
    sim: Any, dag_env: Any, dag_runner: Any, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dag_env(mode, timeout_seconds=3)  # the API never shows November closed: its clock stays on 2025-11-20

    started = time.monotonic()
    result = dag_runner(DAG_FILE, "sensor_monthly_close")

    assert result.task_states == {"wait": "failed", "book": "upstream_failed"}
    assert time.monotonic() - started >= 3  # it waited out its timeout (no upper bound: a loaded machine is slow)
    assert "AirflowSensorTimeout" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["deferrable", "poke"])
def test_with_soft_fail_a_timeout_skips_instead(sim: Any, dag_env: Any, dag_runner: Any, mode: str) -> None:
    dag_env(mode, timeout_seconds=2, soft_fail=1)

    result = dag_runner(DAG_FILE, "sensor_monthly_close")

    assert result.task_states == {"wait": "skipped", "book": "skipped"}


def test_without_a_target_the_run_s_data_interval_start_places_the_period(
    sim: Any, dag_env: Any, dag_runner: Any
) -> None:
    sim.set_today(dt.date(2025, 12, 20))
    dag_env("deferrable", target=None)

    result = dag_runner(DAG_FILE, "sensor_monthly_close", logical_date=pendulum.datetime(2025, 11, 20, tz="UTC"))

    assert result.xcom("wait") == NOVEMBER


def test_a_run_without_a_logical_date_places_the_period_by_its_run_after(
    sim: Any, dag_env: Any, dag_runner: Any
) -> None:
    """Airflow 3 runs without a logical date (e.g. a manual trigger of an unscheduled DAG) still have run_after."""
    sim.set_today(dt.date(2025, 12, 20))
    dag_env("poke", target=None)

    result = dag_runner(
        DAG_FILE, "sensor_monthly_close", logical_date=None, run_after=pendulum.datetime(2025, 11, 20, tz="UTC")
    )

    assert result.xcom("wait") == NOVEMBER


def test_the_target_is_templated(sim: Any, dag_env: Any, dag_runner: Any) -> None:
    sim.set_today(dt.date(2025, 12, 20))
    dag_env("poke", target="{{ macros.ds_add(ds, -30) }}")

    result = dag_runner(DAG_FILE, "sensor_monthly_close", logical_date=pendulum.datetime(2025, 12, 10, tz="UTC"))

    assert result.xcom("wait")["start"] == "2025-10-14T00:00:00Z"  # 2025-11-10 lies in Oct 14 - Nov 14


# -- the API-call budget of a whole month's wait --------------------------------------------------------


class FakeClock:
    """A wall clock for the sensor, its trigger and Airflow's sensor loop: sleeping moves it forward, and
    the API's clock (the simulator's date) follows."""

    def __init__(self, sim: Any, now: pendulum.DateTime) -> None:
        self.sim = sim
        self.now = now
        self.sleeps = 0
        self.sim.set_today(now.date())

    def utcnow(self) -> pendulum.DateTime:
        return self.now

    def set(self, now: pendulum.DateTime) -> None:
        self.now = now
        self.sim.set_today(now.date())

    # what airflow.sdk.bases.sensor uses of the time module
    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.set(self.now.add(seconds=seconds))

    def monotonic(self) -> float:
        return self.now.timestamp()


@pytest.fixture
def fake_clock(sim: Any, cloudflare_conn: str, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The day after November's period began: a whole period to wait out."""
    import airflow.sdk.bases.sensor as base_sensor_module

    clock = FakeClock(sim, pendulum.datetime(2025, 11, 15, 6, tz="UTC"))
    monkeypatch.setattr(sensor_module, "_utcnow", clock.utcnow)
    monkeypatch.setattr(trigger_module, "_utcnow", clock.utcnow)
    monkeypatch.setattr(base_sensor_module, "time", clock)
    monkeypatch.setattr(base_sensor_module, "timezone", types.SimpleNamespace(utcnow=clock.utcnow))
    return clock


def run_trigger(trigger: Any) -> Any:
    import asyncio

    async def first_event() -> Any:
        return await anext(trigger.run())

    return asyncio.run(first_event()).payload


def test_poking_hourly_through_a_whole_month_costs_two_api_calls(fake_clock: FakeClock, sim: Any) -> None:
    sensor = CloudflareBillingPeriodSensor(
        task_id="wait", target="2025-11-20", mode="poke", poke_interval=3600, timeout=dt.timedelta(days=40)
    )

    assert sensor.execute({}) == NOVEMBER

    assert fake_clock.now >= NOVEMBER_END + DEFAULT_SETTLE
    assert fake_clock.sleeps > 30 * 24  # one poke an hour for a month...
    assert api_calls(sim) == {"info": 1, "usage": 1}  # ...and two API calls in all


def test_deferring_through_a_whole_month_costs_two_api_calls(fake_clock: FakeClock, sim: Any) -> None:
    sensor = CloudflareBillingPeriodSensor(
        task_id="wait", target="2025-11-20", deferrable=True, timeout=dt.timedelta(days=40)
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})

    trigger = deferred.value.trigger
    assert trigger.moment == NOVEMBER_END + DEFAULT_SETTLE  # wake once, at the close moment
    assert deferred.value.timeout == dt.timedelta(days=40)  # the whole wait honours the sensor's timeout
    assert type(deferred.value.timeout) is dt.timedelta  # not pendulum's: the task runner must send it
    assert api_calls(sim) == {"info": 1, "usage": 0}

    fake_clock.set(trigger.moment)
    event = run_trigger(trigger)
    resumed = CloudflareBillingPeriodSensor(  # a new worker process: a new instance
        task_id="wait", target="2025-11-20", deferrable=True, timeout=dt.timedelta(days=40)
    )
    assert resumed.resume_execution("execute_complete", {"event": event}, {}) == NOVEMBER
    assert api_calls(sim) == {"info": 1, "usage": 1}


def test_deferring_again_when_the_api_lags_keeps_the_original_deadline(fake_clock: FakeClock, sim: Any) -> None:
    sensor = CloudflareBillingPeriodSensor(
        task_id="wait", target="2025-11-20", deferrable=True, timeout=dt.timedelta(days=40), poke_interval=600
    )
    with pytest.raises(TaskDeferred) as first:
        sensor.execute({})
    waiting_since = fake_clock.now

    fake_clock.set(first.value.trigger.moment)
    sim.set_today(dt.date(2025, 12, 13))  # the API's clock is behind: it still shows November open
    with pytest.raises(TaskDeferred) as second:
        sensor.resume_execution("execute_complete", {"event": run_trigger(first.value.trigger)}, {})

    assert second.value.trigger.moment == fake_clock.now.add(seconds=600)
    assert second.value.timeout == waiting_since.add(days=40) - fake_clock.now
    assert api_calls(sim) == {"info": 1, "usage": 1}


def test_reschedule_mode_comes_back_at_the_close_moment(fake_clock: FakeClock, sim: Any) -> None:
    class TaskInstance:
        def get_first_reschedule_date(self, context: Any) -> None:
            return None

    context: Any = {"ti": TaskInstance()}
    sensor = CloudflareBillingPeriodSensor(
        task_id="wait", target="2025-11-20", mode="reschedule", timeout=dt.timedelta(days=40)
    )
    with pytest.raises(AirflowRescheduleException) as rescheduled:
        sensor.execute(context)
    assert rescheduled.value.reschedule_date == NOVEMBER_END + DEFAULT_SETTLE

    short = CloudflareBillingPeriodSensor(
        task_id="wait", target="2025-11-20", mode="reschedule", timeout=dt.timedelta(days=3)
    )
    with pytest.raises(AirflowRescheduleException) as capped:
        short.execute(context)
    assert capped.value.reschedule_date == fake_clock.now.add(days=3)  # no later than the timeout
    assert api_calls(sim) == {"info": 2, "usage": 0}


def test_a_target_whose_period_has_not_started_waits_the_same_way(fake_clock: FakeClock, sim: Any) -> None:
    sensor = CloudflareBillingPeriodSensor(
        task_id="wait", target="2026-01-20", deferrable=True, timeout=dt.timedelta(days=100)
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})

    assert deferred.value.trigger.period["start"] == "2026-01-14T00:00:00Z"
    assert deferred.value.trigger.moment == pendulum.datetime(2026, 2, 14, tz="UTC") + DEFAULT_SETTLE
    assert api_calls(sim) == {"info": 1, "usage": 0}


def test_a_resumed_sensor_without_a_target_places_the_period_by_its_run(fake_clock: FakeClock, sim: Any) -> None:
    context: Any = {"data_interval_start": pendulum.datetime(2025, 11, 20, tz="UTC")}
    sensor = CloudflareBillingPeriodSensor(task_id="wait", deferrable=True, timeout=dt.timedelta(days=40))
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)

    fake_clock.set(deferred.value.trigger.moment)
    event = run_trigger(deferred.value.trigger)
    resumed = CloudflareBillingPeriodSensor(task_id="wait", deferrable=True, timeout=dt.timedelta(days=40))
    assert resumed.resume_execution("execute_complete", {"event": event}, context) == NOVEMBER


# -- timeouts -------------------------------------------------------------------------------------------


def test_the_timeout_message_says_what_was_awaited(fake_clock: FakeClock) -> None:
    sensor = CloudflareBillingPeriodSensor(
        task_id="wait", target="2025-11-20", deferrable=True, timeout=dt.timedelta(days=2)
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    assert deferred.value.trigger.moment == fake_clock.now.add(days=2)  # the deadline comes first

    fake_clock.set(deferred.value.trigger.moment)
    with pytest.raises(AirflowSensorTimeout, match=r"2025-11-14T00:00:00Z to 2025-12-14T00:00:00Z.*timeout"):
        sensor.resume_execution("execute_complete", {"event": run_trigger(deferred.value.trigger)}, {})


# -- which billing period -------------------------------------------------------------------------------


def sensor_for(account_id: str, target: str, **kwargs: Any) -> CloudflareBillingPeriodSensor:
    return CloudflareBillingPeriodSensor(task_id="wait", account_id=account_id, target=target, **kwargs)


def test_with_two_subscriptions_the_earliest_anchored_active_one_defines_the_periods(
    sim: Any, cloudflare_conn: str
) -> None:
    first, second = ACCOUNTS[FOCUS_ACCOUNT].subscriptions  # anchors 2025-06-01 and 2025-09-20
    sim.set_today(dt.date(2025, 12, 20))

    period = sensor_for(FOCUS_ACCOUNT, "2025-11-20").execute({})

    assert (period["subscription_id"], period["anchor"]) == (first.id, "2025-06-01T00:00:00Z")
    assert (period["start"], period["end"]) == ("2025-11-01T00:00:00Z", "2025-12-01T00:00:00Z")

    chosen = sensor_for(FOCUS_ACCOUNT, "2025-10-01", subscription_id=second.id).execute({})
    assert (chosen["subscription_id"], chosen["anchor"]) == (second.id, "2025-09-20T00:00:00Z")
    assert (chosen["start"], chosen["end"]) == ("2025-09-20T00:00:00Z", "2025-10-20T00:00:00Z")


def test_an_unknown_subscription_id_names_the_known_ones(sim: Any, cloudflare_conn: str) -> None:
    first, second = ACCOUNTS[FOCUS_ACCOUNT].subscriptions
    with pytest.raises(CloudflareBillingInputError, match=rf"'nope'.*{first.id}.*{second.id}"):
        sensor_for(FOCUS_ACCOUNT, "2025-11-20", subscription_id="nope").execute({})


def test_an_anchor_on_the_31st_gives_periods_ending_on_the_month_s_last_day(sim: Any, cloudflare_conn: str) -> None:
    sim.set_today(dt.date(2025, 5, 2))
    period = sensor_for(ANCHOR31_ACCOUNT, "2025-04-10").execute({})
    assert (period["start"], period["end"]) == ("2025-03-31T00:00:00Z", "2025-04-30T00:00:00Z")


@pytest.mark.parametrize("fault", ["info_unavailable", "not_covered"])
def test_without_billing_info_the_current_period_probe_places_the_period(
    sim: Any, cloudflare_conn: str, fault: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.set_today(dt.date(2025, 12, 20))
    sim.add_fault(fault)

    period = sensor_for(STANDARD_ACCOUNT, "2025-11-20").execute({})

    assert period == {**NOVEMBER, "subscription_id": None, "anchor": "2025-12-14T00:00:00Z", "source": "probe"}
    out = capsys.readouterr().out
    assert "Falling back to the current-period probe" in out
    assert f"Billing info of account {STANDARD_ACCOUNT} not usable: " in out  # whose, and why
    assert "not usable: None" not in out
    reason = {
        "info_unavailable": f"the info endpoint is unavailable (HTTP 404 on /accounts/{STANDARD_ACCOUNT}/billable-"
        f"usage/info, /accounts/{STANDARD_ACCOUNT}/paygo-usage-info)",
        "not_covered": "or fetch a window of dates (from_ and to) instead",
    }[fault]
    assert f"{reason}. Falling back to the current-period probe" in out


def test_the_probe_warns_when_a_month_end_start_hides_the_anchor_day(
    sim: Any, cloudflare_conn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.set_today(dt.date(2025, 3, 5))  # ANCHOR31's current period started on 2025-02-28
    sim.add_fault("info_unavailable")

    assert sensor_for(ANCHOR31_ACCOUNT, "2025-03-01").poke({}) is False  # the API shows it open

    out = capsys.readouterr().out
    assert (
        f"The current period of account {ANCHOR31_ACCOUNT} starts on 2025-02-28, the last day of a short month: "
        "the anchor may be a later day"
    ) in out  # whose period, and which day


def test_the_probe_places_the_period_of_the_chosen_subscription(
    sim: Any, cloudflare_conn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without billing info, only the rows of the chosen subscription place its period; the XCom names it."""
    first, second = ACCOUNTS[FOCUS_ACCOUNT].subscriptions  # the simulator's usage belongs to the first
    sim.set_today(dt.date(2025, 12, 5))
    sim.add_fault("info_unavailable")

    period = sensor_for(FOCUS_ACCOUNT, "2025-10-10", subscription_id=first.id).execute({})
    assert period == {
        "account_id": FOCUS_ACCOUNT,
        "subscription_id": first.id,
        "anchor": "2025-12-01T00:00:00Z",
        "start": "2025-10-01T00:00:00Z",
        "end": "2025-11-01T00:00:00Z",
        "source": "probe",
    }
    capsys.readouterr()

    # The second subscription has no row in the current period: its start stays unknown, whatever the
    # first subscription's rows say.
    assert sensor_for(FOCUS_ACCOUNT, "2025-10-10", subscription_id=second.id).poke({}) is False
    assert f"The probe shows no usage in account {FOCUS_ACCOUNT}'s current period" in capsys.readouterr().out


def test_an_account_without_info_or_usage_keeps_waiting_until_it_can_place_the_period(
    sim: Any, cloudflare_conn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.add_fault("not_covered")
    sensor = sensor_for(EMPTY_ACCOUNT, "2025-10-01")

    assert sensor.poke({}) is False
    assert sensor.poke({}) is False
    assert api_calls(sim) == {"info": 2, "usage": 2}  # each poke tries again
    assert f"The probe shows no usage in account {EMPTY_ACCOUNT}'s current period" in capsys.readouterr().out


def test_an_account_without_usage_closes_on_the_clock(
    sim: Any, cloudflare_conn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    period = sensor_for(EMPTY_ACCOUNT, "2025-10-01").execute({})  # anchor 2025-03-05

    assert (period["start"], period["end"]) == ("2025-09-05T00:00:00Z", "2025-10-05T00:00:00Z")
    assert (
        f"the API shows no usage in account {EMPTY_ACCOUNT}'s current period: nothing contradicts the close"
    ) in capsys.readouterr().out


# -- inputs and errors ----------------------------------------------------------------------------------


# The sensor's other bad inputs (refused before any request) are tested in test_bad_input.py.


@pytest.mark.parametrize("settle", [dt.timedelta(hours=-1), 3600])
def test_a_bad_settle_is_refused_when_the_dag_is_parsed(settle: Any) -> None:
    with pytest.raises(CloudflareBillingInputError, match="settle"):
        CloudflareBillingPeriodSensor(task_id="wait", settle=settle)


def test_api_errors_propagate_with_the_account(sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    connection = {"conn_type": "cloudflare", "host": sim.url, "password": SIM_TOKEN_NO_BILLING}
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_DEFAULT", json.dumps({**connection, "extra": {"account_id": STANDARD_ACCOUNT}})
    )
    with pytest.raises(CloudflarePermissionError, match=STANDARD_ACCOUNT):
        CloudflareBillingPeriodSensor(task_id="wait", target="2025-11-20").execute({})


def test_the_sensor_is_cheap_to_build_and_its_xcom_is_plain_json(sim: Any, cloudflare_conn: str) -> None:
    sensor = CloudflareBillingPeriodSensor(task_id="wait", target="2025-11-20", mode="poke")
    assert sensor.template_fields == ("cloudflare_conn_id", "account_id", "target", "subscription_id")
    assert sim.requests == []  # building it (every DAG parse) asks nothing
    sim.set_today(dt.date(2025, 12, 20))
    assert json.loads(json.dumps(sensor.execute({}))) == NOVEMBER
