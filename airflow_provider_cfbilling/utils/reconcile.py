"""Exact arithmetic over usage records: per-currency and per-service totals, and reconciliation.

Pure functions on the API's records (dicts keyed by FOCUS column names); all sums are exact decimals
(see :func:`airflow_provider_cfbilling.utils.formats.to_decimal`) rendered as plain decimal strings, so
the results are JSON-serialisable and fit an XCom or an asset event's extra.

Reconciliation (docs/DESIGN.md): rows are grouped by (BillingPeriodStart, BillingCurrency, ServiceName,
ZoneId when present) and sorted by ChargePeriodStart. Within a group, each row's
``CumulatedContractedCost`` minus the previous row's must equal its ``ContractedCost`` exactly. The
running total starts at 0 when the group's first row is the billing period's first day, or when the
caller says the rows are complete from a point at or before the period's start; otherwise (rows fetched
from mid-period) the first row only anchors the running total.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from airflow_provider_cfbilling.utils.formats import to_decimal, to_utc_timestamp

# Mismatches listed in full; beyond this only the count is kept (the result travels in XCom).
MAX_LISTED_MISMATCHES = 20
_SUM_PRECISION = 100  # digits: far beyond any cost, so sums are never rounded
_SUM = decimal.Context(prec=_SUM_PRECISION)
_ZERO = Decimal(0)
Row = tuple[Any, Any, Any]  # (ChargePeriodStart, ContractedCost, CumulatedContractedCost) as sent


def _plain(number: Decimal) -> str:
    """A decimal as canonical plain text: no exponent, no trailing zeros (``0.00000125``, ``9.99``, ``10``)."""
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def cost_totals(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum ``ContractedCost`` per currency and per (currency, service); rows with a null cost are skipped.

    :return: ``{"by_currency": {"USD": "12.5"}, "by_service": {"USD": {"Workers Standard": "10.25"}}}``,
        keys sorted.
    """
    totals = CostTotals()
    for record in records:
        totals.add(record)
    return totals.as_dict()


class CostTotals:
    """Running exact sums of ``ContractedCost`` per currency and per (currency, service), fed one record at a time."""

    def __init__(self) -> None:
        self._by_service: dict[tuple[str, str], Decimal] = {}

    def add(self, record: Mapping[str, Any]) -> None:
        sent = record.get("ContractedCost")
        cost = sent if sent.__class__ is Decimal else to_decimal(sent, "ContractedCost")
        if cost is None:
            return
        key = (str(record.get("BillingCurrency")), str(record.get("ServiceName")))
        # An explicit context, not localcontext(): the caller's code runs between two records.
        self._by_service[key] = _SUM.add(self._by_service.get(key, _ZERO), cost)

    def as_dict(self) -> dict[str, Any]:
        """``{"by_currency": {...}, "by_service": {...}}`` as :func:`cost_totals` returns it."""
        by_currency: dict[str, Decimal] = defaultdict(Decimal)
        by_service: dict[str, dict[str, Decimal]] = defaultdict(dict)
        for (currency, service), total in self._by_service.items():
            by_currency[currency] = _SUM.add(by_currency[currency], total)
            by_service[currency][service] = total
        return {
            "by_currency": {c: _plain(by_currency[c]) for c in sorted(by_currency)},
            "by_service": {
                c: {s: _plain(services[s]) for s in sorted(services)} for c, services in sorted(by_service.items())
            },
        }


def reconciliation_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """The group a row is reconciled in: period, currency, service, and zone when the row has one."""
    key: tuple[Any, ...] = (
        record.get("BillingPeriodStart"),
        record.get("BillingCurrency"),
        record.get("ServiceName"),
    )
    return (*key, record["ZoneId"]) if record.get("ZoneId") is not None else key


def reconcile(records: Iterable[Mapping[str, Any]], complete_from: dt.datetime | None = None) -> dict[str, Any]:
    """Check that daily ``ContractedCost`` agrees with the movement of ``CumulatedContractedCost``.

    :param records: the API's usage records
    :param complete_from: an aware instant from which the records are known to be complete (the start of
        the window that was fetched). A billing period starting at or after it is checked from zero on its
        first row; None means "unknown": only a row on the period's first day starts from zero.
    :return: ``{"ok", "rows_checked", "groups", "mismatch_count", "mismatches": [...]}``; each mismatch
        names its group, day and figures as decimal strings (at most :data:`MAX_LISTED_MISMATCHES`).
    """
    # Only the three figures a check needs are kept per row, not the row: records may be spooled on disk
    # and far larger than memory as dicts.
    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for record in records:
        groups[reconciliation_key(record)].append(
            (record.get("ChargePeriodStart"), record.get("ContractedCost"), record.get("CumulatedContractedCost"))
        )
    return check_groups(groups, complete_from)


def check_groups(groups: Mapping[tuple[Any, ...], list[Row]], complete_from: dt.datetime | None) -> dict[str, Any]:
    """:func:`reconcile` on rows already grouped by :func:`reconciliation_key` (what a single pass gathers).

    :param groups: per key, each row's (ChargePeriodStart, ContractedCost, CumulatedContractedCost) as sent
    :param complete_from: as for :func:`reconcile`
    """
    mismatches: list[dict[str, Any]] = []
    checked = 0
    with decimal.localcontext() as context:
        context.prec = _SUM_PRECISION
        for key in sorted(groups, key=lambda k: tuple("" if v is None else str(v) for v in k)):
            rows = sorted(groups[key], key=lambda r: str(r[0]))
            period_start = to_utc_timestamp(key[0], "BillingPeriodStart")
            previous: Decimal | None = None
            for index, (charge_start, raw_cost, raw_cumulated) in enumerate(rows):
                cost = to_decimal(raw_cost, "ContractedCost")
                cumulated = to_decimal(raw_cumulated, "CumulatedContractedCost")
                if index == 0 and _starts_from_zero(charge_start, period_start, complete_from):
                    previous = Decimal(0)
                if cost is None or cumulated is None:
                    mismatches.append(_mismatch(key, charge_start, cost, cumulated, previous, "null cost value"))
                    previous = None  # the chain is broken: the next row anchors again
                    continue
                if previous is not None:
                    checked += 1
                    if cumulated - previous != cost:
                        mismatches.append(_mismatch(key, charge_start, cost, cumulated, previous, None))
                previous = cumulated
    return {
        "ok": not mismatches,
        "rows_checked": checked,
        "groups": len(groups),
        "mismatch_count": len(mismatches),
        "mismatches": mismatches[:MAX_LISTED_MISMATCHES],
    }


class RunningReconciliation:
    """:func:`reconcile` fed one record at a time, keeping per group its running figures instead of its rows.

    The API sends each group's rows in ChargePeriodStart order; then the result is :func:`reconcile`'s, in
    memory that grows with the groups (services x zones x periods), not with the rows. The first row that
    comes out of order sets :attr:`in_order` to False: the caller then reconciles the records again with
    :func:`reconcile`, which sorts them.

    :param complete_from: as for :func:`reconcile`
    :param complete_periods: the records are complete from the start of every billing period they hold (the
        current period, which the API answers from its first day): every group is checked from zero.
    """

    def __init__(self, complete_from: dt.datetime | None = None, *, complete_periods: bool = False) -> None:
        self._complete_from = complete_from
        self._complete_periods = complete_periods
        self._groups: dict[tuple[Any, ...], list[Any]] = {}  # key -> [previous cumulated, last ChargePeriodStart]
        self._period_starts: dict[Any, dt.datetime | None] = {}
        self._mismatches: list[tuple[tuple[str, ...], str, int, dict[str, Any]]] = []
        self.checked = 0
        self.in_order = True

    def add(self, record: Mapping[str, Any]) -> None:
        key = reconciliation_key(record)
        charge_start = record.get("ChargePeriodStart")
        order = str(charge_start)
        state = self._groups.get(key)
        if state is None:
            period_start = self._period_start(key[0])
            if self._complete_periods:
                from_zero = period_start is not None
            else:
                from_zero = _starts_from_zero(charge_start, period_start, self._complete_from)
            state = self._groups[key] = [_ZERO if from_zero else None, order]
        elif order < state[1]:
            self.in_order = False
            return
        else:
            state[1] = order
        sent_cost, sent_cumulated = record.get("ContractedCost"), record.get("CumulatedContractedCost")
        cost = sent_cost if sent_cost.__class__ is Decimal else to_decimal(sent_cost, "ContractedCost")
        cumulated = (
            sent_cumulated
            if sent_cumulated.__class__ is Decimal
            else to_decimal(sent_cumulated, "CumulatedContractedCost")
        )
        previous = state[0]
        if cost is None or cumulated is None:
            self._note(key, charge_start, _mismatch(key, charge_start, cost, cumulated, previous, "null cost value"))
            state[0] = None  # the chain is broken: the next row anchors again
            return
        if previous is not None:
            self.checked += 1
            if _SUM.subtract(cumulated, previous) != cost:
                self._note(key, charge_start, _mismatch(key, charge_start, cost, cumulated, previous, None))
        state[0] = cumulated

    def _period_start(self, text: Any) -> dt.datetime | None:
        if text not in self._period_starts:
            self._period_starts[text] = to_utc_timestamp(text, "BillingPeriodStart")
        return self._period_starts[text]

    def _note(self, key: tuple[Any, ...], charge_start: Any, entry: dict[str, Any]) -> None:
        # Listed in reconcile()'s order: groups by key, rows by ChargePeriodStart, ties as they came.
        group_order = tuple("" if v is None else str(v) for v in key)
        self._mismatches.append((group_order, str(charge_start), len(self._mismatches), entry))

    def result(self) -> dict[str, Any]:
        """:func:`reconcile`'s result (only meaningful while :attr:`in_order`)."""
        mismatches = [entry for *_, entry in sorted(self._mismatches, key=lambda m: m[:3])]
        return {
            "ok": not mismatches,
            "rows_checked": self.checked,
            "groups": len(self._groups),
            "mismatch_count": len(mismatches),
            "mismatches": mismatches[:MAX_LISTED_MISMATCHES],
        }


def _starts_from_zero(charge_start: Any, period_start: dt.datetime | None, complete_from: dt.datetime | None) -> bool:
    if period_start is None:
        return False
    if complete_from is not None and complete_from <= period_start:
        return True
    return to_utc_timestamp(charge_start, "ChargePeriodStart") == period_start


def _mismatch(
    key: tuple[Any, ...],
    charge_start: Any,
    cost: Decimal | None,
    cumulated: Decimal | None,
    previous: Decimal | None,
    problem: str | None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "BillingPeriodStart": key[0],
        "BillingCurrency": key[1],
        "ServiceName": key[2],
    }
    if len(key) > 3:
        entry["ZoneId"] = key[3]
    entry["ChargePeriodStart"] = charge_start
    entry["ContractedCost"] = None if cost is None else _plain(cost)
    entry["CumulatedContractedCost"] = None if cumulated is None else _plain(cumulated)
    entry["previous_CumulatedContractedCost"] = None if previous is None else _plain(previous)
    if problem is None and cost is not None and cumulated is not None and previous is not None:
        movement = cumulated - previous
        entry["movement"] = _plain(movement)
        entry["difference"] = _plain(cost - movement)
    else:
        entry["problem"] = problem
    return entry
