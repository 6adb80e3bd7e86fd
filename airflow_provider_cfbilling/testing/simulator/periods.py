"""The simulator's own billing-period arithmetic (standard library only).

It deliberately does not import the client's period rule: the simulator is the independent model
the client is tested against. Periods are monthly, on the UTC day of month of the subscription's
anchor (clamped to the last day of shorter months), and always computed from the anchor itself,
never by chaining months, so an anchor on the 31st comes back to the 31st after a short month.
"""

from __future__ import annotations

import calendar
from datetime import date


def period_start_at(anchor: date, index: int) -> date:
    """Start of the ``index``-th period after the anchor's (``index`` may be negative)."""
    months = anchor.year * 12 + anchor.month - 1 + index
    year, month0 = divmod(months, 12)
    last_day = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(anchor.day, last_day))


def period_index(anchor: date, day: date) -> int:
    """Index (see :func:`period_start_at`) of the period containing ``day``."""
    index = (day.year - anchor.year) * 12 + day.month - anchor.month
    if period_start_at(anchor, index) > day:
        index -= 1
    return index


def billing_period_start(anchor: date, day: date) -> date:
    """Start of the monthly billing period (anchored on ``anchor``) that contains ``day``."""
    return period_start_at(anchor, period_index(anchor, day))


def billing_period(anchor: date, day: date) -> tuple[date, date]:
    """``(start, end)`` of the period containing ``day``; ``end`` is exclusive."""
    index = period_index(anchor, day)
    return period_start_at(anchor, index), period_start_at(anchor, index + 1)


def contains_anchor_day(anchor: date, first: date, last: date) -> bool:
    """Whether the inclusive range ``first..last`` holds an anchor day (a period start)."""
    # The latest anchor day on or before `last` (periods extrapolated before the anchor too).
    return first <= last and billing_period_start(anchor, last) >= first
