"""One billing-period rule: the hook, the operator's ``billing_period_of`` and the sensor place the same period.

An anchor is the moment of a first paid purchase (``2024-03-17T13:45:12Z``), but the API bills whole UTC days:
its rows' ``BillingPeriodStart`` is midnight. Each case below is checked three ways against the simulator,
whose own period arithmetic is independent of the provider's: ``CloudflareBillingHook.get_billing_period``,
the operator fetching ``billing_period_of`` (the window it asks for, and the rows' ``BillingPeriodStart``),
and the sensor in each of its modes through ``dag.test()``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pendulum
import pytest
import requests

from airflow_provider_cfbilling.exceptions import CloudflareBillingInputError
from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook
from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor
from airflow_provider_cfbilling.testing.simulator import (
    ACCOUNTS,
    ANCHOR29_ACCOUNT,
    ANCHOR31_ACCOUNT,
    CANCELLED_ACCOUNT,
    SIM_TOKEN,
)

DAG_FILE = Path(__file__).parent / "dags" / "sensor_monthly_close.py"
# The API's clock: every period below has closed, and the API shows a later one as current.
API_TODAY = dt.date(2025, 6, 10)

# (account, target, expected period start and end: midnight UTC)
CASES = [
    # anchor 2024-01-29T21:07:33Z: 29 Feb 2025 does not exist, the period starts on the 28th; 10:00 on that day
    # is before the anchor's time of day and still in that period.
    (ANCHOR29_ACCOUNT, "2025-02-28T10:00:00Z", "2025-02-28", "2025-03-29"),
    (ANCHOR29_ACCOUNT, "2025-03-29", "2025-03-29", "2025-04-29"),
    # anchor 2024-03-17T13:45:12Z, cancelled 2025-02-20T10:00:00Z
    (CANCELLED_ACCOUNT, "2025-01-17T05:00:00Z", "2025-01-17", "2025-02-17"),
    (CANCELLED_ACCOUNT, "2025-02-20T12:00:00Z", "2025-02-17", "2025-03-17"),  # the period it was cancelled in
    # anchor 2024-01-31: clamps to 28 Feb, back on the 31st in March
    (ANCHOR31_ACCOUNT, "2025-03-01", "2025-02-28", "2025-03-31"),
    (ANCHOR31_ACCOUNT, "2025-04-30T23:00:00Z", "2025-04-30", "2025-05-31"),
]
IDS = [f"{ACCOUNTS[a].name}-{t}" for a, t, _, _ in CASES]


def midnight(day: str) -> str:
    return f"{day}T00:00:00Z"


def api_period_start_of(sim: Any, account: str, day: str) -> str | None:
    """The BillingPeriodStart the simulator's rows give the UTC day ``day`` (None: no usage that day)."""
    response = requests.get(
        f"{sim.url}/accounts/{account}/billable-usage",
        params={"from": day, "to": day},
        headers={"Authorization": f"Bearer {SIM_TOKEN}"},
        timeout=30,
    )
    response.raise_for_status()
    starts = {row["BillingPeriodStart"] for row in response.json()["result"]}
    assert len(starts) <= 1
    return starts.pop() if starts else None


@pytest.fixture
def api(sim: Any, cloudflare_conn: str) -> Any:
    sim.set_today(API_TODAY)
    return sim


@pytest.mark.parametrize(("account", "target", "start", "end"), CASES, ids=IDS)
def test_the_hook_places_the_period_the_apis_rows_carry(
    api: Any, account: str, target: str, start: str, end: str
) -> None:
    period = CloudflareBillingHook().get_billing_period(account, at=target)

    assert (period.start, period.end) == (pendulum.parse(midnight(start)), pendulum.parse(midnight(end)))
    subscription = ACCOUNTS[account].subscriptions[0]
    assert (period.subscription_id, period.anchor) == (subscription.id, pendulum.parse(subscription.anchor_timestamp))
    # The simulator's rows agree: the target's day and the period's first day carry this start, the day
    # before it the previous period's.
    api.set_window_rules(False)
    target_day = pendulum.parse(target).to_date_string()
    assert api_period_start_of(api, account, target_day) in (midnight(start), None)
    assert api_period_start_of(api, account, start) == midnight(start)
    before = pendulum.parse(start).subtract(days=1).to_date_string()
    assert api_period_start_of(api, account, before) not in (midnight(start), None)
    assert api.requests  # the oracle went through the simulator, like the hook


@pytest.mark.parametrize(("account", "target", "start", "end"), CASES, ids=IDS)
def test_the_operator_fetches_the_same_period(api: Any, account: str, target: str, start: str, end: str) -> None:
    records = CloudflarePaygoUsageOperator(task_id="usage", account_id=account, billing_period_of=target).execute({})

    usage = [r for r in api.requests if "info" not in r["path"]]
    assert usage[-1]["query"] == {"from": start, "to": end}
    assert records, "the period has usage"
    assert {r["BillingPeriodStart"] for r in records} == {midnight(start)}
    days = sorted({r["ChargePeriodStart"] for r in records})
    assert days[0] == midnight(start) and days[-1] < midnight(end)


# The three accounts, one case each, through the sensor in each mode.
SENSOR_CASES = [CASES[0], CASES[3], CASES[4]]


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
@pytest.mark.parametrize(("account", "target", "start", "end"), SENSOR_CASES, ids=[IDS[0], IDS[3], IDS[4]])
def test_the_sensor_waits_for_the_same_period_in_every_mode(
    api: Any,
    dag_runner: Any,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    account: str,
    target: str,
    start: str,
    end: str,
) -> None:
    """With the anchor's time of day, the sensor used to wait for an end the API's whole-day periods never
    reach, and timed out on every such account."""
    monkeypatch.setenv("SENSOR_MODE", mode)
    monkeypatch.setenv("SENSOR_TARGET", target)
    monkeypatch.setenv("SENSOR_ACCOUNT_ID", account)

    result = dag_runner(DAG_FILE, "sensor_monthly_close")

    assert result.task_states == {"wait": "success", "book": "success"}
    period = result.xcom("wait")
    subscription = ACCOUNTS[account].subscriptions[0]
    assert period == {
        "account_id": account,
        "subscription_id": subscription.id,
        "anchor": subscription.anchor_timestamp,  # as Cloudflare sent it, time of day included
        "start": midnight(start),
        "end": midnight(end),
        "source": "info",
    }
    hook_period = CloudflareBillingHook().get_billing_period(account, at=target)
    operator_window = CloudflarePaygoUsageOperator(task_id="u", account_id=account, billing_period_of=target)
    operator_window.execute({})
    usage = [r for r in api.requests if "info" not in r["path"]]
    assert (period["start"], period["end"]) == (
        hook_period.start.isoformat().replace("+00:00", "Z"),
        hook_period.end.isoformat().replace("+00:00", "Z"),
    )
    assert usage[-1]["query"] == {"from": start, "to": end}


# -- a cancelled subscription ---------------------------------------------------------------------------------


def test_a_period_after_a_cancellation_is_refused_by_hook_operator_and_sensor(api: Any) -> None:
    """CANCELLED_ACCOUNT's only subscription ended 2025-02-20T10:00:00Z, inside [2025-02-17, 2025-03-17):
    that period is its last; no later one exists, and asking for one says so rather than wait or land nothing."""
    expected = r"cancelled at 2025-02-20T10:00:00Z: its last billing period is 2025-02-17T00:00:00Z to 2025-03-17"

    with pytest.raises(CloudflareBillingInputError, match=expected):
        CloudflareBillingHook().get_billing_period(CANCELLED_ACCOUNT, at="2025-03-17")
    with pytest.raises(CloudflareBillingInputError, match=expected):
        CloudflarePaygoUsageOperator(
            task_id="usage", account_id=CANCELLED_ACCOUNT, billing_period_of="2025-04-01"
        ).execute({})
    with pytest.raises(CloudflareBillingInputError, match=expected):
        CloudflareBillingPeriodSensor(task_id="wait", account_id=CANCELLED_ACCOUNT, target="2025-05-01").execute({})
    assert all("info" in r["path"] for r in api.requests)  # refused before any usage call
