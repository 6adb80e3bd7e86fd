"""Billing-period arithmetic: monthly periods from a fixed anchor, in UTC, property-tested."""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_cfbilling.exceptions import CloudflareBillingInputError, CloudflareResponseError
from airflow_provider_cfbilling.utils.periods import (
    BillingPeriod,
    billing_period_at,
    parse_instant,
    period_containing,
    period_start,
    select_subscription,
    start_day_is_ambiguous,
)

UTC = dt.timezone.utc
instants = st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2110, 12, 31), timezones=st.just(UTC))
# Anchors on the 28th to the 31st, the days that clamp in short months, across leap years.
month_end_anchors = st.builds(
    lambda year, month, day, seconds: pendulum.datetime(year, month, 1, tz="UTC").add(
        days=min(day, pendulum.date(year, month, 1).days_in_month) - 1, seconds=seconds
    ),
    st.integers(1996, 2104),
    st.integers(1, 12),
    st.integers(28, 31),
    st.integers(0, 86399),
)
anchors = st.one_of(instants, month_end_anchors)


# -- what a DAG author sees --------------------------------------------------------------------------


def test_a_period_runs_from_the_anchor_day_to_the_same_day_next_month() -> None:
    period = period_containing("2025-01-14T00:00:00Z", "2025-11-20")
    assert period == BillingPeriod(pendulum.datetime(2025, 11, 14, tz="UTC"), pendulum.datetime(2025, 12, 14, tz="UTC"))


def test_an_anchor_on_the_31st_clamps_in_short_months_and_comes_back_in_long_ones() -> None:
    anchor = "2024-01-31T00:00:00Z"
    starts = [period_start(anchor, n).to_date_string() for n in range(14)]
    assert starts == [
        "2024-01-31",
        "2024-02-29",  # leap year
        "2024-03-31",  # back on the 31st: computed from the anchor, not from 29 Feb
        "2024-04-30",
        "2024-05-31",
        "2024-06-30",
        "2024-07-31",
        "2024-08-31",
        "2024-09-30",
        "2024-10-31",
        "2024-11-30",
        "2024-12-31",
        "2025-01-31",
        "2025-02-28",
    ]


def test_an_anchor_on_29_february_is_the_28th_in_common_years() -> None:
    anchor = "2024-02-29T06:30:00Z"
    assert str(period_start(anchor, 12)) == "2025-02-28 00:00:00+00:00"
    assert str(period_start(anchor, 13)) == "2025-03-29 00:00:00+00:00"
    assert str(period_start(anchor, 48)) == "2028-02-29 00:00:00+00:00"


def test_periods_run_on_whole_utc_days_whatever_the_anchors_time_of_day() -> None:
    """An anchor is the moment of a first paid purchase; the rows' BillingPeriodStart is midnight UTC."""
    period = period_containing("2024-03-17T13:45:12Z", "2025-02-17T08:00:00Z")
    assert str(period.start) == "2025-02-17 00:00:00+00:00"
    assert str(period.end) == "2025-03-17 00:00:00+00:00"
    assert pendulum.datetime(2025, 2, 17, tz="UTC") in period  # before the anchor's time of day, same period
    assert pendulum.datetime(2025, 3, 16, 23, 59, 59, tz="UTC") in period
    assert period.end not in period
    assert period_containing("2024-03-17T13:45:12Z", "2025-02-16T23:59:59Z").end == period.start


def test_periods_extend_before_the_anchor() -> None:
    period = period_containing("2025-01-31T00:00:00Z", "2024-12-01")
    assert (period.start.to_date_string(), period.end.to_date_string()) == ("2024-11-30", "2024-12-31")


# -- properties ---------------------------------------------------------------------------------------


@settings(deadline=None)  # a property, not a benchmark: a loaded machine must not fail it
@given(anchor=anchors, instant=instants)
def test_an_instant_lies_in_the_period_containing_it(anchor: dt.datetime, instant: dt.datetime) -> None:
    period = period_containing(anchor, instant)
    assert period.start <= instant < period.end
    assert instant in period


@settings(deadline=None)  # a property, not a benchmark: a loaded machine must not fail it
@given(anchor=anchors, instant=instants)
def test_the_period_containing_an_instant_is_one_of_the_anchors_periods(
    anchor: dt.datetime, instant: dt.datetime
) -> None:
    """Exactly one period contains the instant: the neighbours of the one found do not."""
    period = period_containing(anchor, instant)
    n = next(k for k in range(-1500, 1500) if period_start(anchor, k) == period.start)
    assert period_start(anchor, n + 1) == period.end
    neighbours = [BillingPeriod(period_start(anchor, k), period_start(anchor, k + 1)) for k in (n - 1, n + 1)]
    assert all(instant not in other for other in neighbours)


@settings(deadline=None)  # a property, not a benchmark: a loaded machine must not fail it
@given(anchor=anchors, instant=instants)
def test_a_period_starts_at_midnight_utc_of_the_anchors_day_some_months_on(
    anchor: dt.datetime, instant: dt.datetime
) -> None:
    period = period_containing(anchor, instant)
    assert period.start.time() == period.end.time() == dt.time(0)
    assert period.start == period_start(anchor.date().isoformat(), 0).add(
        months=(period.start.year - anchor.year) * 12 + period.start.month - anchor.month
    )


@settings(deadline=None)  # a property, not a benchmark: a loaded machine must not fail it
@given(anchor=anchors, instant=instants)
def test_periods_tile_time_without_gap_or_overlap(anchor: dt.datetime, instant: dt.datetime) -> None:
    period = period_containing(anchor, instant)
    following = period_containing(anchor, period.end)
    preceding = period_containing(anchor, period.start - dt.timedelta(microseconds=1))
    assert following.start == period.end
    assert preceding.end == period.start
    assert dt.timedelta(days=28) <= period.end - period.start <= dt.timedelta(days=31)


@settings(deadline=None)  # a property, not a benchmark: a loaded machine must not fail it
@given(anchor=month_end_anchors, n=st.integers(-240, 240))
def test_month_end_anchors_clamp_to_the_last_day_and_return_to_their_day(anchor: pendulum.DateTime, n: int) -> None:
    start = period_start(anchor, n)
    assert start.day == min(anchor.day, start.days_in_month)
    assert start.time() == dt.time(0)  # whole UTC days
    assert period_start(anchor, n + 1) > start


@settings(deadline=None)  # a property, not a benchmark: a loaded machine must not fail it
@given(anchor=anchors, instant=instants)
def test_any_representation_of_the_anchor_gives_the_same_periods(anchor: dt.datetime, instant: dt.datetime) -> None:
    expected = period_containing(anchor, instant)
    assert period_containing(anchor.isoformat(), instant.isoformat()) == expected
    shifted = anchor.astimezone(dt.timezone(dt.timedelta(hours=-7)))
    assert period_containing(shifted, instant) == expected


# -- reading instants ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.date(2025, 2, 1), "2025-02-01T00:00:00+00:00"),
        ("2025-02-01", "2025-02-01T00:00:00+00:00"),
        ("2025-02-01T10:00:00Z", "2025-02-01T10:00:00+00:00"),
        ("2025-02-01T10:00:00+02:00", "2025-02-01T08:00:00+00:00"),
        (dt.datetime(2025, 2, 1, 10, tzinfo=UTC), "2025-02-01T10:00:00+00:00"),
        (pendulum.datetime(2025, 2, 1, 10, tz="Europe/Paris"), "2025-02-01T09:00:00+00:00"),
    ],
)
def test_parse_instant_reads_dates_datetimes_and_iso_strings(value: object, expected: str) -> None:
    parsed = parse_instant(value)
    assert parsed.isoformat() == expected
    assert parsed.timezone_name == "UTC"


@pytest.mark.parametrize("value", ["", "next tuesday", "2025-13-01", dt.datetime(2025, 2, 1), 20250201])
def test_parse_instant_refuses_what_it_cannot_place_in_utc(value: object) -> None:
    with pytest.raises(CloudflareBillingInputError, match="target"):
        parse_instant(value, "target")


def test_start_day_is_ambiguous_only_on_a_month_end_from_the_28th() -> None:
    assert start_day_is_ambiguous("2025-02-28")
    assert start_day_is_ambiguous("2024-02-29")
    assert start_day_is_ambiguous("2025-04-30")
    assert not start_day_is_ambiguous("2025-03-30")
    assert not start_day_is_ambiguous("2025-03-28")
    assert not start_day_is_ambiguous("2025-03-31")  # only anchor 31 reaches the 31st


# -- choosing a subscription ----------------------------------------------------------------------------

TWO_SUBSCRIPTIONS = {
    "covered": True,
    "subscriptions": [
        {
            "id": "sub-late",
            "billing_cycle_anchor_timestamp": "2025-03-05T00:00:00Z",
            "start_timestamp": "2025-03-05T00:00:00Z",
        },
        {
            "id": "sub-early",
            "billing_cycle_anchor_timestamp": "2024-06-20T00:00:00Z",
            "start_timestamp": "2024-06-20T00:00:00Z",
            "end_timestamp": "2025-06-20T00:00:00Z",
        },
    ],
}


def test_without_an_id_the_earliest_anchored_active_subscription_defines_the_periods() -> None:
    assert select_subscription(TWO_SUBSCRIPTIONS)["id"] == "sub-early"
    assert select_subscription(TWO_SUBSCRIPTIONS, at="2025-04-01")["id"] == "sub-early"
    # After the early one ended, only the late one is active.
    assert select_subscription(TWO_SUBSCRIPTIONS, at="2025-07-01")["id"] == "sub-late"
    # Before either started, none is active: the earliest anchor still decides.
    assert select_subscription(TWO_SUBSCRIPTIONS, at="2020-01-01")["id"] == "sub-early"


def test_an_explicit_subscription_id_wins_and_an_unknown_one_is_refused() -> None:
    assert select_subscription(TWO_SUBSCRIPTIONS, "sub-late", at="2024-07-01")["id"] == "sub-late"
    with pytest.raises(CloudflareBillingInputError, match=r"sub-nope.*'sub-late', 'sub-early'"):
        select_subscription(TWO_SUBSCRIPTIONS, "sub-nope")


@pytest.mark.parametrize(
    "info",
    [{"covered": True, "subscriptions": []}, {"covered": True}, {"subscriptions": [{"id": "x"}]}],
)
def test_info_without_a_usable_anchor_is_a_response_error(info: dict) -> None:
    with pytest.raises(CloudflareResponseError):
        select_subscription(info)


# -- placing an instant with the billing info --------------------------------------------------------------------

CANCELLED = {
    "covered": True,
    "subscriptions": [
        {
            "id": "sub-cancelled",
            "billing_cycle_anchor_timestamp": "2024-03-17T13:45:12Z",
            "start_timestamp": "2024-03-17T13:45:12Z",
            "end_timestamp": "2025-02-20T10:00:00Z",
        }
    ],
}


def test_billing_period_at_runs_on_whole_days_and_names_its_subscription() -> None:
    period = billing_period_at(CANCELLED, "2025-01-17T05:00:00Z")
    assert period == BillingPeriod(
        pendulum.datetime(2025, 1, 17, tz="UTC"),
        pendulum.datetime(2025, 2, 17, tz="UTC"),
        pendulum.datetime(2024, 3, 17, 13, 45, 12, tz="UTC"),
        "sub-cancelled",
    )


def test_a_cancelled_subscriptions_last_period_is_whole_and_later_ones_are_refused() -> None:
    last = billing_period_at(CANCELLED, "2025-03-16T23:59:59Z")  # after the cancellation, same period
    assert (last.start, last.end) == (
        pendulum.datetime(2025, 2, 17, tz="UTC"),
        pendulum.datetime(2025, 3, 17, tz="UTC"),
    )
    with pytest.raises(CloudflareBillingInputError, match=r"'sub-cancelled' of account 023e.*cancelled at 2025-02-20"):
        billing_period_at(CANCELLED, "2025-03-17", account="023e105f4ecef8ad9ca31a8372d0c353")


def test_the_cancellation_message_gives_utc_instants_whatever_the_machines_timezone() -> None:
    with (
        pendulum.test_local_timezone(pendulum.timezone("Asia/Tokyo")),
        pytest.raises(CloudflareBillingInputError) as failure,
    ):
        billing_period_at(CANCELLED, "2025-03-17T10:00:00+09:00", account="023e105f4ecef8ad9ca31a8372d0c353")
    assert (
        "was cancelled at 2025-02-20T10:00:00Z: its last billing period is 2025-02-17T00:00:00Z to "
        "2025-03-17T00:00:00Z, and no billing period of it contains 2025-03-17T01:00:00Z."
    ) in str(failure.value)


def test_a_start_that_is_not_an_instant_is_named_as_the_start() -> None:
    with pytest.raises(CloudflareBillingInputError, match=r"^start='the 28th' is not an ISO 8601 date"):
        start_day_is_ambiguous("the 28th")


def test_an_anchor_the_api_garbled_is_the_apis_fault() -> None:
    info = {"covered": True, "subscriptions": [{"id": "s", "billing_cycle_anchor_timestamp": "2024-03-17T13:45:12"}]}
    with pytest.raises(CloudflareResponseError, match="billing_cycle_anchor_timestamp='2024-03-17T13:45:12'"):
        billing_period_at(info, "2025-01-01")
