"""Billing-period arithmetic: pure functions over pendulum values, no I/O. The one place periods are placed.

Cloudflare bills self-serve accounts monthly, in UTC, on a cycle anchored on a subscription's
``billing_cycle_anchor_timestamp``: not the calendar month. The anchor is the moment of the first paid
purchase (e.g. ``2024-03-17T13:45:12Z``), but periods run on whole UTC days, as the usage rows'
``BillingPeriodStart`` (``2025-02-17T00:00:00Z``) show: period ``n`` starts at midnight UTC of the anchor's
day, ``n`` months on, and ends, exclusive, where period ``n + 1`` starts.

:func:`billing_period_at` applies this to an answer of the billing-info endpoint (which subscription, the
period containing an instant, a cancelled subscription); ``CloudflareBillingHook.get_billing_period`` reads
that answer and calls it, and the operator and the sensor both use that hook method.

An anchor on the 29th, 30th or 31st clamps to the last day of a shorter month and returns to its own day
in longer months (anchor 31 Jan: 29 Feb, 31 Mar, 30 Apr, 31 May...). That only holds when every start is
computed from the anchor: chaining "previous start + 1 month" drifts to the 28th for good, which is why
:func:`period_start` always counts months from the anchor.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pendulum

from airflow_provider_cfbilling.exceptions import CloudflareBillingInputError, CloudflareResponseError
from airflow_provider_cfbilling.utils.validation import to_utc_datetime


@dataclass(frozen=True)
class BillingPeriod:
    """One billing period: ``[start, end)`` in UTC (start inclusive, end exclusive, like FOCUS), whole days.

    :param start: midnight UTC of the period's first day
    :param end: midnight UTC of the next period's first day
    :param anchor: the ``billing_cycle_anchor_timestamp`` it was computed from, as Cloudflare sent it (None
        when computed from a bare anchor)
    :param subscription_id: the subscription whose cycle it belongs to, when known
    """

    start: pendulum.DateTime
    end: pendulum.DateTime
    anchor: pendulum.DateTime | None = None
    subscription_id: str | None = None

    def __contains__(self, instant: object) -> bool:
        return isinstance(instant, dt.datetime) and self.start <= instant < self.end


def parse_instant(value: Any, name: str = "value") -> pendulum.DateTime:
    """Read a date, an aware datetime or an ISO 8601 string as an aware UTC ``DateTime``.

    A date (or ``'YYYY-MM-DD'``) means midnight UTC of that day; a naive datetime is refused (billing days
    are UTC days, and a guessed zone shifts a whole day). Raises ``CloudflareBillingInputError``.

    :param value: the value to read
    :param name: the parameter's name, for the error message
    """
    return to_utc_datetime(value, name)


def period_start(anchor: Any, n: int) -> pendulum.DateTime:
    """Start of the ``n``-th period after the one that contains ``anchor`` (``n`` may be negative).

    Always midnight UTC of the anchor's day ``+ n months`` (pendulum clamps day 29-31 to the month's end),
    never chained. The anchor's time of day does not move a period: rows are billed by whole UTC days.

    :param anchor: the billing-cycle anchor (anything :func:`parse_instant` reads)
    :param n: the period's index: 0 is the period starting at the anchor
    """
    return parse_instant(anchor, "anchor").start_of("day").add(months=n)


def period_containing(anchor: Any, instant: Any) -> BillingPeriod:
    """The billing period of ``anchor``'s cycle that contains ``instant``.

    Periods extend before the anchor the same way (useful when a probe's period start is the only anchor
    known).

    :param anchor: the billing-cycle anchor (anything :func:`parse_instant` reads)
    :param instant: the instant to place (anything :func:`parse_instant` reads)
    """
    origin = parse_instant(anchor, "anchor").start_of("day")
    moment = parse_instant(instant, "instant")
    # A first guess from the calendar months between them is off by at most one period.
    n = (moment.year - origin.year) * 12 + moment.month - origin.month
    while period_start(origin, n) > moment:
        n -= 1
    while period_start(origin, n + 1) <= moment:
        n += 1
    return BillingPeriod(period_start(origin, n), period_start(origin, n + 1))


def start_day_is_ambiguous(start: Any) -> bool:
    """Whether a period start alone cannot tell its anchor's day of month.

    A start on the last day of a month shorter than 31 days, from the 28th on, may come from an anchor on
    that day or any later one (28 Feb 2025 starts the periods of anchors 28 to 31): the following periods
    then differ. A start on the 31st can only come from an anchor on the 31st.

    :param start: a period start (anything :func:`parse_instant` reads)
    """
    moment = parse_instant(start, "start")
    return 28 <= moment.day == moment.days_in_month < 31


def select_subscription(
    info: dict[str, Any],
    subscription_id: str | None = None,
    *,
    at: Any = None,
    account: str = "the account",
) -> dict[str, Any]:
    """Pick the subscription whose billing cycle defines the periods.

    With ``subscription_id``: that subscription (an unknown id raises, listing the known ones). Without it:
    among the subscriptions active at ``at`` (``start_timestamp <= at < end_timestamp``, a missing bound
    being open; all of them when ``at`` is None or none is active), the one with the earliest
    ``billing_cycle_anchor_timestamp``, ties broken by id. The earliest anchor is the account's first paid
    purchase, on which Cloudflare anchors the account's monthly cycle.

    :param info: the answer of the info endpoint: ``{"covered": bool, "subscriptions": [...]}``
    :param subscription_id: the subscription to use, or None for the rule above
    :param at: the instant the subscription should be active at (anything :func:`parse_instant` reads)
    :param account: the account, for messages
    """
    subscriptions = info.get("subscriptions") if isinstance(info, dict) else None
    if not isinstance(subscriptions, list) or not subscriptions:
        raise CloudflareResponseError(
            "The billing info lists no subscription, so there is no billing-cycle anchor to compute "
            f"periods from (info: {info!r})."
        )
    for subscription in subscriptions:
        if not isinstance(subscription, dict) or not subscription.get("billing_cycle_anchor_timestamp"):
            raise CloudflareResponseError(
                f"A subscription in the billing info has no billing_cycle_anchor_timestamp: {subscription!r}."
            )
        for field in ("billing_cycle_anchor_timestamp", "start_timestamp", "end_timestamp"):
            if subscription.get(field) is not None:
                _api_instant(subscription[field], field, account)
    if subscription_id is not None:
        for subscription in subscriptions:
            if subscription.get("id") == subscription_id:
                return subscription
        known = ", ".join(repr(s.get("id")) for s in subscriptions)
        raise CloudflareBillingInputError(
            f"subscription_id={subscription_id!r} is not one of the account's subscriptions ({known}). "
            "Pass one of these, or leave subscription_id unset to use the earliest-anchored active one."
        )
    candidates = subscriptions
    if at is not None:
        moment = parse_instant(at, "at")
        active = [s for s in subscriptions if _is_active(s, moment)]
        candidates = active or subscriptions
    return min(
        candidates,
        key=lambda s: (parse_instant(s["billing_cycle_anchor_timestamp"], "anchor"), str(s.get("id"))),
    )


def _is_active(subscription: dict[str, Any], moment: pendulum.DateTime) -> bool:
    start = subscription.get("start_timestamp")
    end = subscription.get("end_timestamp")
    if start and parse_instant(start, "start_timestamp") > moment:
        return False
    return not (end and parse_instant(end, "end_timestamp") <= moment)


def billing_period_at(
    info: dict[str, Any],
    at: Any,
    subscription_id: str | None = None,
    *,
    account: str = "the account",
) -> BillingPeriod:
    """The billing period of the account described by ``info`` that contains the instant ``at``.

    The subscription is chosen by :func:`select_subscription`; the period by :func:`period_containing` from
    its anchor, on whole UTC days.

    A cancelled subscription (``end_timestamp`` present): its periods up to and including the one in which
    it ended are returned whole (usage is billed in arrears at the period's end, and every row of that last
    period carries its ``BillingPeriodStart``). A period starting at or after the end belongs to no
    subscription: asking for one raises, rather than placing a period that will never be billed.

    :param info: the answer of the info endpoint: ``{"covered": bool, "subscriptions": [...]}``
    :param at: the instant to place (anything :func:`parse_instant` reads)
    :param subscription_id: the subscription to use, or None for the rule of :func:`select_subscription`
    :param account: the account, for messages
    :raises CloudflareBillingInputError: an unknown ``subscription_id``, or ``at`` after the chosen
        subscription was cancelled
    :raises CloudflareResponseError: an info answer without a usable anchor
    """
    moment = parse_instant(at, "at")
    subscription = select_subscription(info, subscription_id, at=moment, account=account)
    anchor = _api_instant(subscription["billing_cycle_anchor_timestamp"], "billing_cycle_anchor_timestamp", account)
    period = period_containing(anchor, moment)
    ended = subscription.get("end_timestamp")
    if ended is not None:
        end = _api_instant(ended, "end_timestamp", account)
        if period.start >= end:
            last = period_containing(anchor, end.subtract(microseconds=1))
            raise CloudflareBillingInputError(
                f"Subscription {subscription.get('id')!r} of account {account} was cancelled at {_iso(end)}: its "
                f"last billing period is {_iso(last.start)} to {_iso(last.end)}, and no billing period of it "
                f"contains {_iso(moment)}. Ask for an instant before {_iso(end)}, or pass the subscription_id of "
                "another subscription of the account."
            )
    return BillingPeriod(period.start, period.end, anchor, subscription.get("id"))


def _api_instant(value: Any, field: str, account: str) -> pendulum.DateTime:
    """An instant Cloudflare sent; one that is not is the API's fault, not the user's."""
    try:
        return parse_instant(value, field)
    except CloudflareBillingInputError:
        raise CloudflareResponseError(
            f"Cloudflare sent {field}={value!r} for account {account}, which is not an ISO 8601 instant: the "
            "billing period cannot be placed. Retry later; report it if it persists."
        ) from None


def _iso(moment: pendulum.DateTime) -> str:
    return moment.in_timezone("UTC").isoformat().replace("+00:00", "Z")
