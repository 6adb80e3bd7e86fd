"""CloudflareBillingPeriodSensor: wait until a Cloudflare billing period has closed, then name it.

FinOps teams book a period's cost once it is final; this sensor is the gate. It reads the billing-cycle
anchor once, computes when the period closes (its end plus a settle time for late usage data), waits
until then without asking the API anything, and asks the API once to confirm that its current period has
moved on. The wait costs a handful of API calls whatever the mode and however long it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_cfbilling.compat import AirflowRescheduleException, AirflowSensorTimeout, AirflowSkipException
from airflow_provider_cfbilling.exceptions import (
    CloudflareBillingInputError,
    CloudflareNoBillingCycleError,
    CloudflareResponseError,
    CloudflareRouteNotFoundError,
)
from airflow_provider_cfbilling.utils.periods import (
    BillingPeriod,
    parse_instant,
    period_containing,
    start_day_is_ambiguous,
)
from airflow_provider_cfbilling.utils.validation import validate_account_id

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook

#: Cloudflare's usage data lags up to 24 hours; third-party tools wait 24 to 48 hours before treating a
#: day as final. Two days past the period's end, its last day is in with a day of margin.
DEFAULT_SETTLE = timedelta(days=2)
#: Only matters once the close moment has passed and the API still shows the period open (it updates
#: about daily), or while the period cannot be placed yet: checking hourly is plenty.
DEFAULT_POKE_INTERVAL = timedelta(hours=1)


def _utcnow() -> pendulum.DateTime:
    return pendulum.now("UTC")


def _iso(moment: pendulum.DateTime) -> str:
    return moment.in_timezone("UTC").isoformat().replace("+00:00", "Z")


class CloudflareBillingPeriodSensor(BaseSensorOperator):
    """
    Wait until the Cloudflare billing period containing ``target`` has closed, then return it via XCom.

    Closed means both: the period's end (exclusive) plus ``settle`` has passed on the clock, and the API
    agrees: the current billing period it reports (``BillingPeriodStart`` of the usage call without a
    window) starts at or after that end. An account with no usage yet in its current period gives the API
    nothing to disagree with, and the clock decides.

    Periods are placed by :meth:`CloudflareBillingHook.get_billing_period`, the rule the operator's
    ``billing_period_of`` uses too: monthly, in UTC, on whole days from the day of a subscription's
    ``billing_cycle_anchor_timestamp`` (an anchor at ``13:45:12Z`` on the 17th gives periods from the 17th at
    ``00:00:00Z``, as the API's ``BillingPeriodStart``); anchors on the 29th to 31st clamp to a short month's
    last day. A target after a cancelled subscription's last period is refused. When
    the info endpoint is unavailable (404, or the account is not covered) the sensor falls back to the
    current-period probe and says so in the log: the current period's start then serves as the anchor.

    API calls: one info call to place the period, then nothing until the close moment, then one usage call
    to confirm (repeated every ``poke_interval`` only while the API still shows the period open). In
    deferrable mode the wait runs in the triggerer (no worker slot). In reschedule mode the task comes back
    at the close moment rather than every ``poke_interval`` (each comeback asks for the info again: one
    call). A target whose period has not started yet waits the same way: until that period closes.

    The whole wait counts against ``timeout`` (Airflow's default: 7 days). To wait out a period that has
    just begun, set it to cover a month plus ``settle``, e.g. ``timeout=timedelta(days=35)``.

    Returned XCom: ``{"account_id", "subscription_id", "anchor", "start", "end", "source"}``, times in
    ISO 8601 UTC (``2025-11-14T00:00:00Z``), ``end`` exclusive, ``source`` ``"info"`` or ``"probe"``.
    Downstream: ``from_="{{ ti.xcom_pull(task_ids='wait')['start'] }}"``.

    :param cloudflare_conn_id: The Cloudflare connection (API token with Billing Read). Templated.
    :param account_id: The account; default: the connection's ``account_id`` extra. Templated.
    :param target: An instant inside the period to wait for: a date, an aware datetime or an ISO 8601
        string. Default: the run's data interval start, else its logical date, else its ``run_after``.
        Templated.
    :param settle: How long after the period's end its data counts as final (a non-negative timedelta).
        Default two days: usage data lags up to a day, and a day of margin covers a late daily update.
    :param subscription_id: The subscription whose billing cycle defines the periods. Default: among the
        subscriptions active at ``target``, the one with the earliest anchor (the account's first paid
        purchase); see :func:`~airflow_provider_cfbilling.utils.periods.billing_period_at`. Templated.
    :param deferrable: Wait in the triggerer instead of a worker. Default: ``[operators]
        default_deferrable``.
    :param poke_interval: How often to check again once the close moment has passed but the API still
        shows the period open (or while the period cannot be placed yet). Before the close moment the
        sensor does not check at all. Default: one hour. The other ``BaseSensorOperator`` arguments
        (``mode``, ``timeout``, ``soft_fail``, ...) work as for any sensor.
    """

    template_fields: Sequence[str] = ("cloudflare_conn_id", "account_id", "target", "subscription_id")
    ui_color = "#f6821f"

    # The rendered, validated inputs (set by _read_inputs before any request).
    _target: pendulum.DateTime
    _account: str

    def __init__(
        self,
        *,
        cloudflare_conn_id: str = "cloudflare_default",
        account_id: str | None = None,
        target: Any = None,
        settle: timedelta = DEFAULT_SETTLE,
        subscription_id: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: timedelta | float = DEFAULT_POKE_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        if not isinstance(settle, timedelta) or settle < timedelta(0):
            raise CloudflareBillingInputError(
                f"settle={settle!r} must be a non-negative timedelta (how long after a period's end its "
                f"usage counts as final), e.g. timedelta(days=2); task {self.task_id!r}."
            )
        self.cloudflare_conn_id = cloudflare_conn_id
        self.account_id = account_id
        self.target = target
        self.settle = settle
        self.subscription_id = subscription_id
        self.deferrable = deferrable
        # Poke mode keeps one instance across pokes: the period is placed once, then only confirmed.
        self._period: dict[str, Any] | None = None
        self._wake_at: pendulum.DateTime | None = None

    @cached_property
    def hook(self) -> CloudflareBillingHook:
        from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook

        return CloudflareBillingHook(self.cloudflare_conn_id)

    # -- Airflow entry points ---------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        if self.deferrable:
            self._read_inputs(context)
            return self._finish_or_defer(None, waiting_since=_utcnow())
        started = _utcnow()
        try:
            return super().execute(context)
        except AirflowRescheduleException as reschedule:
            # Before the close moment there is nothing to ask the API: come back then, not every
            # poke_interval (each comeback costs an info call).
            if self._wake_at is None or self._wake_at <= reschedule.reschedule_date:
                raise
            first = context["ti"].get_first_reschedule_date(context)
            deadline = pendulum.instance(first or started).add(seconds=self.timeout)
            raise AirflowRescheduleException(min(self._wake_at, deadline)) from None

    def poke(self, context: Context) -> bool | PokeReturnValue:
        if self._period is None:
            self._read_inputs(context)
        self._period, self._wake_at = self._check(self._period)
        if self._wake_at is None:
            return PokeReturnValue(is_done=True, xcom_value=self._period)
        return False

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger woke us: confirm with the API, finish or defer again."""
        self._read_inputs(context)
        return self._finish_or_defer(event["period"], waiting_since=parse_instant(event["waiting_since"]))

    # -- the wait ---------------------------------------------------------------------------------

    def _read_inputs(self, context: Context) -> None:
        """Validate the rendered inputs; raises before any request."""
        self._target = self._resolve_target(context)
        if isinstance(self.subscription_id, str) and not self.subscription_id.strip():
            raise CloudflareBillingInputError(
                f"subscription_id={self.subscription_id!r} of task {self.task_id!r} is blank (did a template "
                "render to nothing?). Pass a subscription id, or leave it unset (None) for the earliest-anchored "
                "subscription active at the target."
            )
        if self.account_id is not None:
            self._account = validate_account_id(self.account_id, f"the account_id of task {self.task_id!r}")
        else:
            self._account = self.hook.account_id

    def _resolve_target(self, context: Context) -> pendulum.DateTime:
        if self.target is not None:
            return parse_instant(self.target, "target")
        for key in ("data_interval_start", "logical_date"):
            value = context.get(key)
            if value is not None:
                return parse_instant(value, key)
        run_after = getattr(context.get("dag_run"), "run_after", None)
        if run_after is not None:
            return parse_instant(run_after, "run_after")
        raise CloudflareBillingInputError(
            f"Task {self.task_id!r} has no target and its run has no data interval, logical date or "
            "run_after: pass target=... (a date inside the billing period to wait for)."
        )

    def _finish_or_defer(self, period: dict[str, Any] | None, waiting_since: pendulum.DateTime) -> Any:
        period, wake_at = self._check(period)
        if wake_at is None:
            return period
        now = _utcnow()
        deadline = waiting_since.add(seconds=self.timeout)
        if now >= deadline:
            message = (
                f"Sensor timed out: waited since {_iso(waiting_since)}, more than timeout={self.timeout:g}s, "
                f"for the {self._describe(period)} to close (next check was due at {_iso(wake_at)}). Raise "
                "timeout to cover the wait: a whole period is up to 31 days plus settle."
            )
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        # Imported here, not at the top: the trigger module pulls in airflow.triggers.base, which a DAG file
        # that only builds the sensor never needs (DAG-parse cost).
        from airflow_provider_cfbilling.triggers.billing import CloudflareBillingPeriodTrigger

        self.defer(
            trigger=CloudflareBillingPeriodTrigger(
                moment=min(wake_at, deadline), period=period, waiting_since=_iso(waiting_since)
            ),
            method_name="execute_complete",
            # A plain timedelta: the task runner sends it to the supervisor, which knows no pendulum types.
            timeout=timedelta(seconds=(deadline - now).total_seconds()),
        )

    def _check(self, period: dict[str, Any] | None) -> tuple[dict[str, Any] | None, pendulum.DateTime | None]:
        """Return the period and None once it has closed, else the period and when to look again."""
        now = _utcnow()
        if period is None:
            period = self._find_period()
            if period is None:
                return None, now.add(seconds=self.poke_interval)
        close_at = parse_instant(period["end"]).add(seconds=self.settle.total_seconds())
        if now < close_at:
            self.log.info(
                "The %s closes at %s (end + settle %s): waiting until then, with no API call meanwhile.",
                self._describe(period),
                _iso(close_at),
                self.settle,
            )
            return period, close_at
        if self._api_confirms(period):
            self.log.info("The %s has closed.", self._describe(period))
            return period, None
        return period, now.add(seconds=self.poke_interval)

    def _find_period(self) -> dict[str, Any] | None:
        """Place the target in its billing period: from the info endpoint, else from the probe."""
        try:
            period = self.hook.get_billing_period(self._account, at=self._target, subscription_id=self.subscription_id)
        except CloudflareRouteNotFoundError as exc:
            reason = f"the info endpoint is unavailable (HTTP {exc.status} on {exc.path})"
        except CloudflareNoBillingCycleError as exc:
            reason = str(exc).rstrip(".")  # the warning goes on after it
        else:
            assert period.anchor is not None
            self.log.info(
                "Billing cycle of account %s: subscription %s, anchor %s.",
                self._account,
                period.subscription_id,
                _iso(period.anchor),
            )
            return self._as_xcom(period, period.anchor, period.subscription_id)
        return self._period_from_probe(reason)

    def _period_from_probe(self, reason: str) -> dict[str, Any] | None:
        self.log.warning(
            "Billing info of account %s not usable: %s. Falling back to the current-period probe (the usage "
            "call without a window): its BillingPeriodStart serves as the billing-cycle anchor.",
            self._account,
            reason,
        )
        rows = self.hook.get_paygo_usage(self._account)
        starts = self._period_starts(rows, self.subscription_id)
        if not starts:
            self.log.warning(
                "The probe shows no usage in account %s's current period, so its start is unknown: "
                "looking again in %gs.",
                self._account,
                self.poke_interval,
            )
            return None
        anchor = max(starts)
        if start_day_is_ambiguous(anchor):
            self.log.warning(
                "The current period of account %s starts on %s, the last day of a short month: the "
                "anchor may be a later day (29th to 31st), and periods after longer months may then start "
                "up to 3 days late. Make the info endpoint readable for exact periods.",
                self._account,
                anchor.to_date_string(),
            )
        return self._as_xcom(period_containing(anchor, self._target), anchor, self.subscription_id, "probe")

    def _api_confirms(self, period: dict[str, Any]) -> bool:
        """One usage call: has the API's current billing period moved past the period's end?"""
        rows = self.hook.get_paygo_usage(period["account_id"])
        starts = self._period_starts(rows, None)
        end = parse_instant(period["end"])
        if not starts:
            self.log.info(
                "End + settle has passed and the API shows no usage in account %s's current period: "
                "nothing contradicts the close.",
                period["account_id"],
            )
            return True
        current = max(starts)
        if current >= end:
            self.log.info("The API's current billing period starts %s: the period is over.", _iso(current))
            return True
        self.log.info(
            "End + settle has passed on the clock, but the API's current billing period still starts %s "
            "(before %s): looking again in %gs.",
            _iso(current),
            period["end"],
            self.poke_interval,
        )
        return False

    # -- helpers ----------------------------------------------------------------------------------

    def _period_starts(self, rows: list[dict[str, Any]], subscription_id: str | None) -> list[pendulum.DateTime]:
        """The BillingPeriodStart values in a usage answer (of one subscription when its rows say so).

        A row without one is the API's fault: skipping it could read "no usage" and close a period that the
        API still shows open.
        """
        return [
            self._instant(row.get("BillingPeriodStart"), "BillingPeriodStart")
            for row in rows
            if subscription_id is None or row.get("SubscriptionId") in (None, subscription_id)
        ]

    def _instant(self, value: Any, field: str) -> pendulum.DateTime:
        """An instant sent by the API; a value that is not one is the API's fault, not the user's."""
        if value is None:
            raise CloudflareResponseError(
                f"Cloudflare sent a record without {field} (missing or null) for account {self._account}: the "
                "billing period cannot be placed, and reading it as 'no usage' could close a period that is "
                "still open. Retry later; report it if it persists."
            )
        try:
            return parse_instant(value, field)
        except CloudflareBillingInputError as exc:
            raise CloudflareResponseError(
                f"Cloudflare sent {field}={value!r} for account {self._account}, which is not an ISO 8601 "
                "instant: the billing period cannot be placed. Retry later; report it if it persists."
            ) from exc

    def _as_xcom(
        self,
        period: BillingPeriod,
        anchor: pendulum.DateTime,
        subscription_id: str | None,
        source: str = "info",
    ) -> dict[str, Any]:
        return {
            "account_id": self._account,
            "subscription_id": subscription_id,
            "anchor": _iso(anchor),
            "start": _iso(period.start),
            "end": _iso(period.end),
            "source": source,
        }

    def _describe(self, period: dict[str, Any] | None) -> str:
        if period is None:
            return f"billing period containing {_iso(self._target)} (account {self._account}, not placed yet)"
        return f"billing period {period['start']} to {period['end']} of account {period['account_id']}"
