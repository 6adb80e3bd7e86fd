"""Local simulator of the Cloudflare billable-usage API (standard library only).

The demo DAG, the tests and the benchmarks talk to it over real HTTP on a loopback address.
Production code never branches on it: it only ever sees a base URL. The module imports nothing
outside the standard library (no airflow, pendulum or requests) so it starts fast and can run
as a separate process.

Quick start
-----------
>>> from datetime import date
>>> with CloudflareSimulator(today=date(2025, 3, 20)) as sim:  # doctest: +SKIP
...     url = sim.url  # "http://127.0.0.1:PORT/client/v4"
...     # GET {url}/accounts/{STANDARD_ACCOUNT}/billable-usage
...     #     with "Authorization: Bearer " + SIM_TOKEN

or from a shell: ``cfbilling-simulator --port 8787 --today 2025-03-20`` prints the base URL on
one line of stdout and serves until SIGINT/SIGTERM (``--no-window-rules``, ``--large-zones N``,
``--rate-limit MAX/WINDOW/BLOCK``, ``--verbose``; only loopback hosts are accepted).

Credentials
-----------
``SIM_TOKEN`` (API token with Billing Read on every account), ``SIM_TOKEN_NO_BILLING`` (valid token
without Billing Read: 403/9109), legacy ``SIM_EMAIL`` + ``SIM_GLOBAL_KEY`` (X-Auth-Email/X-Auth-Key).
``sim.add_token(token, billing_read=True)`` registers more. No credential ever reaches the request
log or the simulator's own output: header values are never recorded, and any credential that shows
up in a path or query string is replaced by ``[REDACTED]``.

Accounts (see ``ACCOUNTS``)
---------------------------
========================  ===========================================================================
``STANDARD_ACCOUNT``      anchor 2025-01-14, 4 services, exactly the brief's 11 columns
``ANCHOR31_ACCOUNT``      anchor 2024-01-31 (periods start Feb 29/28, Mar 31, Apr 30, ...), 3 services
``FOCUS_ACCOUNT``         the 11 columns then the FOCUS 1.3 columns (``FOCUS_EXTRA_COLUMNS``, some
                          null); two subscriptions (anchors 2025-06-01 and 2025-09-20); the usage
                          belongs to the first one (its periods, its anchor day for the window rule)
``EMPTY_ACCOUNT``         covered, anchor 2025-03-05, never any usage (always ``[]``)
``LARGE_ACCOUNT``         anchor 2025-01-01, one row per service per day per zone (+ ``ZoneId``,
                          ``ZoneName``); ``large_zones`` zones (``large_zones_for(rows)`` helps size it)
========================  ===========================================================================

API served under ``/client/v4``
-------------------------------
* Usage, the same data on three paths: ``GET /accounts/{id}/billing/usage/paygo`` (the brief's),
  ``/accounts/{id}/billable-usage`` (current) and ``/accounts/{id}/paygo-usage`` (interim).
  Query ``from``/``to`` (``YYYY-MM-DD``, both or neither, ``to`` INCLUSIVE, capped at "today").
  Neither: the current billing period from its start up to today (exclusive). With window rules on
  (default) a ``from``/``to`` range containing no anchor day (day of month of the first
  subscription's anchor, clamped to short months) answers ``[]``. One row per service (and zone)
  per UTC day before "today", ``ChargePeriodEnd`` exclusive, sorted by ChargePeriodStart,
  ServiceName, ZoneId. Costs are exact decimals (<= 6 places); Cumulated* columns are running
  sums within the billing period, restarting at each period start.
* Info: ``GET /accounts/{id}/billable-usage/info`` and ``/accounts/{id}/paygo-usage-info``:
  ``{"covered": true, "subscriptions": [{"id", "billing_cycle_anchor_timestamp", "start_timestamp",
  "end_timestamp": null}]}``.
* Errors (Cloudflare envelope, ``result: null``): unknown path 404/7000; known path with a malformed
  account id 404/7003; no credentials 400/9106; malformed Authorization header 400/6003; unknown
  token or key 403/10000; no Billing Read or an account the simulator does not know 403/9109; bad
  ``from``/``to`` 400/1183; rate limited 429/971 with ``Retry-After``. Every API answer carries
  ``Ratelimit: "default";r=<left>;t=<secs>`` and ``Ratelimit-Policy: "default";q=<max>;w=<secs>``.

Control API (no auth, never in the request log; also reachable under ``/client/v4/__sim/...``)
-----------------------------------------------------------------------------------------------
==========================  ============================================================================
``GET  /__sim/clock``       ``{"today": "YYYY-MM-DD"}``
``POST /__sim/clock``       body ``{"today": "YYYY-MM-DD"}``; same as ``sim.set_today(date)``
``GET  /__sim/faults``      the active faults
``POST /__sim/faults``      body ``{"kind": ..., "account_id": ..., "times": ..., "path": ..., **params}``;
                            same as ``sim.add_fault(kind, ...)``
``DELETE /__sim/faults``    ``sim.clear_faults()``
``GET  /__sim/requests``    the request log (a JSON list, see ``sim.requests``)
``POST /__sim/reset``       ``sim.reset()``
``GET  /__sim/config``      today, large_zones, enforce_window_rules, rate_limit
``POST /__sim/config``      body with any of ``{"large_zones": N, "enforce_window_rules": bool,
                            "rate_limit": [max, window_s, block_s] | null}``
==========================  ============================================================================

Python API
----------
``CloudflareSimulator(today=None, *, host="127.0.0.1", port=0, enforce_window_rules=True,
large_zones=10, rate_limit=None, quiet=True)``; ``.start()`` (returns self) / ``.stop()`` / context
manager; ``.url`` (ends in ``/client/v4``), ``.base_url`` (server root), ``.port``, ``.today``.
``set_today(date)``, ``set_window_rules(bool)``, ``set_large_zones(n)``, ``set_rate_limit(policy)``,
``add_token(token, billing_read=True)``, ``add_fault(kind, *, account_id=None, times=None, path=None,
**params)``, ``clear_faults()``, ``faults``, ``requests`` (a copy of the log: method, path, query,
account_id, status, auth, time, fault), ``request_count(path_contains=None, account_id=None,
status=None)``, ``config``, ``reset()`` (constructor's clock, window rules, zones, rate limit; empty
log and faults; added tokens stay), ``clear_cache()`` (rendered bodies are cached per account,
window, zone count and fault shape, so repeated LARGE answers cost only the transfer).

``rate_limit=(max_requests, window_seconds, block_seconds)`` enforces a fixed window per credential:
the call over the limit and every call of that credential for ``block_seconds`` get 429/971 with
``Retry-After`` = the block time left; other credentials are unaffected. Without it the headers
report a nominal 1,200 per 300 s and nothing is enforced.

Faults (``kind``: params)
-------------------------
``times=None`` applies a fault to every matching request, ``times=N`` to the next N; ``account_id``
and ``path`` (a substring of the request path) narrow it. Faults act on the usage and info endpoints
only. Several faults may match one request: the first "answer-replacing" one (``rate_limit``,
``block``, ``server_error``, ``success_false``, ``reset``) in the order added is applied, and every
matching modifier that takes effect is applied too; only faults that took effect use up ``times``.

* ``rate_limit``: 429/971 with ``Retry-After`` (``retry_after`` seconds, default 1;
  ``retry_after_http_date=True`` sends an HTTP date). ``block``: the same with ``retry_after=300``.
* ``server_error``: an HTML Cloudflare error page, ``status`` 500/502/503/504 (default 502).
* ``success_false``: 200 with ``success: false``, error ``code`` (default 1000), ``message``.
* ``reset``: the connection is reset without an answer.
* ``slow``: ``delay`` seconds before answering and/or ``body_delay`` seconds of stall mid-body.
* ``truncated``: 200 with the full Content-Length, half the body, then the connection closes.
* ``null_result`` / ``wrong_type_result``: ``result`` null / ``{"data": [rows]}`` (usage) or
  ``[info]`` (info).
* ``missing_column`` / ``null_column`` (``column``), ``numbers_as_strings``, ``extra_columns``
  (``columns``: dict name -> value, default ``x_FutureColumn``/``x_FutureAmount``): row changes.
* ``path_moved``: the brief's path answers 404 with errors 7003 and 7000 (``code`` to send just one);
  ``also_interim=True`` moves ``/paygo-usage`` and ``/paygo-usage-info`` too, ``also_current=True``
  moves ``/billable-usage`` and ``/billable-usage/info``; ``routes`` lists route names explicitly.
* ``info_unavailable``: both info paths answer 404/7000. ``not_covered``: info says
  ``covered: false, subscriptions: []``.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import hashlib
import ipaddress
import json
import math
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "ACCOUNTS",
    "ANCHOR31_ACCOUNT",
    "BRIEF_COLUMNS",
    "EMPTY_ACCOUNT",
    "FAULT_KINDS",
    "FOCUS_ACCOUNT",
    "FOCUS_EXTRA_COLUMNS",
    "LARGE_ACCOUNT",
    "SIM_EMAIL",
    "SIM_GLOBAL_KEY",
    "SIM_TOKEN",
    "SIM_TOKEN_NO_BILLING",
    "STANDARD_ACCOUNT",
    "ZONE_COLUMNS",
    "CloudflareSimulator",
    "Fault",
    "SimAccount",
    "SimService",
    "SimSubscription",
    "billing_period",
    "billing_period_start",
    "large_zones_for",
    "main",
]

API_PREFIX = "/client/v4"

SIM_TOKEN = "cfsim-billing-read-token"
SIM_TOKEN_NO_BILLING = "cfsim-no-billing-token"
SIM_EMAIL = "finops@example.com"
SIM_GLOBAL_KEY = "cfsim-global-api-key"

STANDARD_ACCOUNT = "023e105f4ecef8ad9ca31a8372d0c353"
ANCHOR31_ACCOUNT = "31e5a2c0d4b34f1e9a7b6c5d4e3f2a31"
FOCUS_ACCOUNT = "f0c513a9b8c7d6e5f4a3b2c1d0e9f813"
EMPTY_ACCOUNT = "e3b0c44298fc1c149afbf4c8996fb924"
LARGE_ACCOUNT = "b16b16b16b16b16b16b16b16b16b16b1"

#: The brief's 11 fields, in the brief's order (every account's rows start with these).
BRIEF_COLUMNS: tuple[str, ...] = (
    "BillingCurrency",
    "BillingPeriodStart",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "CumulatedContractedCost",
    "CumulatedPricingQuantity",
    "PricingQuantity",
    "ServiceName",
)
#: Newer FOCUS 1.3 columns, after the 11 on FOCUS_ACCOUNT (reference order; several are null).
FOCUS_EXTRA_COLUMNS: tuple[str, ...] = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "EffectiveCost",
    "HostProviderName",
    "InvoiceIssuerName",
    "ListCost",
    "PricingUnit",
    "ServiceProviderName",
    "ServiceFamilyName",
    "SubscriptionId",
    "ZoneId",
    "ZoneName",
)
#: Columns LARGE_ACCOUNT adds after the 11.
ZONE_COLUMNS: tuple[str, ...] = ("ZoneId", "ZoneName")

_NUMERIC_COLUMNS = frozenset(
    {
        "ConsumedQuantity",
        "ContractedCost",
        "CumulatedContractedCost",
        "CumulatedPricingQuantity",
        "PricingQuantity",
        "BilledCost",
        "EffectiveCost",
        "ListCost",
    }
)

_ACCOUNT_ID_RE = re.compile(r"[0-9a-f]{32}")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ROUTE_RE = re.compile(
    r"/client/v4/accounts/([^/]+)/(billing/usage/paygo|billable-usage/info|billable-usage|paygo-usage-info|paygo-usage)"
)
_USAGE_ROUTES = frozenset({"billing/usage/paygo", "billable-usage", "paygo-usage"})
_INFO_ROUTES = frozenset({"billable-usage/info", "paygo-usage-info"})

# Nominal Cloudflare limits (1,200 requests per 5 minutes) reported when enforcement is off.
_NOMINAL_RATE_LIMIT = (1200, 300.0, 300.0)


# --------------------------------------------------------------------------------------------
# Accounts and services
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimService:
    """One billed service. Daily ConsumedQuantity is drawn from [daily_min, daily_max]."""

    name: str
    unit: str
    unit_price: Decimal
    daily_min: int
    daily_max: int
    #: Free allowance per day: PricingQuantity = max(0, ConsumedQuantity - included_daily).
    included_daily: int = 0
    #: FOCUS ServiceFamilyName (None -> JSON null).
    family: str | None = None


@dataclass(frozen=True)
class SimSubscription:
    id: str
    anchor: date

    @property
    def anchor_timestamp(self) -> str:
        return _timestamp(self.anchor)


@dataclass(frozen=True)
class SimAccount:
    """How the simulator fakes one account. ``anchor`` is the first (usage-bearing) subscription's."""

    account_id: str
    name: str
    subscriptions: tuple[SimSubscription, ...]
    services: tuple[SimService, ...]
    focus_columns: bool = False
    zone_breakdown: bool = False
    has_usage: bool = True

    @property
    def anchor(self) -> date:
        return self.subscriptions[0].anchor

    @property
    def service_names(self) -> tuple[str, ...]:
        return tuple(sorted(s.name for s in self.services))

    @property
    def columns(self) -> tuple[str, ...]:
        if self.focus_columns:
            return BRIEF_COLUMNS + FOCUS_EXTRA_COLUMNS
        if self.zone_breakdown:
            return BRIEF_COLUMNS + ZONE_COLUMNS
        return BRIEF_COLUMNS


def _subscription_id(account_id: str, index: int) -> str:
    return hashlib.blake2b(f"{account_id}|subscription|{index}".encode(), digest_size=16).hexdigest()


def _account(
    account_id: str,
    name: str,
    anchors: Sequence[date],
    services: Sequence[SimService],
    **flags: bool,
) -> SimAccount:
    subscriptions = tuple(SimSubscription(_subscription_id(account_id, i), a) for i, a in enumerate(anchors))
    return SimAccount(account_id, name, subscriptions, tuple(services), **flags)


# The brief's example prices Workers Standard at 150,000 requests -> 0.75 USD.
_WORKERS = SimService("Workers Standard", "Requests", Decimal("0.000005"), 50_000, 300_000, family="Compute")
_R2 = SimService("R2 Storage", "GB-months", Decimal("0.015"), 8, 60, included_daily=10, family="Storage")
_ARGO = SimService("Argo Smart Routing", "GB", Decimal("0.1"), 5, 400, family="Networking")
# Empty unit on purpose (the reference says ConsumedUnit may be empty); a 7-decimal price makes
# quantization to 6 places actually round.
_LOAD_BALANCING = SimService("Load Balancing", "", Decimal("0.0001333"), 1_000, 20_000)
_STREAM = SimService("Stream Minutes Delivered", "Minutes", Decimal("0.001"), 100, 9_000, family="Media")
_IMAGES = SimService("Images Transformations", "Transformations", Decimal("0.0005"), 0, 4_000)

ACCOUNTS: dict[str, SimAccount] = {
    a.account_id: a
    for a in (
        _account(
            STANDARD_ACCOUNT,
            "Standard PayGo account",
            [date(2025, 1, 14)],
            [_WORKERS, _R2, _ARGO, _LOAD_BALANCING],
        ),
        _account(ANCHOR31_ACCOUNT, "Anchor-31 account", [date(2024, 1, 31)], [_WORKERS, _R2, _STREAM]),
        _account(
            FOCUS_ACCOUNT,
            "FOCUS 1.3 account",
            [date(2025, 6, 1), date(2025, 9, 20)],
            [_WORKERS, _R2, _IMAGES],
            focus_columns=True,
        ),
        _account(EMPTY_ACCOUNT, "Empty account", [date(2025, 3, 5)], [_WORKERS], has_usage=False),
        _account(
            LARGE_ACCOUNT,
            "Large zone-level account",
            [date(2025, 1, 1)],
            [
                SimService("Argo Smart Routing", "GB", Decimal("0.1"), 0, 50, family="Networking"),
                SimService("Image Resizing", "Requests", Decimal("0.00002"), 10, 20_000, family="Media"),
                _LOAD_BALANCING,
                SimService("Workers Standard", "Requests", Decimal("0.000005"), 100, 50_000, family="Compute"),
            ],
            zone_breakdown=True,
        ),
    )
}


def large_zones_for(rows: int, days: int = 31) -> int:
    """Zones LARGE_ACCOUNT needs so that ``days`` days give at least ``rows`` rows."""
    per_zone = days * len(ACCOUNTS[LARGE_ACCOUNT].services)
    return max(1, math.ceil(rows / per_zone))


# --------------------------------------------------------------------------------------------
# Billing periods
# --------------------------------------------------------------------------------------------


def _timestamp(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _period_start_at(anchor: date, index: int) -> date:
    """Start of the index-th period after the anchor (may be negative), always computed from the
    anchor (never by chaining months) so a 31st anchor comes back after a short month."""
    months = anchor.year * 12 + anchor.month - 1 + index
    year, month0 = divmod(months, 12)
    last_day = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(anchor.day, last_day))


def _period_index(anchor: date, day: date) -> int:
    index = (day.year - anchor.year) * 12 + day.month - anchor.month
    if _period_start_at(anchor, index) > day:
        index -= 1
    return index


def billing_period_start(anchor: date, day: date) -> date:
    """Start of the monthly billing period (anchored on ``anchor``) that contains ``day``."""
    return _period_start_at(anchor, _period_index(anchor, day))


def billing_period(anchor: date, day: date) -> tuple[date, date]:
    """``(start, end)`` of the period containing ``day``; ``end`` is exclusive."""
    index = _period_index(anchor, day)
    return _period_start_at(anchor, index), _period_start_at(anchor, index + 1)


def _contains_anchor_day(anchor: date, first: date, last: date) -> bool:
    # The latest anchor day on or before `last` (periods extrapolated before the anchor too).
    return first <= last and billing_period_start(anchor, last) >= first


# --------------------------------------------------------------------------------------------
# Deterministic data and fast JSON rendering
# --------------------------------------------------------------------------------------------

_Q6 = Decimal("0.000001")
_MASK64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class _RowShape:
    """How faults reshape each row (hashable: part of the body cache key)."""

    missing: frozenset[str] = frozenset()
    nulls: frozenset[str] = frozenset()
    numbers_as_strings: bool = False
    extra: tuple[tuple[str, str], ...] = ()  # (column name, JSON literal)


_PLAIN_SHAPE = _RowShape()

# Per-row values are positional; everything else is constant within a (day, service) block.
_ROW_QUANTITY, _ROW_COST, _ROW_CUM_COST, _ROW_CUM_PQ, _ROW_PQ, _ROW_ZONE_ID, _ROW_ZONE_NAME = range(7)
_ROW_SOURCES = {
    "ConsumedQuantity": _ROW_QUANTITY,
    "ContractedCost": _ROW_COST,
    "CumulatedContractedCost": _ROW_CUM_COST,
    "CumulatedPricingQuantity": _ROW_CUM_PQ,
    "PricingQuantity": _ROW_PQ,
    "BilledCost": _ROW_COST,
    "EffectiveCost": _ROW_COST,
    "ListCost": _ROW_COST,
}


def _json_str(value: str | None) -> str:
    return json.dumps(value)


_RowRenderer = Callable[[int, str, str, int, int, str, str], str]
_ROW_FACTORIES: dict[tuple[str, _RowShape], Callable[[dict[str, str]], _RowRenderer]] = {}
_ROW_FACTORY_LOCK = threading.Lock()


def _row_factory(account: SimAccount, shape: _RowShape) -> Callable[[dict[str, str]], _RowRenderer]:
    """Compile ``factory(block) -> render(v0..v6) -> row JSON`` for an account and fault shape.

    The row layout is generated once as an f-string: (day, service) constants come from
    ``block`` (JSON literals) and the per-row values are the ``v`` arguments (see ``_ROW_*``).
    An f-string needs no template parsing per call, about 3x faster than ``str.format``, which
    matters for the LARGE account's million-row answers. Only column names and JSON literals
    built here reach the generated source, and they go in through ``repr``.
    """
    key = (account.account_id, shape)
    with _ROW_FACTORY_LOCK:
        factory = _ROW_FACTORIES.get(key)
    if factory is not None:
        return factory

    def constant(text: str) -> str:  # literal text inside the f-string
        return text.replace("{", "{{").replace("}", "}}")

    block_keys: list[str] = []
    members = []
    for name in account.columns:
        if name in shape.missing:
            continue
        if name in shape.nulls:
            value = "null"
        elif account.zone_breakdown and name in ZONE_COLUMNS:
            value = f"{{v{_ROW_ZONE_ID if name == 'ZoneId' else _ROW_ZONE_NAME}}}"
        elif name in _ROW_SOURCES:
            value = f"{{v{_ROW_SOURCES[name]}}}"
            if shape.numbers_as_strings:
                value = f'"{value}"'
        else:
            value = f"{{b{len(block_keys)}}}"
            block_keys.append(name)
        members.append(constant(_json_str(name) + ":") + value)
    for name, literal in shape.extra:
        members.append(constant(f"{_json_str(name)}:{literal}"))
    body = "{{" + ",".join(members) + "}}"
    lines = ["def factory(block):"]
    lines += [f"    b{index} = block[{name!r}]" for index, name in enumerate(block_keys)]
    lines.append(f"    return lambda v0, v1, v2, v3, v4, v5, v6: f{body!r}")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)
    factory = cast(Callable[[dict[str, str]], _RowRenderer], namespace["factory"])
    with _ROW_FACTORY_LOCK:
        if len(_ROW_FACTORIES) > 256:  # fault shapes are few, but bound it anyway
            _ROW_FACTORIES.clear()
        _ROW_FACTORIES[key] = factory
    return factory


def _block_constants(account: SimAccount, service: SimService, day: date, period_start: date) -> dict[str, str]:
    block = {
        "BillingCurrency": '"USD"',
        "BillingPeriodStart": f'"{_timestamp(period_start)}"',
        "ChargePeriodEnd": f'"{_timestamp(day + timedelta(days=1))}"',
        "ChargePeriodStart": f'"{_timestamp(day)}"',
        "ConsumedUnit": _json_str(service.unit),
        "ServiceName": _json_str(service.name),
    }
    if account.focus_columns:
        block.update(
            BillingAccountId=_json_str(account.account_id),
            BillingAccountName="null",
            ChargeCategory='"Usage"',
            ChargeClass="null",
            ChargeDescription=_json_str(f"{service.name} usage"),
            HostProviderName='"Cloudflare"',
            InvoiceIssuerName='"Cloudflare, Inc."',
            PricingUnit=_json_str(service.unit),
            ServiceProviderName='"Cloudflare"',
            ServiceFamilyName=_json_str(service.family),
            SubscriptionId=_json_str(account.subscriptions[0].id),
            ZoneId="null",
            ZoneName="null",
        )
    return block


_ZONE_TABLES: dict[tuple[str, int], list[tuple[str, str, int]]] = {}
_ZONE_LOCK = threading.Lock()


def _zone_table(account_id: str, count: int) -> list[tuple[str, str, int]]:
    """``count`` zones as (ZoneId literal, ZoneName literal, seed), sorted by ZoneId. Zone i has the
    same id whatever the count, so growing the zone count only adds rows."""
    key = (account_id, count)
    with _ZONE_LOCK:
        table = _ZONE_TABLES.get(key)
    if table is None:
        zones = []
        for index in range(count):
            zone_id = hashlib.blake2b(f"{account_id}|zone|{index}".encode(), digest_size=16).hexdigest()
            zones.append((f'"{zone_id}"', f'"zone{index:07d}.example.com"', int(zone_id[:16], 16)))
        zones.sort()
        table = zones
        with _ZONE_LOCK:
            if len(_ZONE_TABLES) > 8:
                _ZONE_TABLES.clear()
            _ZONE_TABLES[key] = table
    return table


def _render_rows(account: SimAccount, first: date, last: date, zones: int, shape: _RowShape) -> list[bytes]:
    """JSON text of the rows for days first..last (inclusive), as comma-joined chunks (one per
    day and service). Running totals start at the billing period containing ``first`` so that
    Cumulated* are right even when the window starts mid-period."""
    anchor = account.anchor
    period_index = _period_index(anchor, first)
    period_start = _period_start_at(anchor, period_index)
    next_period_start = _period_start_at(anchor, period_index + 1)
    services = sorted(account.services, key=lambda s: s.name)
    zone_rows = _zone_table(account.account_id, zones) if account.zone_breakdown else [("null", "null", 0)]
    cum_costs = [[Decimal(0)] * len(zone_rows) for _ in services]
    cum_pqs = [[0] * len(zone_rows) for _ in services]
    make_renderer = _row_factory(account, shape)
    chunks: list[bytes] = []
    one_day = timedelta(days=1)
    day = period_start
    while day <= last:
        if day == next_period_start:
            period_index += 1
            period_start, next_period_start = next_period_start, _period_start_at(anchor, period_index + 1)
            cum_costs = [[Decimal(0)] * len(zone_rows) for _ in services]
            cum_pqs = [[0] * len(zone_rows) for _ in services]
        emit = day >= first
        day_text = day.isoformat()
        for service_index, service in enumerate(services):
            day_seed = _hash64(f"{account.account_id}|{service.name}|{day_text}")
            low, span = service.daily_min, service.daily_max - service.daily_min + 1
            included, price = service.included_daily, service.unit_price
            costs, pqs = cum_costs[service_index], cum_pqs[service_index]
            render = make_renderer(_block_constants(account, service, day, period_start))
            rows: list[str] = []
            for zone_index, (zone_id, zone_name, zone_seed) in enumerate(zone_rows):
                # A cheap 64-bit mix of the (account, service, day) hash with the zone's seed keeps
                # values deterministic per (account, service, zone, day) without hashing every row.
                mixed = ((day_seed ^ zone_seed) * _GOLDEN64) & _MASK64
                quantity = low + ((mixed ^ (mixed >> 29)) % span)
                pricing = quantity - included if quantity > included else 0
                cost = (price * pricing).quantize(_Q6, rounding=ROUND_HALF_EVEN)
                cum_cost = costs[zone_index] + cost
                costs[zone_index] = cum_cost
                cum_pq = pqs[zone_index] + pricing
                pqs[zone_index] = cum_pq
                if emit:
                    # Exact decimal text, trailing zeros trimmed but still a float literal (0.750000 ->
                    # 0.75, 3.000000 -> 3.0) so JSON readers never flip to int. Inlined: hot loop.
                    cost_text = str(cost).rstrip("0")
                    if cost_text[-1] == ".":
                        cost_text += "0"
                    cum_text = str(cum_cost).rstrip("0")
                    if cum_text[-1] == ".":
                        cum_text += "0"
                    rows.append(render(quantity, cost_text, cum_text, cum_pq, pricing, zone_id, zone_name))
            if rows:
                chunks.append(",".join(rows).encode())
        day += one_day
    return chunks


class _BodyCache:
    """LRU of rendered row chunks bounded by total bytes (a 1M-row body is ~400 MB)."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[Any, ...], tuple[list[bytes], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> list[bytes] | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def put(self, key: tuple[Any, ...], chunks: list[bytes]) -> None:
        size = sum(len(c) for c in chunks)
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (chunks, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped


_BODY_CACHE = _BodyCache()


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------

_ANSWER_FAULTS = ("rate_limit", "block", "server_error", "success_false", "reset")
_SEND_FAULTS = ("slow", "truncated")
_RESULT_FAULTS = ("null_result", "wrong_type_result", "not_covered")
_ROW_FAULTS = ("missing_column", "null_column", "numbers_as_strings", "extra_columns")
_ROUTE_FAULTS = ("path_moved", "info_unavailable")
FAULT_KINDS: frozenset[str] = frozenset(_ANSWER_FAULTS + _SEND_FAULTS + _RESULT_FAULTS + _ROW_FAULTS + _ROUTE_FAULTS)


@dataclass
class Fault:
    kind: str
    account_id: str | None = None
    path: str | None = None
    times: int | None = None  # remaining uses; None = unlimited
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "account_id": self.account_id,
            "path": self.path,
            "times": self.times,
            **self.params,
        }

    def moved_routes(self) -> frozenset[str]:
        routes = set(self.params.get("routes") or ())
        if not routes:
            routes.add("billing/usage/paygo")
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
            return route in _INFO_ROUTES
        if kind in _ROW_FAULTS:
            return route in _USAGE_ROUTES
        return True


def _validate_fault(kind: str, times: int | None, params: dict[str, Any]) -> None:
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
    if kind == "extra_columns" and not isinstance(params.get("columns", {}), dict):
        raise ValueError("extra_columns 'columns' must be a dict")
    for name in ("delay", "body_delay", "retry_after"):
        value = params.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"{name} must be a non-negative number")


# --------------------------------------------------------------------------------------------
# Rate limiting
# --------------------------------------------------------------------------------------------


class _RateLimiter:
    """Fixed-window counter per credential. When enforcing, going over the limit blocks every call
    of that credential for ``block`` seconds (as Cloudflare does); otherwise it only reports."""

    def __init__(self, policy: tuple[int, float, float] | None) -> None:
        self.enforce = policy is not None
        max_requests, window, block = policy if policy is not None else _NOMINAL_RATE_LIMIT
        self.max_requests, self.window, self.block = int(max_requests), float(window), float(block)
        self._state: dict[str, list[float]] = {}  # key -> [window_start, count, blocked_until]
        self._lock = threading.Lock()

    def _headers(self, remaining: float, reset_in: float) -> list[tuple[str, str]]:
        return [
            ("Ratelimit", f'"default";r={max(0, int(remaining))};t={max(0, math.ceil(reset_in))}'),
            ("Ratelimit-Policy", f'"default";q={self.max_requests};w={int(self.window)}'),
        ]

    def peek(self, key: str | None) -> list[tuple[str, str]]:
        now = time.monotonic()
        with self._lock:
            state = self._state.get(key) if key else None
            if state is None or now - state[0] >= self.window:
                return self._headers(self.max_requests, self.window)
            return self._headers(self.max_requests - state[1], self.window - (now - state[0]))

    def hit(self, key: str) -> tuple[float | None, list[tuple[str, str]]]:
        """Count one request; returns (retry_after seconds if refused, Ratelimit headers)."""
        now = time.monotonic()
        with self._lock:
            state = self._state.setdefault(key, [now, 0, 0.0])
            if self.enforce and state[2] > now:
                return state[2] - now, self._headers(0, state[2] - now)
            # A block that has run out starts a fresh window (else the next call re-blocks at once).
            if now - state[0] >= self.window or (state[2] and state[2] <= now):
                state[0], state[1], state[2] = now, 0, 0.0
            state[1] += 1
            reset_in = self.window - (now - state[0])
            if self.enforce and state[1] > self.max_requests:
                state[2] = now + self.block
                return self.block, self._headers(0, self.block)
            return None, self._headers(self.max_requests - state[1], reset_in)


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, extra: Sequence[tuple[int, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.errors = [{"code": code, "message": message}] + [{"code": c, "message": m} for c, m in extra]


def _envelope(result: Any) -> bytes:
    return json.dumps({"success": True, "errors": [], "messages": [], "result": result}).encode()


def _error_body(errors: list[dict[str, Any]]) -> bytes:
    return json.dumps({"success": False, "errors": errors, "messages": [], "result": None}).encode()


_STATUS_TITLES = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def _error_page(status: int) -> bytes:
    title = f"{status} {_STATUS_TITLES.get(status, 'Server Error')}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


class _SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: CloudflareSimulator) -> None:
        self.simulator = simulator
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can take seconds.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-answer are normal here (timeouts, truncation tests).
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            return
        if not self.simulator.quiet:
            traceback.print_exc()


class _SimServer6(_SimServer):
    address_family = socket.AF_INET6


@dataclass
class _Exchange:
    """What the request log keeps of one API request (never a header value)."""

    method: str
    path: str
    query: dict[str, str]
    time: float
    auth: str | None = None
    account_id: str | None = None
    fault: str | None = None
    user_agent: str | None = None  # not a secret; lets tests check what the client identifies as


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    server_version = "cloudflare"
    timeout = 120  # idle keep-alive connections eventually free their thread

    _secrets: list[str]
    _exchange: _Exchange | None
    _ratelimit_headers: list[tuple[str, str]]
    _headers_started: bool

    @property
    def sim(self) -> CloudflareSimulator:
        return cast(_SimServer, self.server).simulator

    def version_string(self) -> str:
        return self.server_version  # "Server: cloudflare", like the real API

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle + delayed ACK adds
        # ~40 ms to every keep-alive request.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- logging: quiet by default, and never a credential --------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        if self.sim.quiet:
            return
        text = self.sim._scrub(format % args, getattr(self, "_secrets", []))
        sys.stderr.write(f"cfbilling-simulator {self.address_string()} - {text}\n")

    # -- dispatch -----------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        self._secrets = []
        self._exchange = None
        self._ratelimit_headers = []
        self._headers_started = False
        try:
            url = urlsplit(self.path)
            body = self._read_body()
            for prefix in ("/__sim/", API_PREFIX + "/__sim/"):
                if url.path.startswith(prefix):
                    self._control(url.path[len(prefix) :].rstrip("/"), body)
                    return
            self._api(url.path, url.query)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            # A simulator bug: answer 500 if still possible so the client does not hang.
            traceback.print_exc()
            self.close_connection = True
            if not self._headers_started:
                self._write(500, [_error_body([{"code": 10001, "message": "simulator internal error"}])])

    # -- writing --------------------------------------------------------------------------
    def _write(
        self,
        status: int,
        chunks: Sequence[bytes],
        *,
        content_type: str = "application/json",
        headers: Iterable[tuple[str, str]] = (),
        send_faults: Sequence[Fault] = (),
    ) -> None:
        """Send one answer with an exact Content-Length, applying slow/truncated faults."""
        delay = body_delay = 0.0
        truncate = False
        for fault in send_faults:
            if fault.kind == "slow":
                delay += float(fault.params.get("delay") or 0)
                body_delay += float(fault.params.get("body_delay") or 0)
            elif fault.kind == "truncated":
                truncate = True
        total = sum(len(c) for c in chunks)
        is_api_answer = self._exchange is not None
        # Log before answering: once a client holds the answer, its request is in the log.
        self._record(status)
        if delay:
            self.sim._stopping.wait(delay)
        self._headers_started = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(total))
        for name, value in list(headers) + self._ratelimit_headers:
            self.send_header(name, value)
        if is_api_answer:
            self.send_header("CF-RAY", os.urandom(8).hex() + "-SIM")
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        stop_at = total // 2 if (truncate or body_delay) else total
        sent = self._send_range(chunks, 0, stop_at)
        if truncate:
            self.close_connection = True
            return
        if body_delay:
            self.sim._stopping.wait(body_delay)
        self._send_range(chunks, sent, total)

    def _send_range(self, chunks: Sequence[bytes], start: int, stop: int) -> int:
        offset = 0
        for chunk in chunks:
            end = offset + len(chunk)
            if end > start and offset < stop:
                self.wfile.write(chunk[max(0, start - offset) : min(len(chunk), stop - offset)])
            offset = end
            if offset >= stop:
                break
        return stop

    def _json(self, status: int, payload: Any) -> None:
        self._write(status, [json.dumps(payload).encode()])

    def _api_error(self, error: _ApiError, headers: Iterable[tuple[str, str]] = ()) -> None:
        self._write(error.status, [_error_body(error.errors)], headers=headers)

    def _record(self, status: int | None) -> None:
        if self._exchange is not None:
            self.sim._record(self._exchange, status)
            self._exchange = None

    def _reset_connection(self) -> None:
        """Drop the connection with a TCP RST and no answer at all."""
        self._record(None)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The real close happens when rfile/wfile are closed in finish(); linger 0 makes it a RST.
        self.connection.close()

    # -- the Cloudflare API ----------------------------------------------------------------
    def _credentials(self) -> tuple[str | None, str | None, _ApiError | None, bool]:
        """(auth kind, principal key, error, billing_read). Remembers presented secrets to scrub."""
        authorization = self.headers.get("Authorization")
        email = self.headers.get("X-Auth-Email")
        key = self.headers.get("X-Auth-Key")
        self._secrets = [s for s in (authorization, key) if s]
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            token = token.strip()
            if token:
                self._secrets.append(token)
            if scheme.lower() != "bearer" or not token or any(ch.isspace() for ch in token):
                return "bearer", None, _ApiError(400, 6003, "Invalid request headers"), False
            billing_read = self.sim._token_permission(token)
            principal = "token:" + hashlib.sha256(token.encode()).hexdigest()[:24]
            if billing_read is None:
                return "bearer", principal, _ApiError(403, 10000, "Authentication error"), False
            return "bearer", principal, None, billing_read
        if email is not None or key is not None:
            if not email or not key:
                return "legacy", None, _missing_credentials(), False
            principal = "user:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:24]
            if email.strip().lower() != SIM_EMAIL or key.strip() != SIM_GLOBAL_KEY:
                return "legacy", principal, _ApiError(403, 10000, "Authentication error"), False
            return "legacy", principal, None, True
        return None, None, _missing_credentials(), False

    def _api(self, path: str, raw_query: str) -> None:
        sim = self.sim
        auth_kind, principal, auth_error, billing_read = self._credentials()
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        self._exchange = _Exchange(
            method=self.command,
            path=sim._scrub(path, self._secrets),
            query={k: sim._scrub(v, self._secrets) for k, v in query.items()},
            time=time.time(),
            auth=auth_kind,
            user_agent=sim._scrub(self.headers.get("User-Agent") or "", self._secrets) or None,
        )
        self._ratelimit_headers = sim._limiter.peek(principal)

        match = _ROUTE_RE.fullmatch(path)
        if match is None or self.command != "GET":
            self._api_error(_ApiError(404, 7000, "No route for that URI"))
            return
        account_id, route = match.group(1), match.group(2)
        if not _ACCOUNT_ID_RE.fullmatch(account_id):
            # The message echoes the path: scrubbed, in case a client put a credential in it.
            route_path = self._exchange.path
            self._api_error(
                _ApiError(404, 7003, f"Could not route to {route_path}, perhaps your object identifier is invalid?")
            )
            return
        self._exchange.account_id = account_id

        route_fault = sim._take_route_fault(route, account_id, path)
        if route_fault is not None:
            self._exchange.fault = route_fault.kind
            self._api_error(_route_fault_error(route_fault, self._exchange.path))
            return

        if auth_error is not None:
            self._api_error(auth_error)
            return
        assert principal is not None
        retry_after, self._ratelimit_headers = sim._limiter.hit(principal)
        if retry_after is not None:
            self._exchange.fault = "rate_limited"
            self._api_error(_rate_limited(), headers=[("Retry-After", str(max(1, math.ceil(retry_after))))])
            return
        if not billing_read or account_id not in ACCOUNTS:
            self._api_error(_ApiError(403, 9109, "Unauthorized to access requested resource"))
            return

        answer_fault, send_faults = sim._take_request_faults(route, account_id, path)
        if answer_fault is not None:
            self._exchange.fault = answer_fault.kind
            self._answer_fault(answer_fault, send_faults)
            return
        if send_faults:
            self._exchange.fault = ",".join(f.kind for f in send_faults)

        account = ACCOUNTS[account_id]
        if route in _INFO_ROUTES:
            self._info(account, route, path, send_faults)
            return
        try:
            window = _parse_window(query)
        except _ApiError as error:
            self._write(error.status, [_error_body(error.errors)], send_faults=send_faults)
            return
        self._usage(account, route, path, window, send_faults)

    def _answer_fault(self, fault: Fault, send_faults: Sequence[Fault]) -> None:
        kind, params = fault.kind, fault.params
        if kind == "reset":
            self._reset_connection()
        elif kind in ("rate_limit", "block"):
            seconds = float(params.get("retry_after", 300 if kind == "block" else 1))
            if params.get("retry_after_http_date"):
                retry_after = formatdate(time.time() + seconds, usegmt=True)
            else:
                retry_after = str(math.ceil(seconds))
            self._write(429, [_error_body(_rate_limited().errors)], headers=[("Retry-After", retry_after)],
                        send_faults=send_faults)  # fmt: skip
        elif kind == "server_error":
            status = int(params.get("status", 502))
            self._write(status, [_error_page(status)], content_type="text/html", send_faults=send_faults)
        else:  # success_false
            error = {
                "code": int(params.get("code", 1000)),
                "message": str(params.get("message", "An internal error occurred. Please try again.")),
            }
            self._write(200, [_error_body([error])], send_faults=send_faults)

    def _info(self, account: SimAccount, route: str, path: str, send_faults: Sequence[Fault]) -> None:
        faults = self.sim._take_result_faults(route, account.account_id, path)
        self._note_faults(faults)
        result: Any = {
            "covered": True,
            "subscriptions": [
                {
                    "id": s.id,
                    "billing_cycle_anchor_timestamp": s.anchor_timestamp,
                    "start_timestamp": s.anchor_timestamp,
                    "end_timestamp": None,
                }
                for s in account.subscriptions
            ],
        }
        kinds = {f.kind for f in faults}
        if "not_covered" in kinds:
            result = {"covered": False, "subscriptions": []}
        if "wrong_type_result" in kinds:
            result = [result]
        if "null_result" in kinds:
            result = None
        self._write(200, [_envelope(result)], send_faults=send_faults)

    def _usage(
        self,
        account: SimAccount,
        route: str,
        path: str,
        window: tuple[date, date] | None,
        send_faults: Sequence[Fault],
    ) -> None:
        sim = self.sim
        faults = sim._take_result_faults(route, account.account_id, path)
        self._note_faults(faults)
        kinds = {f.kind for f in faults}
        if "null_result" in kinds:
            self._write(200, [_envelope(None)], send_faults=send_faults)
            return
        days = sim._usage_days(account, window)
        chunks: list[bytes] = []
        if days is not None:
            shape = _row_shape(faults)
            zones = sim.large_zones if account.zone_breakdown else 0
            key = (account.account_id, days[0], days[1], zones, shape)
            cached = _BODY_CACHE.get(key)
            if cached is None:
                cached = _render_rows(account, days[0], days[1], zones, shape)
                _BODY_CACHE.put(key, cached)
            chunks = cached
        opening = b'{"data":[' if "wrong_type_result" in kinds else b"["
        closing = b"}" if "wrong_type_result" in kinds else b""
        body = [b'{"success":true,"errors":[],"messages":[],"result":' + opening]
        for index, chunk in enumerate(chunks):
            if index:
                body.append(b",")
            body.append(chunk)
        body.append(b"]" + closing + b"}")
        self._write(200, body, send_faults=send_faults)

    def _note_faults(self, faults: Sequence[Fault]) -> None:
        if faults and self._exchange is not None:
            names = [self._exchange.fault] if self._exchange.fault else []
            self._exchange.fault = ",".join(names + [f.kind for f in faults])

    # -- the control API --------------------------------------------------------------------
    def _control(self, endpoint: str, body: bytes) -> None:
        sim, method = self.sim, self.command
        try:
            payload = json.loads(body) if body.strip() else {}
            if not isinstance(payload, dict):
                raise ValueError("the request body must be a JSON object")
            if endpoint == "clock" and method == "POST":
                sim.set_today(_parse_date(str(payload.get("today"))))
                self._json(200, {"today": sim.today.isoformat()})
            elif endpoint == "clock" and method == "GET":
                self._json(200, {"today": sim.today.isoformat()})
            elif endpoint == "faults" and method == "POST":
                params = dict(payload)
                kind = params.pop("kind", None)
                if not isinstance(kind, str):
                    raise ValueError("'kind' is required")
                fault = sim.add_fault(
                    kind, account_id=params.pop("account_id", None), times=params.pop("times", None), **params
                )
                self._json(200, {"fault": fault.describe()})
            elif endpoint == "faults" and method == "GET":
                self._json(200, {"faults": sim.faults})
            elif endpoint == "faults" and method == "DELETE":
                sim.clear_faults()
                self._json(200, {"faults": []})
            elif endpoint == "requests" and method == "GET":
                self._json(200, sim.requests)
            elif endpoint == "reset" and method == "POST":
                sim.reset()
                self._json(200, sim.config)
            elif endpoint == "config" and method == "GET":
                self._json(200, sim.config)
            elif endpoint == "config" and method == "POST":
                if "large_zones" in payload:
                    sim.set_large_zones(payload["large_zones"])
                if "enforce_window_rules" in payload:
                    if not isinstance(payload["enforce_window_rules"], bool):
                        raise ValueError("enforce_window_rules must be a boolean")
                    sim.set_window_rules(payload["enforce_window_rules"])
                if "rate_limit" in payload:
                    sim.set_rate_limit(payload["rate_limit"])
                self._json(200, sim.config)
            else:
                self._json(404, {"error": f"no control endpoint {method} /__sim/{endpoint}"})
        except (ValueError, TypeError) as error:
            self._json(400, {"error": str(error)})


def _missing_credentials() -> _ApiError:
    return _ApiError(400, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")


def _rate_limited() -> _ApiError:
    return _ApiError(429, 971, "Please wait and consider throttling your request speed")


def _route_fault_error(fault: Fault, path: str) -> _ApiError:
    could_not_route = f"Could not route to {path}, perhaps your object identifier is invalid?"
    if fault.kind == "info_unavailable":
        return _ApiError(404, 7000, "No route for that URI")
    code = fault.params.get("code")
    if code == 7000:
        return _ApiError(404, 7000, "No route for that URI")
    if code == 7003:
        return _ApiError(404, 7003, could_not_route)
    # What Cloudflare answers for an unknown path under an account: both codes.
    return _ApiError(404, 7003, could_not_route, extra=[(7000, "No route for that URI")])


def _row_shape(faults: Sequence[Fault]) -> _RowShape:
    missing: set[str] = set()
    nulls: set[str] = set()
    numbers_as_strings = False
    extra: list[tuple[str, str]] = []
    for fault in faults:
        if fault.kind == "missing_column":
            missing.add(fault.params["column"])
        elif fault.kind == "null_column":
            nulls.add(fault.params["column"])
        elif fault.kind == "numbers_as_strings":
            numbers_as_strings = True
        elif fault.kind == "extra_columns":
            columns = fault.params.get("columns") or {"x_FutureColumn": "future", "x_FutureAmount": 1.5}
            extra.extend((str(k), json.dumps(v)) for k, v in columns.items())
    if not (missing or nulls or numbers_as_strings or extra):
        return _PLAIN_SHAPE
    return _RowShape(frozenset(missing), frozenset(nulls), numbers_as_strings, tuple(extra))


def _parse_date(text: str) -> date:
    if not _DATE_RE.fullmatch(text):
        raise ValueError(f"not a YYYY-MM-DD date: {text!r}")
    return date.fromisoformat(text)


def _parse_window(query: dict[str, str]) -> tuple[date, date] | None:
    if "from" not in query and "to" not in query:
        return None
    invalid = _ApiError(400, 1183, "Invalid request parameters")
    if "from" not in query or "to" not in query:
        raise invalid
    try:
        first, last = _parse_date(query["from"]), _parse_date(query["to"])
    except ValueError:
        raise invalid from None
    if first > last:
        raise invalid
    return first, last


def _to_date(value: date | str | None) -> date:
    if value is None:
        return datetime.now(timezone.utc).date()
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return _parse_date(str(value))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_rate_limit(value: Any) -> tuple[int, float, float] | None:
    """None, a (max, window_s, block_s) sequence, or "MAX/WINDOW/BLOCK"."""
    if value is None:
        return None
    parts = value.split("/") if isinstance(value, str) else list(value)
    if len(parts) != 3:
        raise ValueError("rate_limit must be (max_requests, window_seconds, block_seconds)")
    max_requests, window, block = int(parts[0]), float(parts[1]), float(parts[2])
    if max_requests < 1 or window <= 0 or block < 0:
        raise ValueError("rate_limit needs max_requests >= 1, window > 0, block >= 0")
    return max_requests, window, block


# --------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------


class CloudflareSimulator:
    """A Cloudflare billable-usage API on a loopback port, served from a daemon thread.

    ``today`` (a date; default: UTC today) is the simulated clock: usage exists for days before
    it. ``rate_limit=(max_requests, window_seconds, block_seconds)`` turns on Cloudflare-style
    enforcement per credential. See the module docstring for the HTTP and control APIs.
    """

    def __init__(
        self,
        today: date | str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        enforce_window_rules: bool = True,
        large_zones: int = 10,
        rate_limit: Sequence[float] | str | None = None,
        quiet: bool = True,
    ) -> None:
        if not _is_loopback(host):
            raise ValueError(f"the simulator only listens on loopback addresses, not {host!r}")
        self.host = host
        self.quiet = quiet
        self._requested_port = port
        self._initial = (_to_date(today), bool(enforce_window_rules), int(large_zones), _parse_rate_limit(rate_limit))
        self._lock = threading.RLock()
        self._tokens: dict[str, bool] = {SIM_TOKEN: True, SIM_TOKEN_NO_BILLING: False}
        self._faults: list[Fault] = []
        self._log: list[dict[str, Any]] = []
        self._stopping = threading.Event()
        self._server: _SimServer | None = None
        self._thread: threading.Thread | None = None
        self._apply_initial_state()

    def _apply_initial_state(self) -> None:
        today, window_rules, zones, rate_limit = self._initial
        with self._lock:
            self._today = today
            self.enforce_window_rules = window_rules
            self.set_large_zones(zones)
            self._rate_limit = rate_limit
            self._limiter = _RateLimiter(rate_limit)
            self._faults.clear()
            self._log.clear()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> CloudflareSimulator:
        if self._server is not None:
            return self
        server_class = _SimServer6 if ":" in self.host else _SimServer
        self._stopping.clear()
        self._server = server_class((self.host, self._requested_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="cfbilling-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in slow faults
        server.shutdown()
        # Idle keep-alive connections would otherwise keep answering after stop().
        with server.connections_lock:
            connections = list(server.open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> CloudflareSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{API_PREFIX}"

    @property
    def base_url(self) -> str:
        """Root of the server (where ``/__sim/...`` lives)."""
        return self.url[: -len(API_PREFIX)]

    # -- configuration ----------------------------------------------------------------------
    @property
    def today(self) -> date:
        with self._lock:
            return self._today

    def set_today(self, today: date | str) -> None:
        with self._lock:
            self._today = _to_date(today)

    def set_window_rules(self, enabled: bool) -> None:
        with self._lock:
            self.enforce_window_rules = bool(enabled)

    def set_large_zones(self, zones: int) -> None:
        if isinstance(zones, bool) or not isinstance(zones, int) or zones < 1:
            raise ValueError("large_zones must be a positive integer")
        with self._lock:
            self.large_zones = zones

    def set_rate_limit(self, rate_limit: Sequence[float] | str | None) -> None:
        """Change (or with None, switch off) rate-limit enforcement; resets the counters."""
        parsed = _parse_rate_limit(rate_limit)
        with self._lock:
            self._rate_limit = parsed
            self._limiter = _RateLimiter(parsed)

    def add_token(self, token: str, billing_read: bool = True) -> None:
        if not token or any(ch.isspace() for ch in token):
            raise ValueError("a token must be a non-empty string without whitespace")
        with self._lock:
            self._tokens[token] = bool(billing_read)

    @property
    def config(self) -> dict[str, Any]:
        with self._lock:
            return {
                "today": self._today.isoformat(),
                "large_zones": self.large_zones,
                "enforce_window_rules": self.enforce_window_rules,
                "rate_limit": list(self._rate_limit) if self._rate_limit else None,
            }

    @staticmethod
    def clear_cache() -> None:
        """Drop the rendered usage bodies (shared by all instances; pure functions of account,
        window, zone count and fault shape), e.g. to time a cold LARGE answer."""
        _BODY_CACHE.clear()

    def reset(self) -> None:
        """Back to the constructor's state: faults, request log, clock, window rules, zones and
        rate-limit state. Tokens added with add_token() are kept."""
        self._apply_initial_state()

    # -- faults -----------------------------------------------------------------------------
    def add_fault(
        self,
        kind: str,
        *,
        account_id: str | None = None,
        times: int | None = None,
        path: str | None = None,
        **params: Any,
    ) -> Fault:
        _validate_fault(kind, times, params)
        fault = Fault(kind, account_id, path, times, dict(params))
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._faults]

    def _consume(self, fault: Fault) -> None:
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)

    def _take_route_fault(self, route: str, account_id: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in _ROUTE_FAULTS and fault.applies(route, account_id, path):
                    self._consume(fault)
                    return fault
        return None

    def _take_request_faults(self, route: str, account_id: str, path: str) -> tuple[Fault | None, list[Fault]]:
        """The first matching answer-replacing fault and every matching slow/truncated fault."""
        with self._lock:
            answer: Fault | None = None
            send: list[Fault] = []
            for fault in list(self._faults):
                if not fault.applies(route, account_id, path):
                    continue
                if fault.kind in _ANSWER_FAULTS and answer is None:
                    answer = fault
                elif fault.kind in _SEND_FAULTS:
                    send.append(fault)
                else:
                    continue
                self._consume(fault)
            return answer, send

    def _take_result_faults(self, route: str, account_id: str, path: str) -> list[Fault]:
        with self._lock:
            taken = []
            for fault in list(self._faults):
                if fault.kind in _RESULT_FAULTS + _ROW_FAULTS and fault.applies(route, account_id, path):
                    taken.append(Fault(fault.kind, fault.account_id, fault.path, None, dict(fault.params)))
                    self._consume(fault)
            return taken

    # -- request log ------------------------------------------------------------------------
    def _record(self, exchange: _Exchange, status: int | None) -> None:
        entry = {
            "method": exchange.method,
            "path": exchange.path,
            "query": exchange.query,
            "account_id": exchange.account_id,
            "status": status,
            "auth": exchange.auth,
            "time": exchange.time,
            "fault": exchange.fault,
            "user_agent": exchange.user_agent,
        }
        with self._lock:
            self._log.append(entry)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of the request log: method, path, query, account_id, status (None when the
        connection was reset), auth ("bearer" | "legacy" | None), time (epoch seconds), fault
        (the fault kinds applied, or None) and user_agent. Control requests are never logged."""
        with self._lock:
            return [{**entry, "query": dict(entry["query"])} for entry in self._log]

    def request_count(
        self, path_contains: str | None = None, account_id: str | None = None, status: int | None = None
    ) -> int:
        with self._lock:
            return sum(
                1
                for entry in self._log
                if (path_contains is None or path_contains in entry["path"])
                and (account_id is None or entry["account_id"] == account_id)
                and (status is None or entry["status"] == status)
            )

    def _scrub(self, text: str, presented: Iterable[str] = ()) -> str:
        """Replace any credential (presented in this request or known to the simulator)."""
        with self._lock:
            secrets = {*presented, *self._tokens, SIM_GLOBAL_KEY}
        for secret in sorted(secrets, key=len, reverse=True):
            if secret and secret in text:
                text = text.replace(secret, "[REDACTED]")
        return text

    def _token_permission(self, token: str) -> bool | None:
        with self._lock:
            return self._tokens.get(token)

    # -- usage windows ----------------------------------------------------------------------
    def _usage_days(self, account: SimAccount, window: tuple[date, date] | None) -> tuple[date, date] | None:
        """The inclusive (first, last) days to serve, or None for an empty list."""
        with self._lock:
            today, window_rules = self._today, self.enforce_window_rules
        if not account.has_usage:
            return None
        anchor = account.anchor
        if window is None:
            if today <= anchor:
                return None
            first, last = billing_period_start(anchor, today), today - timedelta(days=1)
        else:
            if window_rules and not _contains_anchor_day(anchor, *window):
                return None
            first, last = max(window[0], anchor), min(window[1], today - timedelta(days=1))
        return (first, last) if first <= last else None


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``cfbilling-simulator``: serve until SIGINT/SIGTERM; prints the base URL on one line."""
    parser = argparse.ArgumentParser(
        prog="cfbilling-simulator", description="Local Cloudflare billable-usage API simulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=8787, help="port (0 = any free port)")
    parser.add_argument("--today", help="simulated today, YYYY-MM-DD (default: UTC today)")
    parser.add_argument("--no-window-rules", action="store_true", help="serve ranges without an anchor day")
    parser.add_argument("--large-zones", type=int, default=10, help="zones of the LARGE account")
    parser.add_argument("--rate-limit", help="enforce MAX/WINDOW/BLOCK, e.g. 120/30/60")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr (never credentials)")
    args = parser.parse_args(argv)
    if not _is_loopback(args.host):
        parser.error(f"refusing to listen on non-loopback host {args.host!r}")
    try:
        simulator = CloudflareSimulator(
            _to_date(args.today) if args.today else None,
            host=args.host,
            port=args.port,
            enforce_window_rules=not args.no_window_rules,
            large_zones=args.large_zones,
            rate_limit=args.rate_limit,
            quiet=not args.verbose,
        )
    except ValueError as error:
        parser.error(str(error))
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    simulator.start()
    try:
        print(simulator.url, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
