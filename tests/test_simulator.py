"""Tests of the local Cloudflare billing API simulator, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Context, Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_cfbilling.testing.simulator import (
    ACCOUNTS,
    ANCHOR31_ACCOUNT,
    BILLABLE_USAGE_COLUMNS,
    CANCELLED_ACCOUNT,
    EMPTY_ACCOUNT,
    FOCUS_ACCOUNT,
    LARGE_ACCOUNT,
    PAYGO_USAGE_COLUMNS,
    SIM_EMAIL,
    SIM_GLOBAL_KEY,
    SIM_TOKEN,
    SIM_TOKEN_NO_BILLING,
    STANDARD_ACCOUNT,
    CloudflareSimulator,
    billing_period,
    billing_period_start,
    large_zones_for,
    main,
)

TODAY = date(2025, 3, 20)  # STANDARD's current period: 2025-03-14 .. today
BEARER = {"Authorization": f"Bearer {SIM_TOKEN}"}
LEGACY = {"X-Auth-Email": SIM_EMAIL, "X-Auth-Key": SIM_GLOBAL_KEY}
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim():
    with CloudflareSimulator(today=TODAY) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _fresh_state(request):
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset()


def get(
    sim: CloudflareSimulator,
    account: str = STANDARD_ACCOUNT,
    route: str = "billable-usage",
    headers: dict[str, str] | None = None,
    **params: str,
) -> requests.Response:
    return requests.get(
        f"{sim.url}/accounts/{account}/{route}",
        headers=BEARER if headers is None else headers,
        params=params,
        timeout=10,
    )


def rows_of(response: requests.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = json.loads(response.text, parse_float=Decimal)
    assert body["success"] is True
    assert isinstance(body["result"], list)
    return body["result"]


def error_codes(response: requests.Response) -> list[int]:
    body = response.json()
    assert body["success"] is False
    assert body["result"] is None
    assert body["messages"] == []
    return [e["code"] for e in body["errors"]]


def control(sim: CloudflareSimulator, method: str, endpoint: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{sim.base_url}/__sim/{endpoint}", json=body, timeout=10)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def ts(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


# ------------------------------------------------------------------ envelope, headers, routes


def test_envelope_headers_and_keep_alive(sim):
    response = get(sim)
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert re.fullmatch(r'"default";r=\d+;t=\d+', response.headers["Ratelimit"])
    assert re.fullmatch(r'"default";q=\d+;w=\d+', response.headers["Ratelimit-Policy"])
    assert list(response.json()) == ["success", "errors", "messages", "result"]

    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    path = f"/client/v4/accounts/{STANDARD_ACCOUNT}/billable-usage"
    sockets = []
    for _ in range(3):
        connection.request("GET", path, headers=BEARER)
        answer = connection.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["success"] is True
        sockets.append(connection.sock)
    first_socket = sockets[0]
    assert first_socket is not None and all(s is first_socket for s in sockets)  # one TCP connection
    connection.request("GET", "/client/v4/nowhere")  # errors keep the connection open too
    answer = connection.getresponse()
    assert answer.status == 404 and json.loads(answer.read())["errors"][0]["code"] == 7000
    assert connection.sock is first_socket
    connection.close()


def test_each_usage_path_answers_in_its_era_shape(sim):
    older = {route: get(sim, route=route).content for route in ("billing/usage/paygo", "paygo-usage")}
    assert len(set(older.values())) == 1
    old_rows, rows = rows_of(get(sim, route="paygo-usage")), rows_of(get(sim))
    assert len(rows) == len(old_rows) == 6 * 4  # 2025-03-14..19, 4 services
    assert all(list(r) == list(PAYGO_USAGE_COLUMNS) for r in old_rows)
    assert all(list(r) == list(BILLABLE_USAGE_COLUMNS) for r in rows)
    for old, new in zip(old_rows, rows, strict=True):
        assert {k: new[k] for k in PAYGO_USAGE_COLUMNS} == old


def test_info_endpoints(sim):
    for route in ("billable-usage/info", "paygo-usage-info"):
        body = get(sim, route=route).json()
        assert body["success"] is True and body["errors"] == [] and body["messages"] == []
        (subscription,) = body["result"]["subscriptions"]
        assert body["result"]["covered"] is True
        assert subscription["billing_cycle_anchor_timestamp"] == "2025-01-14T00:00:00Z"
        assert subscription["start_timestamp"] == "2025-01-14T00:00:00Z"
        assert "end_timestamp" not in subscription  # omitted while active
        assert re.fullmatch(r"[0-9A-Z]{26}", subscription["id"])
    (cancelled,) = get(sim, CANCELLED_ACCOUNT, "billable-usage/info").json()["result"]["subscriptions"]
    assert cancelled["billing_cycle_anchor_timestamp"] == "2024-03-17T13:45:12Z"
    assert cancelled["end_timestamp"] == "2025-02-20T10:00:00Z"
    focus = get(sim, FOCUS_ACCOUNT, "billable-usage/info").json()["result"]
    anchors = [s["billing_cycle_anchor_timestamp"] for s in focus["subscriptions"]]
    assert anchors == ["2025-06-01T00:00:00Z", "2025-09-20T00:00:00Z"]


def test_unknown_routes(sim):
    response = requests.get(f"{sim.url}/accounts/{STANDARD_ACCOUNT}/no-such-thing", headers=BEARER, timeout=5)
    assert response.status_code == 404 and error_codes(response) == [7000]
    assert response.json()["errors"][0]["message"] == "No route for that URI"
    response = requests.get(f"{sim.base_url}/elsewhere", timeout=5)
    assert response.status_code == 404 and error_codes(response) == [7000]
    response = requests.post(f"{sim.url}/accounts/{STANDARD_ACCOUNT}/billable-usage", headers=BEARER, timeout=5)
    assert response.status_code == 404 and error_codes(response) == [7000]
    for bad_id in ("not-an-account", STANDARD_ACCOUNT.upper(), STANDARD_ACCOUNT[:-1]):
        response = get(sim, bad_id)
        assert response.status_code == 404 and error_codes(response) == [7003]
        message = response.json()["errors"][0]["message"]
        assert message == (
            f"Could not route to /client/v4/accounts/{bad_id}/billable-usage, "
            "perhaps your object identifier is invalid?"
        )


# ------------------------------------------------------------------ auth


def test_auth_errors(sim):
    cases = [
        ({}, 400, 9106),
        ({"X-Auth-Email": SIM_EMAIL}, 400, 9106),
        ({"X-Auth-Key": SIM_GLOBAL_KEY}, 400, 9106),
        ({"Authorization": "Basic Zm9vOmJhcg=="}, 400, 6003),
        ({"Authorization": "Bearer "}, 400, 6003),
        ({"Authorization": "Bearer not-a-known-token"}, 403, 10000),
        ({"X-Auth-Email": SIM_EMAIL, "X-Auth-Key": "wrong-key"}, 403, 10000),
        ({"X-Auth-Email": "other@example.com", "X-Auth-Key": SIM_GLOBAL_KEY}, 403, 10000),
        ({"Authorization": f"Bearer {SIM_TOKEN_NO_BILLING}"}, 403, 9109),
    ]
    for headers, status, code in cases:
        response = get(sim, headers=headers)
        assert (response.status_code, error_codes(response)) == (status, [code]), headers
    messages = {
        9106: "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
        10000: "Authentication error",
        9109: "Unauthorized to access requested resource",
    }
    for code, message in messages.items():
        headers = {9106: {}, 10000: {"Authorization": "Bearer nope"}, 9109: {}}[code]
        if code == 9109:
            headers = {"Authorization": f"Bearer {SIM_TOKEN_NO_BILLING}"}
        assert get(sim, headers=headers).json()["errors"][0]["message"] == message
    # Well-formed but unknown account -> 403 9109, also on info.
    response = get(sim, "0123456789abcdef0123456789abcdef")
    assert (response.status_code, error_codes(response)) == (403, [9109])
    response = get(sim, "0123456789abcdef0123456789abcdef", "billable-usage/info")
    assert (response.status_code, error_codes(response)) == (403, [9109])


def test_legacy_auth_and_added_tokens(sim):
    assert get(sim, headers=LEGACY).content == get(sim).content
    sim.add_token("team-token-1234", billing_read=True)
    sim.add_token("team-token-noperm", billing_read=False)
    assert get(sim, headers={"Authorization": "Bearer team-token-1234"}).status_code == 200
    response = get(sim, headers={"Authorization": "Bearer team-token-noperm"})
    assert (response.status_code, error_codes(response)) == (403, [9109])


# ------------------------------------------------------------------ windows


def test_to_is_inclusive_one_row_per_service_per_day(sim):
    rows = rows_of(get(sim, **{"from": "2025-02-13", "to": "2025-02-16"}))
    assert len(rows) == 4 * 4
    for row in rows:
        start = datetime.fromisoformat(row["ChargePeriodStart"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(row["ChargePeriodEnd"].replace("Z", "+00:00"))
        assert start.time().isoformat() == "00:00:00" and end - start == timedelta(days=1)
        assert list(row) == list(BILLABLE_USAGE_COLUMNS)
        assert row["BillingCurrency"] == "USD"
    assert sorted({r["ChargePeriodStart"] for r in rows}) == [ts(d) for d in days(date(2025, 2, 13), date(2025, 2, 16))]
    services = ACCOUNTS[STANDARD_ACCOUNT].service_names
    assert [(r["ChargePeriodStart"], r["ServiceName"]) for r in rows] == [
        (ts(d), s) for d in days(date(2025, 2, 13), date(2025, 2, 16)) for s in services
    ]
    assert {r["ConsumedUnit"] for r in rows} == {"Requests", "GB-months", "GB", ""}
    assert {r["BillingPeriodStart"] for r in rows} == {"2025-01-14T00:00:00Z", "2025-02-14T00:00:00Z"}


def test_window_capped_at_today_and_before_first_anchor(sim):
    rows = rows_of(get(sim, **{"from": "2025-03-14", "to": "2025-04-30"}))
    assert rows[-1]["ChargePeriodStart"] == "2025-03-19T00:00:00Z"  # nothing for today or later
    rows = rows_of(get(sim, **{"from": "2024-12-01", "to": "2025-01-20"}))
    assert rows[0]["ChargePeriodStart"] == "2025-01-14T00:00:00Z"  # nothing before the anchor
    assert len(rows) == 7 * 4


def test_anchor_day_rule_on_and_off(sim):
    without_anchor_day = {"from": "2025-02-01", "to": "2025-02-10"}
    assert rows_of(get(sim, **without_anchor_day)) == []
    assert rows_of(get(sim, **{"from": "2025-02-14", "to": "2025-02-14"}))  # the anchor day alone
    sim.set_window_rules(False)
    assert len(rows_of(get(sim, **without_anchor_day))) == 10 * 4
    control(sim, "POST", "config", {"enforce_window_rules": True})
    assert rows_of(get(sim, **without_anchor_day)) == []


def test_bad_window_parameters(sim):
    for params in (
        {"from": "2025-02-01"},
        {"to": "2025-02-01"},
        {"from": "2025-2-1", "to": "2025-02-20"},
        {"from": "2025-02-01T00:00:00Z", "to": "2025-02-20"},
        {"from": "2025-02-30", "to": "2025-03-20"},
        {"from": "", "to": "2025-02-20"},
        {"from": "2025-02-20", "to": "2025-02-19"},
    ):
        response = get(sim, **params)
        assert (response.status_code, error_codes(response)) == (400, [1183]), params
        assert response.json()["errors"][0]["message"] == "Invalid request parameters"


def test_default_window_is_current_period_to_date(sim):
    rows = rows_of(get(sim))
    assert {r["BillingPeriodStart"] for r in rows} == {"2025-03-14T00:00:00Z"}
    assert rows[0]["ChargePeriodStart"] == "2025-03-14T00:00:00Z"
    assert rows[-1]["ChargePeriodStart"] == "2025-03-19T00:00:00Z"
    sim.set_today(date(2025, 3, 14))  # first day of a period: nothing yet
    assert rows_of(get(sim)) == []
    sim.set_today(date(2025, 3, 13))  # last day of the previous period
    rows = rows_of(get(sim))
    assert {r["BillingPeriodStart"] for r in rows} == {"2025-02-14T00:00:00Z"}
    assert len(rows) == 27 * 4  # Feb 14 .. Mar 12
    sim.set_today(date(2024, 12, 1))  # before the account's first anchor
    assert rows_of(get(sim)) == []


# ------------------------------------------------------------------ values


def test_costs_are_exact_and_cumulated_columns_reconcile(sim):
    response = get(sim, **{"from": "2025-01-14", "to": "2025-03-19"})
    rows = rows_of(response)
    assert len(rows) == len(days(date(2025, 1, 14), date(2025, 3, 19))) * 4
    prices = {s.name: s for s in ACCOUNTS[STANDARD_ACCOUNT].services}
    running: dict[tuple[str, str], tuple[Decimal, int]] = defaultdict(lambda: (Decimal(0), 0))
    restarts = set()
    for row in rows:
        for column in ("ConsumedQuantity", "PricingQuantity", "CumulatedPricingQuantity"):
            assert type(row[column]) is int
        for column in ("ContractedCost", "CumulatedContractedCost"):
            assert isinstance(row[column], Decimal) and row[column].as_tuple().exponent >= -6
        service = prices[row["ServiceName"]]
        assert row["PricingQuantity"] == max(0, row["ConsumedQuantity"] - service.included_daily)
        expected_cost = (service.unit_price * row["PricingQuantity"]).quantize(Decimal("0.000001"))
        assert row["ContractedCost"] == expected_cost
        key = (row["BillingPeriodStart"], row["ServiceName"])
        if key not in running:
            restarts.add(row["ChargePeriodStart"])
            assert row["ChargePeriodStart"] == row["BillingPeriodStart"]
        cost, quantity = running[key]
        running[key] = (cost + row["ContractedCost"], quantity + row["PricingQuantity"])
        assert row["CumulatedContractedCost"] == running[key][0]
        assert row["CumulatedPricingQuantity"] == running[key][1]
    assert restarts == {"2025-01-14T00:00:00Z", "2025-02-14T00:00:00Z", "2025-03-14T00:00:00Z"}
    # The JSON literals are the exact decimals: no float noise such as 0.30000000000000004.
    for literal in re.findall(rb'"(?:Cumulated)?ContractedCost":([^,}]+)', response.content):
        assert re.fullmatch(rb"\d+\.\d{1,6}", literal), literal
    # One quantization actually rounds (Load Balancing has a 7-place unit price).
    assert any(prices[r["ServiceName"]].unit_price * r["PricingQuantity"] != r["ContractedCost"] for r in rows)


def test_cumulated_values_do_not_depend_on_the_window(sim):
    full = {
        (r["ChargePeriodStart"], r["ServiceName"]): r
        for r in rows_of(get(sim, **{"from": "2025-01-14", "to": "2025-02-28"}))
    }
    part = rows_of(get(sim, **{"from": "2025-02-10", "to": "2025-02-15"}))  # starts mid-period
    assert len(part) == 6 * 4
    for row in part:
        assert row == full[(row["ChargePeriodStart"], row["ServiceName"])]


def test_data_is_deterministic_across_instances(sim):
    with CloudflareSimulator(today=TODAY) as other:
        assert (
            get(other, **{"from": "2025-01-14", "to": "2025-02-14"}).content
            == get(sim, **{"from": "2025-01-14", "to": "2025-02-14"}).content
        )


def test_anchor_31_periods_clamp_in_short_months(sim):
    sim.set_today(date(2025, 6, 1))
    sim.set_window_rules(False)
    rows = rows_of(get(sim, ANCHOR31_ACCOUNT, **{"from": "2024-01-31", "to": "2025-05-31"}))
    period_of = {r["ChargePeriodStart"][:10]: r["BillingPeriodStart"] for r in rows}
    expected = {
        "2024-02-28": "2024-01-31",
        "2024-02-29": "2024-02-29",  # leap year: clamped to the 29th
        "2024-03-30": "2024-02-29",
        "2024-03-31": "2024-03-31",  # back to the 31st: computed from the anchor, not chained
        "2024-04-30": "2024-04-30",
        "2024-05-30": "2024-04-30",
        "2024-05-31": "2024-05-31",
        "2025-02-27": "2025-01-31",
        "2025-02-28": "2025-02-28",  # non-leap year: clamped to the 28th
        "2025-03-30": "2025-02-28",
        "2025-03-31": "2025-03-31",
    }
    for day, period_start in expected.items():
        assert period_of[day] == ts(date.fromisoformat(period_start)), day
    sim.set_window_rules(True)
    assert rows_of(get(sim, ANCHOR31_ACCOUNT, **{"from": "2025-02-01", "to": "2025-02-28"}))
    assert rows_of(get(sim, ANCHOR31_ACCOUNT, **{"from": "2025-02-01", "to": "2025-02-27"})) == []
    assert rows_of(get(sim, ANCHOR31_ACCOUNT, **{"from": "2025-04-30", "to": "2025-04-30"}))
    assert billing_period(date(2024, 1, 31), date(2024, 2, 29)) == (date(2024, 2, 29), date(2024, 3, 31))
    assert billing_period_start(date(2024, 1, 31), date(2024, 2, 28)) == date(2024, 1, 31)
    assert billing_period_start(date(2025, 1, 14), date(2025, 1, 13)) == date(2024, 12, 14)


def test_focus_account_columns(sim):
    sim.set_today(date(2025, 10, 5))
    rows = rows_of(get(sim, FOCUS_ACCOUNT, **{"from": "2025-05-25", "to": "2025-06-02"}))
    assert len(rows) == 2 * 3  # usage starts at the first subscription's anchor
    subscription_id = ACCOUNTS[FOCUS_ACCOUNT].subscriptions[0].id
    for row in rows:
        assert list(row) == list(BILLABLE_USAGE_COLUMNS)
        assert row["BilledCost"] == row["EffectiveCost"] == row["ListCost"] == row["ContractedCost"]
        assert row["BillingAccountId"] == FOCUS_ACCOUNT
        assert row["ChargeCategory"] == "Usage"
        assert row["BillingAccountName"] is None and row["ChargeClass"] is None
        assert row["ZoneId"] is None and row["ZoneName"] is None
        assert row["SubscriptionId"] == subscription_id
        assert row["PricingUnit"] and row["HostProviderName"] == "Cloudflare, Inc."
    assert {r["PricingUnit"] for r in rows} == {"Requests", "GB-months", "Count"}  # Images: implicit unit
    # Periods follow the first subscription (day 1), not the second (day 20).
    rows = rows_of(get(sim, FOCUS_ACCOUNT))
    assert {r["BillingPeriodStart"] for r in rows} == {"2025-10-01T00:00:00Z"}
    assert rows_of(get(sim, FOCUS_ACCOUNT, **{"from": "2025-09-18", "to": "2025-09-25"})) == []


def test_empty_account(sim):
    sim.set_today(date(2025, 9, 1))
    sim.set_window_rules(False)
    assert rows_of(get(sim, EMPTY_ACCOUNT)) == []
    assert rows_of(get(sim, EMPTY_ACCOUNT, **{"from": "2025-03-01", "to": "2025-08-31"})) == []
    assert get(sim, EMPTY_ACCOUNT, "billable-usage/info").json()["result"]["covered"] is True


def test_large_account_zone_rows(sim):
    sim.set_large_zones(3)
    window = {"from": "2025-01-01", "to": "2025-01-31"}
    rows = rows_of(get(sim, LARGE_ACCOUNT, **window))
    assert len(rows) == 3 * 4 * 31
    assert list(rows[0]) == list(BILLABLE_USAGE_COLUMNS)
    assert all(re.fullmatch(r"[0-9a-f]{32}", r["ZoneId"]) for r in rows)
    assert len({r["ZoneId"] for r in rows}) == 3
    keys = [(r["ChargePeriodStart"], r["ServiceName"], r["ZoneId"]) for r in rows]
    assert keys == sorted(keys)
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in rows:
        totals[row["ServiceName"], row["ZoneId"]] += row["ContractedCost"]
        assert row["CumulatedContractedCost"] == totals[row["ServiceName"], row["ZoneId"]]
    # Zone count is configurable over HTTP too, and the first zones keep their ids.
    assert control(sim, "POST", "config", {"large_zones": 25}).json()["large_zones"] == 25
    more = rows_of(get(sim, LARGE_ACCOUNT, **window))
    assert len(more) == 25 * 4 * 31
    assert {r["ZoneId"] for r in rows} <= {r["ZoneId"] for r in more}
    assert large_zones_for(1_000_000) * 4 * 31 >= 1_000_000
    assert large_zones_for(1_000) * 4 * 31 < 1_200


# ------------------------------------------------------------------ faults


def test_fault_rate_limit_and_block(sim):
    sim.add_fault("rate_limit", times=1, retry_after=2)
    response = get(sim)
    assert (response.status_code, error_codes(response)) == (429, [971])
    assert response.headers["Retry-After"] == "2"
    assert "Ratelimit" in response.headers
    assert get(sim).status_code == 200  # times=1: used up

    sim.add_fault("rate_limit", times=1, retry_after=30, retry_after_http_date=True)
    before = datetime.now(timezone.utc).replace(microsecond=0)  # an HTTP date has whole seconds
    response = get(sim)
    after = datetime.now(timezone.utc)
    when = parsedate_to_datetime(response.headers["Retry-After"])
    # 30 s from the moment of the answer, bracketed by clock readings taken around the request.
    assert (when - before).total_seconds() >= 30 and (when - after).total_seconds() <= 30

    sim.add_fault("block", times=1)
    response = get(sim)
    assert response.status_code == 429 and response.headers["Retry-After"] == "300"


def test_fault_server_error_is_html(sim):
    for status in (500, 502, 503, 504):
        sim.add_fault("server_error", times=1, status=status)
        response = get(sim)
        assert response.status_code == status
        assert response.headers["Content-Type"] == "text/html"
        assert f"<title>{status} " in response.text and "cloudflare" in response.text
    sim.add_fault("server_error", times=1)
    assert get(sim).status_code == 502


def test_fault_slow_and_body_delay(sim):
    sim.add_fault("slow", times=1, delay=0.3)
    started = time.monotonic()
    assert rows_of(get(sim))
    assert time.monotonic() - started >= 0.3
    # Headers first, then the body after the delay: reading the body alone takes most of the delay (a lower
    # bound: a loaded machine only makes it longer; with the delay before the headers it would be ~0).
    sim.add_fault("slow", times=1, body_delay=2)
    response = requests.get(
        f"{sim.url}/accounts/{STANDARD_ACCOUNT}/billable-usage", headers=BEARER, stream=True, timeout=30
    )
    headers_at = time.monotonic()
    body = response.content
    assert time.monotonic() - headers_at >= 1.0
    assert json.loads(body)["success"] is True
    sim.add_fault("slow", times=1, delay=2)
    with pytest.raises(requests.Timeout):
        requests.get(f"{sim.url}/accounts/{STANDARD_ACCOUNT}/billable-usage", headers=BEARER, timeout=0.3)


def test_fault_success_false_null_and_wrong_type(sim):
    sim.add_fault("success_false", times=1)
    response = get(sim)
    assert (response.status_code, error_codes(response)) == (200, [1000])
    sim.add_fault("null_result", times=2)
    assert get(sim).json() == {"success": True, "errors": [], "messages": [], "result": None}
    assert get(sim, route="billable-usage/info").json()["result"] is None
    sim.add_fault("wrong_type_result", times=2)
    assert isinstance(get(sim).json()["result"], dict)
    assert isinstance(get(sim, route="billable-usage/info").json()["result"], list)
    assert rows_of(get(sim))


def test_fault_truncated_and_reset(sim):
    sim.add_fault("truncated", times=1)
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    connection.request("GET", f"/client/v4/accounts/{STANDARD_ACCOUNT}/billable-usage", headers=BEARER)
    answer = connection.getresponse()
    full_length = int(answer.getheader("Content-Length"))
    assert answer.status == 200
    with pytest.raises(http.client.IncompleteRead) as excinfo:
        answer.read()
    assert len(excinfo.value.partial) == full_length // 2
    connection.close()
    sim.add_fault("truncated", times=1)
    with pytest.raises(requests.RequestException):
        get(sim)

    sim.add_fault("reset", times=1)
    with pytest.raises(requests.ConnectionError):
        get(sim)
    assert sim.requests[-1]["status"] is None and sim.requests[-1]["fault"] == "reset"
    assert get(sim).status_code == 200


def test_row_faults(sim):
    sim.add_fault("missing_column", column="CumulatedContractedCost", times=1)
    assert all("CumulatedContractedCost" not in r for r in rows_of(get(sim)))
    sim.add_fault("null_column", column="ConsumedUnit", times=1)
    assert {r["ConsumedUnit"] for r in rows_of(get(sim))} == {None}
    sim.add_fault("extra_columns", times=1)
    row = rows_of(get(sim))[0]
    assert list(row)[:27] == list(BILLABLE_USAGE_COLUMNS) and "x_FutureColumn" in row
    odd = {"x_Region": "weur", "x_Tags": {"team": "it's {finops}"}, "x_Note": 'back\\slash "q" \u00e9'}
    sim.add_fault("extra_columns", times=1, columns=odd)
    row = rows_of(get(sim))[0]
    assert {name: row[name] for name in odd} == odd

    plain = rows_of(get(sim))
    sim.add_fault("numbers_as_strings", times=1)
    stringly = rows_of(get(sim))
    for before, after in zip(plain, stringly, strict=True):
        for column in ("ConsumedQuantity", "PricingQuantity", "ContractedCost", "CumulatedPricingQuantity"):
            assert isinstance(after[column], str) and Decimal(after[column]) == before[column]
        assert after["ServiceName"] == before["ServiceName"]
    assert rows_of(get(sim)) == plain  # every row fault above was used up


def test_path_moved_and_info_faults(sim):
    sim.add_fault("path_moved")
    response = get(sim, route="billing/usage/paygo")
    assert response.status_code == 404 and error_codes(response) == [7003, 7000]
    assert get(sim, route="paygo-usage").status_code == 200
    assert get(sim, route="billable-usage").status_code == 200
    sim.clear_faults()
    sim.add_fault("path_moved", also_interim=True, code=7000)
    for route in ("billing/usage/paygo", "paygo-usage", "paygo-usage-info"):
        response = get(sim, route=route)
        assert response.status_code == 404 and error_codes(response) == [7000], route
    assert get(sim, route="billable-usage").status_code == 200
    assert get(sim, route="billable-usage/info").status_code == 200
    sim.add_fault("path_moved", also_current=True)
    assert get(sim, route="billable-usage").status_code == 404
    sim.clear_faults()

    sim.add_fault("info_unavailable")
    for route in ("billable-usage/info", "paygo-usage-info"):
        response = get(sim, route=route)
        assert response.status_code == 404 and error_codes(response) == [7000]
    assert get(sim).status_code == 200
    sim.clear_faults()
    sim.add_fault("not_covered")
    assert get(sim, route="billable-usage/info").json()["result"] == {"covered": False, "subscriptions": []}


def test_fault_scoping_order_and_http_control(sim):
    sim.add_fault("server_error", account_id=ANCHOR31_ACCOUNT)
    assert get(sim).status_code == 200
    assert get(sim, ANCHOR31_ACCOUNT).status_code == 502
    sim.clear_faults()
    sim.add_fault("server_error", path="/paygo-usage")
    assert get(sim, route="paygo-usage").status_code == 502
    assert get(sim, route="billable-usage").status_code == 200
    sim.clear_faults()

    # Answer-replacing faults apply in the order added; only the one applied is used up.
    sim.add_fault("server_error", times=2, status=503)
    sim.add_fault("rate_limit", times=1)
    assert [get(sim).status_code for _ in range(4)] == [503, 503, 429, 200]

    response = control(sim, "POST", "faults", {"kind": "server_error", "times": 1, "status": 500})
    assert response.status_code == 200 and response.json()["fault"]["times"] == 1
    assert control(sim, "GET", "faults").json()["faults"][0]["kind"] == "server_error"
    # Faults never touch the control endpoints.
    assert control(sim, "GET", "requests").status_code == 200
    assert get(sim).status_code == 500
    control(sim, "POST", "faults", {"kind": "server_error"})
    assert control(sim, "DELETE", "faults").status_code == 200
    assert get(sim).status_code == 200
    assert control(sim, "POST", "faults", {"kind": "no-such-fault"}).status_code == 400
    assert control(sim, "POST", "faults", {"kind": "missing_column"}).status_code == 400
    with pytest.raises(ValueError):
        sim.add_fault("flood")
    with pytest.raises(ValueError):
        sim.add_fault("rate_limit", times=0)


# ------------------------------------------------------------------ rate-limit enforcement


def test_rate_limit_enforcement_blocks_the_credential():
    with CloudflareSimulator(today=TODAY, rate_limit=(3, 60, 1)) as limited:
        remaining = []
        for _ in range(3):
            response = get(limited)
            assert response.status_code == 200
            remaining.append(int(re.search(r"r=(\d+)", response.headers["Ratelimit"]).group(1)))
        assert remaining == [2, 1, 0]
        assert response.headers["Ratelimit-Policy"] == '"default";q=3;w=60'
        response = get(limited)
        assert (response.status_code, error_codes(response)) == (429, [971])
        assert response.headers["Retry-After"] == "1"
        # ALL calls of that credential are blocked, whatever the path...
        assert get(limited, route="billable-usage/info").status_code == 429
        # ...but another credential is not.
        assert get(limited, headers=LEGACY).status_code == 200
        time.sleep(1.05)
        assert get(limited).status_code == 200
        limited.reset()  # rate-limit state is part of reset()
        assert all(get(limited).status_code == 200 for _ in range(3))


# ------------------------------------------------------------------ request log and secrecy


def test_request_log(sim):
    get(sim, **{"from": "2025-02-14", "to": "2025-02-20"})
    get(sim, headers=LEGACY)
    get(sim, headers={})
    get(sim, "not-valid")
    control(sim, "POST", "clock", {"today": "2025-03-21"})
    log = sim.requests
    assert [e["auth"] for e in log] == ["bearer", "legacy", None, "bearer"]
    assert [e["status"] for e in log] == [200, 200, 400, 404]
    first = log[0]
    assert set(first) >= {"method", "path", "query", "account_id", "status", "auth", "time"}
    assert first["method"] == "GET"
    assert first["path"] == f"/client/v4/accounts/{STANDARD_ACCOUNT}/billable-usage"
    assert first["query"] == {"from": "2025-02-14", "to": "2025-02-20"}
    assert first["account_id"] == STANDARD_ACCOUNT and log[3]["account_id"] is None
    assert abs(first["time"] - time.time()) < 60
    assert sim.request_count() == 4
    assert sim.request_count(status=200) == 2
    assert sim.request_count(path_contains="not-valid") == 1
    assert sim.request_count(account_id=STANDARD_ACCOUNT) == 3
    assert control(sim, "GET", "requests").json() == json.loads(json.dumps(log))
    log[0]["status"] = 999  # a copy
    assert sim.requests[0]["status"] == 200
    assert sim.today == date(2025, 3, 21)
    sim.reset()
    assert sim.requests == [] and sim.today == TODAY


SECRETS = (SIM_TOKEN, SIM_TOKEN_NO_BILLING, SIM_GLOBAL_KEY, "sneaky-unknown-token", "my-added-token-xyz")


def _send_secret_laden_requests(target: CloudflareSimulator) -> None:
    target.add_token("my-added-token-xyz")
    get(target)
    get(target, headers={"Authorization": "Bearer sneaky-unknown-token"})
    get(target, headers={"Authorization": f"Bearer {SIM_TOKEN_NO_BILLING}"})
    get(target, headers=LEGACY)
    get(target, headers={"Authorization": "Bearer my-added-token-xyz"})
    # Careless clients putting credentials into the URL must not leak them either.
    get(target, token=SIM_TOKEN)
    get(target, f"{SIM_GLOBAL_KEY}", headers={"Authorization": "Bearer sneaky-unknown-token"})
    get(target, headers={"Authorization": "Bearer sneaky-unknown-token"}, api_key="sneaky-unknown-token")


def test_no_credential_in_log_or_output(capfd):
    with CloudflareSimulator(today=TODAY, quiet=False) as loud:
        _send_secret_laden_requests(loud)
        log_text = json.dumps(loud.requests)
        assert len(loud.requests) == 8
    output = capfd.readouterr()
    assert "billable-usage" in output.err  # it did log the requests...
    for secret in SECRETS:  # ...but never a credential
        assert secret not in log_text
        assert secret not in output.out + output.err
    assert "[REDACTED]" in log_text


# ------------------------------------------------------------------ control API and lifecycle


def test_control_api(sim):
    assert control(sim, "POST", "clock", {"today": "2025-04-01"}).json() == {"today": "2025-04-01"}
    assert control(sim, "GET", "clock").json() == {"today": "2025-04-01"}
    assert {r["BillingPeriodStart"] for r in rows_of(get(sim))} == {"2025-03-14T00:00:00Z"}
    assert control(sim, "POST", "clock", {"today": "April 1st"}).status_code == 400
    config = control(sim, "POST", "config", {"large_zones": 7, "enforce_window_rules": False}).json()
    assert config["large_zones"] == 7 and config["enforce_window_rules"] is False
    assert control(sim, "POST", "config", {"large_zones": 0}).status_code == 400
    # Also reachable under the API prefix, for clients that only know sim.url.
    assert requests.get(f"{sim.url}/__sim/config", timeout=5).json()["large_zones"] == 7
    assert control(sim, "POST", "reset").json()["today"] == TODAY.isoformat()
    assert sim.large_zones == 10 and sim.enforce_window_rules is True
    assert control(sim, "GET", "nothing").status_code == 404
    assert sim.requests == []  # control calls are never logged


def test_lifecycle_and_loopback_only():
    simulator = CloudflareSimulator(today="2025-03-20").start()
    url = simulator.url
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/client/v4", url) and simulator.port > 0
    session = requests.Session()
    assert session.get(f"{url}/accounts/{STANDARD_ACCOUNT}/billable-usage", headers=BEARER, timeout=5).ok
    simulator.stop()
    simulator.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):  # even on the kept-alive connection
        session.get(f"{url}/accounts/{STANDARD_ACCOUNT}/billable-usage", headers=BEARER, timeout=2)
    with pytest.raises(ValueError):
        CloudflareSimulator(host="0.0.0.0")
    with pytest.raises(SystemExit) as excinfo:
        main(["--host", "192.0.2.10"])
    assert excinfo.value.code == 2


def test_cli_serves_until_sigterm():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_cfbilling.testing.simulator",
            "--port",
            "0",
            "--today",
            "2025-02-01",
            "--large-zones",
            "2",
            "--no-window-rules",
            "--rate-limit",
            "100/30/60",
            "--verbose",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/client/v4", url), url
        response = requests.get(
            f"{url}/accounts/{LARGE_ACCOUNT}/billable-usage",
            headers=BEARER,
            params={"from": "2025-01-10", "to": "2025-01-12"},
            timeout=10,
        )
        assert len(response.json()["result"]) == 2 * 4 * 3
        assert response.headers["Ratelimit-Policy"] == '"default";q=100;w=30'
        root = url.removesuffix("/client/v4")
        assert requests.post(f"{root}/__sim/clock", json={"today": "2025-01-05"}, timeout=5).ok
        response = requests.get(f"{url}/accounts/{LARGE_ACCOUNT}/billable-usage", headers=BEARER, timeout=5)
        assert len(response.json()["result"]) == 2 * 4 * 4  # Jan 1..4
        assert requests.get(f"{root}/__sim/requests", timeout=5).json()[-1]["status"] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "billable-usage" in err  # --verbose logs requests...
    assert SIM_TOKEN not in out + err  # ...never the token


# ------------------------------------------------------------------ valid-but-unusual faults, modes


def test_fault_envelope_variant_and_timestamp_style(sim):
    sim.add_fault("envelope_variant", times=1, errors=None, messages=[{"code": 1, "message": "hi"}],
                  result_info={"count": 24})  # fmt: skip
    body = get(sim).json()
    assert body["success"] is True and body["errors"] is None and body["messages"] == [{"code": 1, "message": "hi"}]
    assert body["result_info"] == {"count": 24} and len(body["result"]) == 24
    sim.add_fault("timestamp_style", times=2, style="fractional")
    assert rows_of(get(sim))[0]["ChargePeriodStart"] == "2025-03-14T00:00:00.000Z"
    info = get(sim, route="billable-usage/info").json()["result"]["subscriptions"][0]
    assert info["billing_cycle_anchor_timestamp"] == "2025-01-14T00:00:00.000Z"
    sim.add_fault("timestamp_style", times=1, style="offset")
    assert rows_of(get(sim))[0]["BillingPeriodStart"] == "2025-03-14T00:00:00+00:00"
    with pytest.raises(ValueError):
        sim.add_fault("timestamp_style", style="local")


def test_fault_long_decimals_stay_consistent(sim):
    sim.add_fault("long_decimals", times=1, digits=38)
    rows = rows_of(get(sim, **{"from": "2025-02-14", "to": "2025-03-10"}))
    running: dict[str, Decimal] = defaultdict(Decimal)
    assert any(len(r["ContractedCost"].as_tuple().digits) == 38 for r in rows)
    exact = Context(prec=100)  # the default 28 digits would round the sums
    for row in rows:
        running[row["ServiceName"]] = exact.add(running[row["ServiceName"]], row["ContractedCost"])
        assert row["CumulatedContractedCost"] == running[row["ServiceName"]]
        assert row["BilledCost"] == row["EffectiveCost"] == row["ListCost"] == row["ContractedCost"]
    assert any(Decimal(repr(float(r["ContractedCost"]))) != r["ContractedCost"] for r in rows)  # a float loses digits


def test_fault_huge_integer_and_cost_mismatch(sim):
    sim.add_fault("huge_integer", times=1)
    rows = rows_of(get(sim))
    assert all(r["PricingQuantity"] > 2**63 and r["CumulatedPricingQuantity"] > 2**63 for r in rows)
    sim.add_fault("cost_mismatch", times=1, day="2025-03-16", service="R2 Storage", delta="0.5")
    rows = rows_of(get(sim))
    previous: dict[str, Decimal] = {}
    broken = []
    for row in rows:
        movement = row["CumulatedContractedCost"] - previous.get(row["ServiceName"], Decimal(0))
        previous[row["ServiceName"]] = row["CumulatedContractedCost"]
        if movement != row["ContractedCost"]:
            broken.append((row["ChargePeriodStart"], row["ServiceName"], row["ContractedCost"] - movement))
    assert broken == [("2025-03-16T00:00:00Z", "R2 Storage", Decimal("0.5"))]


def test_path_moved_as_400_and_beta_window_cap(sim):
    sim.add_fault("path_moved", times=1, status=400)
    response = get(sim, route="billing/usage/paygo")
    assert response.status_code == 400 and error_codes(response) == [7003, 7000]
    response = get(sim, route="billing/usage/paygo", **{"from": "2025-01-14", "to": "2025-03-16"})  # 62 days
    assert response.status_code == 200
    response = get(sim, route="billing/usage/paygo", **{"from": "2025-01-14", "to": "2025-03-17"})  # 63 days
    assert (response.status_code, error_codes(response)) == (400, [1183])
    assert get(sim, **{"from": "2025-01-14", "to": "2025-03-17"}).status_code == 200  # documented path: no cap


def test_to_exclusive_mode(sim):
    window = {"from": "2025-02-13", "to": "2025-02-16"}
    assert len(rows_of(get(sim, **window))) == 4 * 4
    sim.set_to_inclusive(False)
    rows = rows_of(get(sim, **window))
    assert len(rows) == 3 * 4 and rows[-1]["ChargePeriodStart"] == "2025-02-15T00:00:00Z"
    assert control(sim, "POST", "config", {"to_inclusive": True}).json()["to_inclusive"] is True
    assert len(rows_of(get(sim, **window))) == 4 * 4


def test_advance_clock_after_n_calls(sim):
    sim.advance_clock_after(2, date(2025, 4, 20), path="billable-usage/info")
    get(sim)  # not counted: another path
    get(sim, route="billable-usage/info")
    assert sim.today == TODAY
    assert {r["BillingPeriodStart"] for r in rows_of(get(sim))} == {"2025-03-14T00:00:00Z"}
    get(sim, route="billable-usage/info")  # the 2nd counted call still sees the old day...
    assert sim.today == date(2025, 4, 20)  # ...then the clock moves by itself
    assert {r["BillingPeriodStart"] for r in rows_of(get(sim))} == {"2025-04-14T00:00:00Z"}
    response = control(sim, "POST", "clock/advance", {"after": 1, "today": "2025-05-01"})
    assert response.json()["clock_advances"] == [{"after": 1, "today": "2025-05-01", "path": None}]
    get(sim)
    assert sim.today == date(2025, 5, 1)


def test_time_of_day_anchors_give_whole_day_periods(sim):
    sim.set_today(date(2025, 3, 20))
    rows = rows_of(get(sim, CANCELLED_ACCOUNT, **{"from": "2025-01-17", "to": "2025-03-19"}))
    assert {r["BillingPeriodStart"] for r in rows} == {"2025-01-17T00:00:00Z", "2025-02-17T00:00:00Z"}
    assert rows[-1]["ChargePeriodStart"] == "2025-02-20T00:00:00Z"  # cancelled on the 20th: no usage after
    from airflow_provider_cfbilling.testing.simulator import ANCHOR29_ACCOUNT

    rows = rows_of(get(sim, ANCHOR29_ACCOUNT, **{"from": "2025-02-27", "to": "2025-03-01"}))
    assert {r["ChargePeriodStart"][:10]: r["BillingPeriodStart"] for r in rows} == {
        "2025-02-27": "2025-01-29T00:00:00Z",
        "2025-02-28": "2025-02-28T00:00:00Z",
        "2025-03-01": "2025-02-28T00:00:00Z",
    }


# ------------------------------------------------------------------ List Accounts


def test_list_accounts_paging_and_token_scopes(sim):
    def listing(headers: dict[str, str] | None = None, **params: Any) -> dict[str, Any]:
        response = requests.get(f"{sim.url}/accounts", headers=headers or BEARER, params=params, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    first = listing()
    assert first["result_info"] == {"page": 1, "per_page": 20, "count": 7, "total_count": 7, "total_pages": 1}
    assert [a["id"] for a in first["result"]] == list(ACCOUNTS)
    record = first["result"][0]
    assert set(record) == {"id", "name", "type", "settings", "created_on"} and record["type"] == "standard"
    generated = sim.add_generated_accounts(100)
    assert len(set(generated)) == 100 and generated[:3] == CloudflareSimulator().add_generated_accounts(3)
    seen = []
    page = 1
    while True:
        body = listing(page=page, per_page=50)
        seen += [a["id"] for a in body["result"]]
        if page >= body["result_info"]["total_pages"]:
            break
        page += 1
    assert seen == list(ACCOUNTS) + generated and page == 3
    assert listing(per_page=500)["result_info"]["per_page"] == 50  # clamped to the documented maximum
    assert rows_of(get(sim, generated[0], **{"from": "2024-01-01", "to": "2024-12-31"}))
    sim.add_token("team-a-token", accounts=generated[:2])
    team = {"Authorization": "Bearer team-a-token"}
    assert [a["id"] for a in listing(team)["result"]] == generated[:2]
    assert get(sim, generated[0], headers=team).status_code == 200
    response = get(sim, STANDARD_ACCOUNT, headers=team)
    assert (response.status_code, error_codes(response)) == (403, [9109])
    sim.add_fault("rate_limit", times=1, path="/accounts")
    assert requests.get(f"{sim.url}/accounts", headers=BEARER, timeout=10).status_code == 429
    assert control(sim, "POST", "accounts", {"generate": 2}).json()["accounts"][0] not in generated


SIMULATOR_IMPORTS = """
import pathlib, sys, sysconfig
before = set(sys.modules)
import airflow_provider_cfbilling.testing.simulator
stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"]).resolve()  # the base interpreter's, even in a venv
package = pathlib.Path(airflow_provider_cfbilling.__file__).resolve().parent
for name in sorted(set(sys.modules) - before):
    path = getattr(sys.modules[name], "__file__", None)
    if path is None:
        continue  # built into the interpreter
    path = pathlib.Path(path).resolve()
    if path.is_relative_to(package) or (path.is_relative_to(stdlib) and "site-packages" not in path.parts):
        continue
    print(name, path)
"""


def test_the_simulator_needs_the_standard_library_only():
    """It runs wherever the provider is installed (``cfbilling-simulator``), with none of the dev or extra
    dependencies, and models the API without borrowing the client's code: a fresh interpreter imports it and
    loads no module from outside the standard library and this package."""
    loaded = subprocess.run([sys.executable, "-c", SIMULATOR_IMPORTS], capture_output=True, text=True, check=True)
    assert loaded.stdout == "", f"the simulator imports modules from outside the standard library:\n{loaded.stdout}"
