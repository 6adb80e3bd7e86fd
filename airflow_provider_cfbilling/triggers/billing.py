"""Triggers of the Cloudflare billing provider.

The triggerer imports this module: it stays light (asyncio, pendulum and Airflow's trigger base only),
and its trigger makes no API call: it only sleeps until the moment the sensor computed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pendulum
from airflow.triggers.base import BaseTrigger, TriggerEvent

# Re-read the clock at least this often, so a suspended host or a clock step does not oversleep.
_MAX_SLEEP_SECONDS = 3600.0


def _utcnow() -> pendulum.DateTime:
    return pendulum.now("UTC")


class CloudflareBillingPeriodTrigger(BaseTrigger):
    """
    Sleep until ``moment``, then hand the billing period back to the sensor that deferred.

    The sensor computes when the period it waits for closes (its end plus the settle time) and defers to
    this trigger until then: no worker slot and no API call while waiting. The trigger carries the period
    (and when the wait began) so that the sensor, on waking, confirms with the API without asking for the
    billing info again. It serialises to plain JSON, so a triggerer restart resumes it.

    :param moment: when to wake the sensor: an aware datetime or an ISO 8601 string
    :param period: the period waited for, as the sensor's XCom dict (``start``, ``end``, ``anchor``, ...),
        or None while the sensor could not place its target yet; echoed in the event
    :param waiting_since: when the sensor's wait began (ISO 8601), echoed in the event so that the
        sensor's ``timeout`` counts the whole wait across deferrals
    """

    def __init__(
        self,
        moment: dt.datetime | str,
        period: dict[str, Any] | None,
        waiting_since: str,
    ) -> None:
        super().__init__()
        parsed = pendulum.parse(moment, tz=None) if isinstance(moment, str) else moment
        if not isinstance(parsed, dt.datetime) or parsed.tzinfo is None:
            raise ValueError(f"moment must be an aware datetime or an ISO 8601 datetime, not {moment!r}")
        self.moment: pendulum.DateTime = pendulum.instance(parsed).in_timezone("UTC")
        self.period: dict[str, Any] | None = period
        self.waiting_since: str = waiting_since

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"moment": self.moment.isoformat(), "period": self.period, "waiting_since": self.waiting_since},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        self.log.info("Sleeping until %s, then the sensor checks the billing period.", self.moment)
        while (remaining := (self.moment - _utcnow()).total_seconds()) > 0:
            await asyncio.sleep(min(remaining, _MAX_SLEEP_SECONDS))
        yield TriggerEvent(
            {"period": self.period, "waiting_since": self.waiting_since, "woke_at": _utcnow().isoformat()}
        )
