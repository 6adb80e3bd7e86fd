"""The sensor's trigger: sleeps until the close moment, makes no API call, survives a triggerer restart."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import time

import pendulum
import pytest

from airflow_provider_cfbilling.triggers.billing import CloudflareBillingPeriodTrigger

PERIOD = {
    "account_id": "023e105f4ecef8ad9ca31a8372d0c353",
    "subscription_id": "sub-1",
    "anchor": "2025-01-14T00:00:00Z",
    "start": "2025-11-14T00:00:00Z",
    "end": "2025-12-14T00:00:00Z",
    "source": "info",
}


def first_event(trigger: CloudflareBillingPeriodTrigger) -> object:
    async def run() -> object:
        return await anext(trigger.run())

    return asyncio.run(run())


def test_it_wakes_at_the_moment_and_hands_the_period_back() -> None:
    moment = pendulum.now("UTC").add(seconds=1.5)
    trigger = CloudflareBillingPeriodTrigger(moment, PERIOD, "2025-12-01T00:00:00Z")

    started = time.monotonic()
    event = first_event(trigger)

    assert time.monotonic() - started >= 1.0
    payload = event.payload  # type: ignore[attr-defined]
    assert payload["period"] == PERIOD
    assert payload["waiting_since"] == "2025-12-01T00:00:00Z"
    assert dt.datetime.fromisoformat(payload["woke_at"]) >= moment
    json.dumps(payload)  # a plain JSON payload


def test_a_moment_in_the_past_fires_at_once() -> None:
    """No sleep at all, seen in the coroutine itself (not timed: a loaded machine makes any time bound flaky).

    The first step of the trigger's generator is driven by hand, outside any event loop: it must finish with
    the event. Any ``await asyncio.sleep(...)`` would suspend it (or, with no loop to sleep on, raise).
    """
    trigger = CloudflareBillingPeriodTrigger("2025-12-16T00:00:00Z", PERIOD, "2025-12-01T00:00:00Z")
    step = trigger.run().__anext__()
    with pytest.raises(StopIteration) as finished:
        step.send(None)
    event = finished.value.value
    assert event.payload["period"] == PERIOD  # type: ignore[attr-defined]


def test_a_moment_in_the_future_does_suspend_the_first_step() -> None:
    """The counterpart, so that the test above can fail: a future moment does not finish the first step."""
    trigger = CloudflareBillingPeriodTrigger(pendulum.now("UTC").add(hours=1), PERIOD, "2025-12-01T00:00:00Z")
    step = trigger.run().__anext__()
    with pytest.raises(RuntimeError, match="no running event loop"):
        step.send(None)  # asyncio.sleep needs a loop to sleep on: the coroutine reached it
    step.close()


def test_it_serialises_to_json_and_round_trips_like_a_triggerer_restart() -> None:
    from airflow.models.trigger import Trigger

    try:
        from airflow.sdk._shared.module_loading import import_string
    except ImportError:  # Airflow 3.1
        from airflow.utils.module_loading import import_string  # type: ignore[no-redef]

    trigger = CloudflareBillingPeriodTrigger(
        dt.datetime(2025, 12, 16, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))), None, "2025-12-01T00:00:00Z"
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_cfbilling.triggers.billing.CloudflareBillingPeriodTrigger"
    assert kwargs == {"moment": "2025-12-16T00:00:00+00:00", "period": None, "waiting_since": "2025-12-01T00:00:00Z"}
    json.dumps(kwargs)

    # What the triggerer stores (encrypted, serde-encoded) and rebuilds after a restart.
    row = Trigger.from_object(CloudflareBillingPeriodTrigger("2025-12-16T00:00:00Z", PERIOD, "2025-12-01"))
    rebuilt = import_string(row.classpath)(**row.kwargs)
    assert rebuilt.serialize() == (row.classpath, row.kwargs)
    assert rebuilt.period == PERIOD
    assert rebuilt.moment == pendulum.datetime(2025, 12, 16, tz="UTC")


def test_the_moment_is_kept_in_utc_whatever_the_machines_timezone() -> None:
    with pendulum.test_local_timezone(pendulum.timezone("Asia/Tokyo")):
        trigger = CloudflareBillingPeriodTrigger("2025-12-16T09:00:00+09:00", None, "2025-12-01T00:00:00Z")
    assert trigger.serialize()[1]["moment"] == "2025-12-16T00:00:00+00:00"


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        CloudflareBillingPeriodTrigger(dt.datetime(2025, 12, 16), PERIOD, "2025-12-01")


def test_the_trigger_module_imports_nothing_heavy() -> None:
    """The triggerer imports it: no HTTP stack, no hook, no provider operator."""
    code = (
        "import sys, airflow_provider_cfbilling.triggers.billing\n"
        "heavy = {'requests', 'urllib3', 'pyarrow', 'pandas', 'cloudflare', "
        "'airflow_provider_cfbilling.hooks.billing', 'airflow_provider_cfbilling.sensors.billing'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
