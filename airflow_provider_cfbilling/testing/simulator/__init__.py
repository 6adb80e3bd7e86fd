"""Local simulator of Cloudflare's billable-usage API, modelled on its published contract
(standard library only: no airflow, pendulum or requests, so it starts fast and runs as a process).

Layout (in the manner of moto): ``accounts`` (accounts, subscriptions, services, columns),
``periods`` (the simulator's own period arithmetic), ``rendering`` (deterministic rows, fast JSON),
``faults``, ``ratelimit``, ``exceptions`` (Cloudflare's error answers), ``routes`` (API route ->
answer), ``control`` (the ``/__sim/`` test controls), ``server`` (HTTP server and
:class:`CloudflareSimulator`), ``cli`` (``cfbilling-simulator``).

Quick start: ``with CloudflareSimulator(today=date(2025, 3, 20)) as sim: sim.url`` (ends in
``/client/v4``), or ``cfbilling-simulator --port 8787 --today 2025-03-20`` (prints the URL; flags
``--no-window-rules``, ``--to-exclusive``, ``--large-zones N``, ``--generated-accounts N``,
``--rate-limit MAX/WINDOW/BLOCK``, ``--verbose``; loopback hosts only).

Credentials: ``SIM_TOKEN`` (Billing Read, every account), ``SIM_TOKEN_NO_BILLING`` (403/9109 on
usage), legacy ``SIM_EMAIL`` + ``SIM_GLOBAL_KEY``; ``sim.add_token(token, billing_read=True,
accounts=None)`` adds tokens that see only some accounts. No credential reaches the log or output.

Accounts (``ACCOUNTS``; ``sim.add_generated_accounts(n)`` adds deterministic ones)
==================== ============================================================================
``STANDARD_ACCOUNT``  anchor 2025-01-14T00:00:00Z; Workers, R2, Argo, Load Balancing (empty unit)
``ANCHOR31_ACCOUNT``  anchor 2024-01-31 (periods clamp to Feb 29/28, Apr 30, ...); null account name
``ANCHOR29_ACCOUNT``  anchor 2024-01-29T21:07:33Z (time of day; Feb 28 in 2025)
``FOCUS_ACCOUNT``     two subscriptions (2025-06-01, 2025-09-20); usage follows the first
``CANCELLED_ACCOUNT`` anchor 2024-03-17T13:45:12Z, cancelled 2025-02-20T10:00:00Z (info carries
                      ``end_timestamp``; usage stops after 2025-02-20)
``EMPTY_ACCOUNT``     covered, anchor 2025-03-05, never any usage
``LARGE_ACCOUNT``     anchor 2025-01-01, one row per service per day per zone (``large_zones``)
==================== ============================================================================

Routes (under ``/client/v4``): ``/accounts/{id}/billable-usage`` (27 fields,
``BILLABLE_USAGE_COLUMNS``: issuer/provider "Cloudflare, Inc.", 26-character SubscriptionId,
PricingUnit never empty, ZoneId/ZoneName null except LARGE); ``/accounts/{id}/paygo-usage`` and the
beta ``/accounts/{id}/billing/usage/paygo`` (``PAYGO_USAGE_COLUMNS``: 11 required + 4 optional; the
beta path answers 400/1183 beyond 62 days); info ``/billable-usage/info`` and ``/paygo-usage-info``
(``end_timestamp`` omitted while active); ``GET /accounts?page=&per_page=`` (List Accounts, per_page
default 20, clamped to 5..50, ``result_info`` with page, per_page, count, total_count, total_pages).
``from``/``to`` are YYYY-MM-DD, both or neither; ``to`` inclusive unless ``to_inclusive=False``;
neither: the current period to date. With window rules a range without an anchor day answers ``[]``.
Errors: 404/7000, 404/7003, 400/9106, 400/6003, 403/10000, 403/9109, 400/1183, 429/971.

Faults (``sim.add_fault(kind, account_id=None, times=None, path=None, **params)``)
===================== =============================================================================
``rate_limit``/``block``  429/971, ``retry_after`` (1 / 300), ``retry_after_http_date``
``server_error``      HTML page, ``status`` 5xx (502)
``success_false``     200 with ``success: false``, ``code``, ``message``
``reset``             connection reset, no answer
``slow``              ``delay`` before, ``body_delay`` mid-body
``truncated``         half the body then close
``null_result``       ``result: null``; ``wrong_type_result``: ``{"data": rows}`` / ``[info]``
``not_covered``       info ``covered: false``; ``info_unavailable``: info 404/7000
``missing_column``/``null_column`` (``column``), ``numbers_as_strings``, ``extra_columns`` (``columns``)
``envelope_variant``  ``errors``/``messages`` (null or a list of {code, message}), ``result_info``
                      (dict added to the envelope): a valid 200 success answer
``timestamp_style``   ``style`` "fractional" (``...T00:00:00.000Z``) or "offset" (``+00:00``) in
                      every date-time of rows and info
``long_decimals``     costs with ``digits`` (16..38, default 18) significant digits; Cumulated* the
                      exact running sums, Billed/Effective/ListCost equal to the cost
``huge_integer``      PricingQuantity (and its running sum) above 2**63
``canned_result``     ``routes`` (route names, e.g. ``["paygo-usage"]`` or ``["accounts"]``), ``result``:
                      that JSON value as the ``result`` of a success envelope, whatever the account
                      and window (e.g. the published schema's example record)
``cost_mismatch``     ``day``, ``service``, ``delta`` (0.01): that row's ContractedCost differs from
                      the movement of CumulatedContractedCost
``restated``          ``day``, ``service``, ``delta`` (1.5): Cloudflare restated that day: its cost (every
                      zone's row) moves by ``delta`` and so does every CumulatedContractedCost from that
                      day to the period's end (the answer still reconciles)
``path_moved``        beta path answers 7003+7000 (``code`` for one), ``status`` 404 or 400;
                      ``also_interim``, ``also_current``, ``routes``
===================== =============================================================================

Modes and controls: ``set_today``, ``advance_clock_after(calls, today, path=None)`` (the clock moves
by itself after N more API calls), ``set_window_rules``, ``set_to_inclusive``, ``set_large_zones``,
``set_rate_limit((max, window_s, block_s))``, ``reset()``, ``requests`` / ``request_count()``.
Over HTTP (no auth, never logged, also under ``/client/v4/__sim/``): ``GET|POST /__sim/clock``,
``POST /__sim/clock/advance`` ``{"after", "today", "path"}``, ``GET|POST|DELETE /__sim/faults``,
``GET /__sim/requests``, ``POST /__sim/reset``, ``GET|POST /__sim/config`` (``large_zones``,
``enforce_window_rules``, ``to_inclusive``, ``rate_limit``), ``GET|POST /__sim/accounts``
``{"generate": n}``, ``POST /__sim/tokens`` ``{"token", "billing_read", "accounts"}``.
"""

from __future__ import annotations

from airflow_provider_cfbilling.testing.simulator.accounts import (
    ACCOUNTS,
    ANCHOR29_ACCOUNT,
    ANCHOR31_ACCOUNT,
    BILLABLE_USAGE_COLUMNS,
    CANCELLED_ACCOUNT,
    EMPTY_ACCOUNT,
    FOCUS_ACCOUNT,
    FOCUS_EXTRA_COLUMNS,
    LARGE_ACCOUNT,
    PAYGO_REQUIRED_COLUMNS,
    PAYGO_USAGE_COLUMNS,
    STANDARD_ACCOUNT,
    ZONE_COLUMNS,
    SimAccount,
    SimService,
    SimSubscription,
    large_zones_for,
)
from airflow_provider_cfbilling.testing.simulator.cli import main
from airflow_provider_cfbilling.testing.simulator.faults import FAULT_KINDS, Fault
from airflow_provider_cfbilling.testing.simulator.periods import billing_period, billing_period_start
from airflow_provider_cfbilling.testing.simulator.routes import (
    SIM_EMAIL,
    SIM_GLOBAL_KEY,
    SIM_TOKEN,
    SIM_TOKEN_NO_BILLING,
)
from airflow_provider_cfbilling.testing.simulator.server import CloudflareSimulator

__all__ = [
    "ACCOUNTS",
    "ANCHOR29_ACCOUNT",
    "ANCHOR31_ACCOUNT",
    "BILLABLE_USAGE_COLUMNS",
    "CANCELLED_ACCOUNT",
    "EMPTY_ACCOUNT",
    "FAULT_KINDS",
    "FOCUS_ACCOUNT",
    "FOCUS_EXTRA_COLUMNS",
    "LARGE_ACCOUNT",
    "PAYGO_REQUIRED_COLUMNS",
    "PAYGO_USAGE_COLUMNS",
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
