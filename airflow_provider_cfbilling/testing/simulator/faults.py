"""The fault catalogue: what a fault is, which requests it matches, and how it reshapes rows.

The package docstring documents every kind and its parameters; this module validates them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from airflow_provider_cfbilling.testing.simulator.rendering import TIMESTAMP_STYLES, RowShape

BETA_ROUTE = "billing/usage/paygo"
USAGE_ROUTES = frozenset({BETA_ROUTE, "billable-usage", "paygo-usage"})
INFO_ROUTES = frozenset({"billable-usage/info", "paygo-usage-info"})
ACCOUNTS_ROUTE = "accounts"
CANNED_ROUTES = USAGE_ROUTES | INFO_ROUTES | {ACCOUNTS_ROUTE}

ANSWER_FAULTS = ("rate_limit", "block", "server_error", "success_false", "reset")
SEND_FAULTS = ("slow", "truncated")
RESULT_FAULTS = (
    "null_result",
    "wrong_type_result",
    "not_covered",
    "envelope_variant",
    "timestamp_style",
    "canned_result",
)
ROW_FAULTS = (
    "missing_column",
    "null_column",
    "numbers_as_strings",
    "extra_columns",
    "long_decimals",
    "huge_integer",
    "cost_mismatch",
    "restated",
)
ROUTE_FAULTS = ("path_moved", "info_unavailable")
FAULT_KINDS: frozenset[str] = frozenset(ANSWER_FAULTS + SEND_FAULTS + RESULT_FAULTS + ROW_FAULTS + ROUTE_FAULTS)

_DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class Fault:
    """One registered fault. ``times`` is the number of uses left (None: unlimited)."""

    kind: str
    account_id: str | None = None
    path: str | None = None
    times: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "account_id": self.account_id, "path": self.path, "times": self.times, **self.params}

    def moved_routes(self) -> frozenset[str]:
        routes = set(self.params.get("routes") or ())
        if not routes:
            routes.add(BETA_ROUTE)
        if self.params.get("also_interim"):
            routes.update({"paygo-usage", "paygo-usage-info"})
        if self.params.get("also_current"):
            routes.update({"billable-usage", "billable-usage/info"})
        return frozenset(routes)

    def applies(self, route: str, account_id: str | None, path: str) -> bool:
        if self.account_id is not None and self.account_id != account_id:
            return False
        if self.path is not None and self.path not in path:
            return False
        kind = self.kind
        if kind == "path_moved":
            return route in self.moved_routes()
        if kind in ("info_unavailable", "not_covered"):
            return route in INFO_ROUTES
        if kind in ROW_FAULTS:
            return route in USAGE_ROUTES
        if kind in ("null_result", "wrong_type_result", "timestamp_style"):
            return route in USAGE_ROUTES or route in INFO_ROUTES
        if kind == "canned_result":
            return route in self.params["routes"]
        return True


def _check_messages(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not all(
        isinstance(m, dict) and isinstance(m.get("message"), str) and isinstance(m.get("code", 0), int) for m in value
    ):
        raise ValueError(f"envelope_variant {name!r} must be null or a list of {{'code': int, 'message': str}}")


def validate_fault(kind: str, times: int | None, params: dict[str, Any]) -> None:
    """Raise ValueError, saying what is wrong, for an unknown kind or bad parameters."""
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ValueError("times must be None or a positive integer")
    if kind in ("missing_column", "null_column") and not isinstance(params.get("column"), str):
        raise ValueError(f"fault {kind!r} needs a 'column' parameter")
    if kind == "server_error":
        status = params.get("status", 502)
        if not isinstance(status, int) or not 500 <= status <= 599:
            raise ValueError("server_error status must be a 5xx integer")
    if kind == "path_moved" and params.get("status", 404) not in (400, 404):
        raise ValueError("path_moved status must be 404 or 400")
    if kind == "extra_columns" and not isinstance(params.get("columns", {}), dict):
        raise ValueError("extra_columns 'columns' must be a dict")
    if kind == "envelope_variant":
        _check_messages("errors", params.get("errors"))
        _check_messages("messages", params.get("messages"))
        if not isinstance(params.get("result_info", {}), dict):
            raise ValueError("envelope_variant 'result_info' must be a dict")
    if kind == "canned_result":
        routes = params.get("routes")
        if not isinstance(routes, list) or not routes or not set(routes) <= CANNED_ROUTES:
            raise ValueError(f"canned_result 'routes' must be a non-empty list of {sorted(CANNED_ROUTES)}")
        if "result" not in params:
            raise ValueError("canned_result needs 'result' (any JSON value: the envelope's result)")
    if kind == "timestamp_style" and params.get("style") not in TIMESTAMP_STYLES[1:]:
        raise ValueError(f"timestamp_style 'style' must be one of {list(TIMESTAMP_STYLES[1:])}")
    if kind == "long_decimals":
        digits = params.get("digits", 18)
        if isinstance(digits, bool) or not isinstance(digits, int) or not 16 <= digits <= 38:
            raise ValueError("long_decimals 'digits' must be an integer from 16 to 38")
    if kind == "cost_mismatch":
        if not isinstance(params.get("day"), str) or not _DAY_RE.fullmatch(params["day"]):
            raise ValueError("cost_mismatch needs 'day' (YYYY-MM-DD) and 'service' (a ServiceName)")
        if not isinstance(params.get("service"), str):
            raise ValueError("cost_mismatch needs 'service' (a ServiceName)")
        try:
            Decimal(str(params.get("delta", "0.01")))
        except InvalidOperation:
            raise ValueError("cost_mismatch 'delta' must be a decimal number") from None
    if kind == "restated":
        if not isinstance(params.get("day"), str) or not _DAY_RE.fullmatch(params["day"]):
            raise ValueError("restated needs 'day' (YYYY-MM-DD), 'service' (a ServiceName) and 'delta'")
        if not isinstance(params.get("service"), str):
            raise ValueError("restated needs 'service' (a ServiceName)")
        try:
            Decimal(str(params.get("delta", "1.5")))
        except InvalidOperation:
            raise ValueError("restated 'delta' must be a decimal number") from None
    for name in ("delay", "body_delay", "retry_after"):
        value = params.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"{name} must be a non-negative number")


def row_shape(faults: Sequence[Fault], columns: tuple[str, ...]) -> RowShape:
    """The shape of a usage route's records (its era's ``columns``) with the row faults applied."""
    missing: set[str] = set()
    nulls: set[str] = set()
    extra: list[tuple[str, str]] = []
    changes: dict[str, Any] = {}
    for fault in faults:
        params = fault.params
        if fault.kind == "missing_column":
            missing.add(params["column"])
        elif fault.kind == "null_column":
            nulls.add(params["column"])
        elif fault.kind == "numbers_as_strings":
            changes["numbers_as_strings"] = True
        elif fault.kind == "extra_columns":
            added = params.get("columns") or {"x_FutureColumn": "future", "x_FutureAmount": 1.5}
            extra.extend((str(k), json.dumps(v)) for k, v in added.items())
        elif fault.kind == "timestamp_style":
            changes["timestamp_style"] = params["style"]
        elif fault.kind == "long_decimals":
            changes["long_digits"] = int(params.get("digits", 18))
        elif fault.kind == "huge_integer":
            changes["huge_integer"] = True
        elif fault.kind == "cost_mismatch":
            changes["mismatch"] = (params["day"], params["service"], str(params.get("delta", "0.01")))
        elif fault.kind == "restated":
            changes["restated"] = (params["day"], params["service"], str(params.get("delta", "1.5")))
    return RowShape(columns, frozenset(missing), frozenset(nulls), extra=tuple(extra), **changes)
