"""CloudflareBillingHook against the simulator over real loopback HTTP."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from decimal import Decimal
from typing import Any

import pendulum
import pytest
from conftest import connection_uri_json, fetch_answer

from airflow_provider_cfbilling.exceptions import (
    CloudflareAPIError,
    CloudflareAuthenticationError,
    CloudflareBillingError,
    CloudflareBillingInputError,
    CloudflareConnectionError,
    CloudflareNoBillingCycleError,
    CloudflarePermissionError,
    CloudflareRateLimitError,
    CloudflareResponseError,
    CloudflareRouteNotFoundError,
    CloudflareServerError,
)
from airflow_provider_cfbilling.hooks.billing import USER_AGENT, CloudflareBillingHook
from airflow_provider_cfbilling.testing.simulator import (
    EMPTY_ACCOUNT,
    FOCUS_ACCOUNT,
    SIM_EMAIL,
    SIM_GLOBAL_KEY,
    SIM_TOKEN,
    SIM_TOKEN_NO_BILLING,
    STANDARD_ACCOUNT,
)

BRIEF_FIELDS = [
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
]


def raw_usage(
    sim: Any, account: str, params: dict[str, str] | None = None, route: str = "billable-usage"
) -> list[dict[str, Any]]:
    """What the simulator serves, fetched without the hook (the reference answer), numbers exact."""
    return json.loads(fetch_answer(sim, account, route, **(params or {})), parse_float=Decimal)["result"]


# -- a DAG author's view first -------------------------------------------------------------------


def test_current_period_usage_is_returned_exactly_as_served(sim, cloudflare_conn):
    records = CloudflareBillingHook().get_paygo_usage()

    expected = raw_usage(sim, STANDARD_ACCOUNT)
    assert records == expected
    assert records, "the standard account has usage in its current period"
    assert [list(r) for r in records] == [list(r) for r in expected]  # key order kept
    assert list(records[0])[:11] == BRIEF_FIELDS
    assert sim.requests[-1]["query"] == {}  # no window: the API picks the current period


def test_window_is_sent_as_iso_dates(sim, cloudflare_conn):
    hook = CloudflareBillingHook()
    records = hook.get_paygo_usage(from_="2025-10-14", to="2025-11-13")

    assert sim.requests[-1]["query"] == {"from": "2025-10-14", "to": "2025-11-13"}
    assert records == raw_usage(sim, STANDARD_ACCOUNT, {"from": "2025-10-14", "to": "2025-11-13"})
    assert {r["BillingPeriodStart"] for r in records} == {"2025-10-14T00:00:00Z"}


@pytest.mark.parametrize(
    ("from_", "to"),
    [
        (dt.date(2025, 10, 14), dt.date(2025, 11, 13)),
        (pendulum.datetime(2025, 10, 14, tz="UTC"), pendulum.datetime(2025, 11, 13, 23, 59, tz="UTC")),
        # 20:00 on the 13th in New York is already the 14th in UTC.
        (
            dt.datetime(2025, 10, 13, 20, 0, tzinfo=dt.timezone(dt.timedelta(hours=-4))),
            "2025-11-13T00:00:00Z",
        ),
        (pendulum.date(2025, 10, 14), "2025-11-13"),
    ],
)
def test_window_accepts_dates_datetimes_and_strings(sim, cloudflare_conn, from_, to):
    CloudflareBillingHook().get_paygo_usage(from_=from_, to=to)
    assert sim.requests[-1]["query"] == {"from": "2025-10-14", "to": "2025-11-13"}


def test_account_id_argument_overrides_the_connection(sim, cloudflare_conn):
    assert CloudflareBillingHook().get_paygo_usage(account_id=EMPTY_ACCOUNT) == []
    assert sim.requests[-1]["account_id"] == EMPTY_ACCOUNT


def test_legacy_email_and_global_key(sim, use_conn):
    hook = use_conn(SIM_GLOBAL_KEY, login=SIM_EMAIL)
    records = hook.get_paygo_usage()
    assert sim.requests[-1]["auth"] == "legacy"
    assert records == raw_usage(sim, STANDARD_ACCOUNT)


def test_bearer_token_and_user_agent(sim, cloudflare_conn):
    CloudflareBillingHook().get_paygo_usage()
    assert sim.requests[-1]["auth"] == "bearer"
    assert USER_AGENT.startswith("airflow-provider-cfbilling/0.1.0 ")
    assert sim.requests[-1].get("user_agent") == USER_AGENT


def test_unknown_fields_are_kept(sim, use_conn):
    hook = use_conn(account_id=FOCUS_ACCOUNT)
    records = hook.get_paygo_usage()
    assert records == raw_usage(sim, FOCUS_ACCOUNT)
    assert {"BilledCost", "EffectiveCost", "SubscriptionId", "ZoneName"} <= set(records[0])


def test_billing_info(sim, cloudflare_conn):
    info = CloudflareBillingHook().get_billing_info()
    assert info["covered"] is True
    assert info["subscriptions"][0]["billing_cycle_anchor_timestamp"] == "2025-01-14T00:00:00Z"
    assert "/billable-usage/info" in sim.requests[-1]["path"]


# -- bad input: rejected before any request ------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"from_": "2025-10-01"}, "Only from_ was given"),
        ({"to": "2025-10-01"}, "Only to was given"),
        ({"from_": "2025-11-01", "to": "2025-10-01"}, "is after to"),
        ({"from_": "2025-13-01", "to": "2025-12-01"}, r"^from_='2025-13-01' is not an ISO 8601 date"),
        ({"from_": "2025-10-01", "to": "tomorrow"}, r"^to='tomorrow' is not an ISO 8601 date"),
        ({"from_": "01/10/2025", "to": "2025-12-01"}, r"^from_='01/10/2025' is not an ISO 8601 date"),
        ({"from_": "", "to": "2025-12-01"}, "empty string"),
        ({"from_": dt.datetime(2025, 10, 1), "to": "2025-12-01"}, "naive datetime"),
        ({"from_": "2025-10-01T00:00:00", "to": "2025-12-01"}, "naive datetime"),
        ({"from_": 20251001, "to": "2025-12-01"}, "must be a date"),
        ({"account_id": "023e105f"}, "32 hexadecimal"),
        ({"account_id": "zz3e105f4ecef8ad9ca31a8372d0c353"}, "32 hexadecimal"),
    ],
)
def test_bad_input_is_rejected_before_any_request(sim, cloudflare_conn, kwargs, message):
    with pytest.raises(CloudflareBillingInputError, match=message):
        CloudflareBillingHook().get_paygo_usage(**kwargs)
    assert sim.request_count() == 0


# The connection's bad settings (no credentials, a malformed account id, plain http, a missing connection) are
# tested in test_bad_input.py, with every entry point's bad input.


# -- path moves ----------------------------------------------------------------------------------


def test_one_request_per_call_on_the_documented_path(sim, cloudflare_conn):
    hook = CloudflareBillingHook()
    hook.get_paygo_usage()
    hook.get_billing_info()
    CloudflareBillingHook().get_paygo_usage(from_="2025-10-14", to="2025-11-13")
    assert [r["path"].split(STANDARD_ACCOUNT)[1] for r in sim.requests] == [
        "/billable-usage",
        "/billable-usage/info",
        "/billable-usage",
    ]


@pytest.mark.parametrize("status", [404, 400])
def test_moved_path_falls_back_and_is_remembered_by_the_process(sim, cloudflare_conn, capsys, status):
    """'No route' is known by its codes (7000/7003), whether Cloudflare sends it with 404 or 400."""
    sim.add_fault("path_moved", routes=["billable-usage"], status=status)
    first = CloudflareBillingHook().get_paygo_usage()
    second = CloudflareBillingHook().get_paygo_usage()  # a new hook, as every task builds: same process
    log = capsys.readouterr().out

    paths = [r["path"].split(STANDARD_ACCOUNT)[1] for r in sim.requests]
    statuses = [r["status"] for r in sim.requests]
    sim.clear_faults()
    assert first == second == raw_usage(sim, STANDARD_ACCOUNT, route="paygo-usage")
    assert paths == ["/billable-usage", "/paygo-usage", "/paygo-usage"]  # remembered: no second try
    assert statuses == [status, 200, 200]
    assert log.count("endpoint moved") == 1
    assert "/billable-usage answered 'no route'; using /accounts/{account_id}/paygo-usage" in log


def test_a_configured_path_is_used_as_given_without_guessing(sim, use_conn):
    hook = use_conn(usage_path="/accounts/{account_id}/usage-from-the-future")
    with pytest.raises(CloudflareRouteNotFoundError) as err:
        hook.get_paygo_usage()
    assert [r["path"].rsplit("/", 1)[-1] for r in sim.requests] == ["usage-from-the-future"]
    message = str(err.value)
    assert "configured usage path" in message and "usage_path" in message


def test_a_configured_older_path_is_used(sim, use_conn):
    records = use_conn(usage_path="/accounts/{account_id}/billing/usage/paygo").get_paygo_usage()
    assert [r["path"].split(STANDARD_ACCOUNT)[1] for r in sim.requests] == ["/billing/usage/paygo"]
    assert records == raw_usage(sim, STANDARD_ACCOUNT, route="billing/usage/paygo")


def test_every_path_gone_is_an_actionable_error(sim, cloudflare_conn):
    sim.add_fault("path_moved", also_interim=True, also_current=True)
    with pytest.raises(CloudflareRouteNotFoundError) as err:
        CloudflareBillingHook().get_paygo_usage()
    message = str(err.value)
    assert "HTTP 404" in message and "usage_path" in message and STANDARD_ACCOUNT in message
    assert sim.request_count() == 3  # the three known paths, once each


def test_a_configured_info_path_is_used_as_given_without_guessing(sim, use_conn):
    info = use_conn(info_path="/accounts/{account_id}/paygo-usage-info").get_billing_info()
    assert info["covered"] is True
    assert [r["path"].split(STANDARD_ACCOUNT)[1] for r in sim.requests] == ["/paygo-usage-info"]

    with pytest.raises(CloudflareRouteNotFoundError) as err:
        use_conn(info_path="/accounts/{account_id}/info-from-the-future").get_billing_info()
    assert [r["path"].rsplit("/", 1)[-1] for r in sim.requests[1:]] == ["info-from-the-future"]
    assert "configured info path" in str(err.value) and "info_path" in str(err.value)


def test_a_learned_path_is_remembered_per_connection(sim, cloudflare_conn, monkeypatch):
    """What one connection learned is not assumed for another (it may point at another gateway or token)."""
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_OTHER", connection_uri_json(sim.url, SIM_TOKEN, STANDARD_ACCOUNT))
    sim.add_fault("path_moved", routes=["billable-usage"])
    CloudflareBillingHook().get_paygo_usage()  # cloudflare_default learns /paygo-usage
    CloudflareBillingHook(cloudflare_conn_id="cloudflare_other").get_paygo_usage()
    CloudflareBillingHook().get_paygo_usage()
    paths = [r["path"].split(STANDARD_ACCOUNT)[1] for r in sim.requests]
    assert paths == ["/billable-usage", "/paygo-usage", "/billable-usage", "/paygo-usage", "/paygo-usage"]


def test_info_path_falls_back(sim, cloudflare_conn):
    sim.add_fault("path_moved", routes=["billable-usage/info"])
    info = CloudflareBillingHook().get_billing_info()
    assert info["covered"] is True
    assert sim.requests[-1]["path"].endswith("/paygo-usage-info")


# -- API errors ----------------------------------------------------------------------------------


def test_wrong_token(sim, use_conn):
    with pytest.raises(CloudflareAuthenticationError) as err:
        use_conn(token="cfsim-this-token-does-not-exist").get_paygo_usage()
    message = str(err.value)
    assert "HTTP 403" in message and "10000" in message and "wrong or expired" in message
    assert STANDARD_ACCOUNT in message and "/billable-usage" in message
    assert sim.request_count() == 1  # not retried


def test_token_without_billing_read(sim, use_conn):
    with pytest.raises(CloudflarePermissionError, match="Billing Read") as err:
        use_conn(token=SIM_TOKEN_NO_BILLING).get_paygo_usage()
    assert "9109" in str(err.value)
    assert sim.request_count() == 1


def test_success_false_on_200(sim, cloudflare_conn):
    sim.add_fault("success_false")
    with pytest.raises(CloudflareAPIError, match="success: false on HTTP 200") as err:
        CloudflareBillingHook().get_paygo_usage()
    assert (err.value.status, err.value.account_id) == (200, STANDARD_ACCOUNT)
    assert str(err.value).endswith("). Cloudflare reported success: false on HTTP 200; no data was used. Retry later.")


@pytest.mark.parametrize("kind", ["null_result", "wrong_type_result"])
def test_result_of_the_wrong_type_is_an_error_not_an_empty_list(sim, cloudflare_conn, kind):
    sim.add_fault(kind)
    with pytest.raises(CloudflareResponseError, match="not a list of records"):
        CloudflareBillingHook().get_paygo_usage()


def test_bad_parameters_from_the_api_are_not_retried(sim, use_conn):
    hook = use_conn()
    with pytest.raises(CloudflareAPIError, match="1183"):
        # Bypass client-side validation to see the server's answer mapped.
        hook._get("usage", STANDARD_ACCOUNT, {"from": "2025-10-01"})
    assert sim.request_count() == 1


# -- retries -------------------------------------------------------------------------------------


def test_short_429_is_retried_after_retry_after(sim, cloudflare_conn):
    sim.add_fault("rate_limit", times=2, retry_after=1)
    started = time.monotonic()
    records = CloudflareBillingHook().get_paygo_usage()
    elapsed = time.monotonic() - started
    assert records == raw_usage(sim, STANDARD_ACCOUNT)
    assert [r["status"] for r in sim.requests[:3]] == [429, 429, 200]
    assert elapsed >= 2.0  # Retry-After honoured each time


def test_retry_after_as_http_date(sim, cloudflare_conn):
    sim.add_fault("rate_limit", times=1, retry_after=2, retry_after_http_date=True)
    started = time.monotonic()
    CloudflareBillingHook().get_paygo_usage()
    assert time.monotonic() - started >= 0.5
    assert [r["status"] for r in sim.requests[:2]] == [429, 200]


def test_long_429_raises_at_once_with_the_wait(sim, cloudflare_conn):
    sim.add_fault("block")
    with pytest.raises(CloudflareRateLimitError) as err:
        CloudflareBillingHook().get_paygo_usage()
    assert 290 <= err.value.retry_after <= 300
    assert "wait 300 s" in str(err.value) or "wait 299 s" in str(err.value)
    assert sim.request_count() == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_html_pages_are_retried(sim, cloudflare_conn, status, capsys):
    sim.add_fault("server_error", times=2, status=status)
    assert CloudflareBillingHook().get_paygo_usage() == raw_usage(sim, STANDARD_ACCOUNT)
    assert [r["status"] for r in sim.requests[:3]] == [status, status, 200]
    warnings = re.findall(
        rf"\] Cloudflare call failed \(attempt (\d)\): Cloudflare API returned HTTP {status} for account "
        rf"{STANDARD_ACCOUNT} on /accounts/{STANDARD_ACCOUNT}/billable-usage .*cloudflarestatus\.com\. "
        r"Retrying in (\d+\.\d) s\. \[",
        capsys.readouterr().out,
    )
    # Each retry says what failed (the API's status, for whose account) and when it tries again: the backoff
    # starts at 0.5 s.
    assert [attempt for attempt, _ in warnings] == ["1", "2"]
    assert all(float(sleep) >= 0.5 for _, sleep in warnings), warnings


def test_persistent_5xx_gives_up_within_the_retry_budget(sim, use_conn):
    sim.add_fault("server_error", status=502)
    hook = use_conn(max_retry_wait=3)
    with pytest.raises(CloudflareServerError, match="HTTP 502") as err:
        hook.get_paygo_usage()
    # Backoff from 0.5 s doubling within a 3 s budget leaves room for a handful of attempts at most (a slow
    # machine only makes fewer): counted at the API, not timed.
    assert 2 <= sim.request_count() <= 5
    assert "retried" in str(err.value)


def test_connection_reset_and_truncated_body_are_retried(sim, cloudflare_conn):
    sim.add_fault("reset", times=1)
    sim.add_fault("truncated", times=1)
    assert CloudflareBillingHook().get_paygo_usage() == raw_usage(sim, STANDARD_ACCOUNT)


def test_persistent_truncation_is_an_error_never_an_empty_list(sim, use_conn):
    sim.add_fault("truncated")
    with pytest.raises(CloudflareConnectionError, match="Could not reach"):
        use_conn(max_retry_wait=1).get_paygo_usage()


def test_read_timeout_is_bounded(sim, use_conn):
    sim.add_fault("slow", delay=3)
    hook = use_conn(timeout=0.5, max_retry_wait=1)
    with pytest.raises(CloudflareConnectionError, match="ReadTimeout"):
        hook.get_paygo_usage()
    assert 1 <= sim.request_count() <= 3  # a 1 s retry budget: the timed-out call is retried once or twice


def test_unreachable_host_is_a_connection_error(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_DEFAULT",
        connection_uri_json("http://127.0.0.1:9/client/v4", SIM_TOKEN, STANDARD_ACCOUNT, max_retry_wait=1),
    )
    with pytest.raises(CloudflareConnectionError, match=r"127\.0\.0\.1:9"):
        CloudflareBillingHook().get_paygo_usage()


# -- test_connection -----------------------------------------------------------------------------


def test_test_connection_ok(sim, cloudflare_conn):
    ok, message = CloudflareBillingHook().test_connection()
    assert ok, message
    assert message == f"Connected to {sim.url}: billing of account {STANDARD_ACCOUNT} is readable (1 subscription(s))."
    assert sim.request_count() == 1


@pytest.mark.parametrize(
    ("token", "expected"), [("cfsim-wrong", "wrong or expired"), (SIM_TOKEN_NO_BILLING, "Billing Read")]
)
def test_test_connection_failure_is_actionable(sim, use_conn, token, expected):
    ok, message = use_conn(token=token).test_connection()
    assert not ok
    assert expected in message


def test_test_connection_without_account(sim, use_conn):
    ok, message = use_conn(account_id=None).test_connection()
    assert not ok and "account_id" in message
    assert sim.request_count() == 0


# -- secrets -------------------------------------------------------------------------------------

CANARY = "cfcanary-7f3a9c1e5b2d48f6a0e1c3b5d7f9a2c4"


def test_canary_token_never_leaks(sim, use_conn, caplog, capsys):
    """Run the hook over every path, failures included, and look for the token everywhere."""
    from airflow.sdk.log import mask_secret  # noqa: F401  (the hook registers the token with it)

    sim.add_token(CANARY, billing_read=True)
    seen: list[str] = []
    hook = use_conn(token=CANARY, max_retry_wait=1, timeout=1)
    scenarios: list[tuple[str, dict[str, Any]]] = [
        ("", {}),
        ("path_moved", {}),
        ("rate_limit", {"times": 1, "retry_after": 0}),
        ("block", {}),
        ("server_error", {"status": 502}),
        ("success_false", {}),
        ("truncated", {}),
        ("wrong_type_result", {}),
        ("reset", {}),
    ]
    assert repr(hook) == "CloudflareBillingHook(cloudflare_conn_id='cloudflare_default')"  # what a log line shows
    with caplog.at_level(logging.DEBUG):
        seen.append(repr(hook))
        seen.append(repr(hook.settings))
        for kind, params in scenarios:
            sim.clear_faults()
            if kind:
                sim.add_fault(kind, **params)
            try:
                seen.append(json.dumps(hook.get_paygo_usage(), default=str))
                seen.append(json.dumps(hook.get_billing_info()))
            except CloudflareBillingError as exc:
                seen.append(str(exc))
                seen.append(repr(exc))
        sim.clear_faults()
        seen.append(str(hook.test_connection()))
        for bad in (CANARY + "-revoked", ""):
            try:
                use_conn(token=bad).get_paygo_usage()
            except CloudflareBillingError as exc:
                seen.append(str(exc))
    out = capsys.readouterr()
    seen += [out.out, out.err, caplog.text, json.dumps(sim.requests)]
    leaks = [text for text in seen if CANARY in text]
    assert not leaks


# -- large answers, spooled ---------------------------------------------------------------------


def test_download_gives_the_same_records_without_holding_them(sim, cloudflare_conn, tmp_path):
    hook = CloudflareBillingHook()
    in_memory = hook.get_paygo_usage(from_="2025-09-14", to="2025-10-13")
    with hook.download_paygo_usage(from_="2025-09-14", to="2025-10-13", directory=str(tmp_path)) as spooled:
        assert len(spooled) == len(in_memory) > 100
        assert list(spooled) == in_memory  # same values, same order...
        assert [list(r) for r in spooled] == [list(r) for r in in_memory]  # ...same key order, on every pass
        assert len(list(tmp_path.iterdir())) == 1
    assert list(tmp_path.iterdir()) == []  # closing removes the spool file


def test_download_retries_a_truncated_body_and_keeps_no_partial_spool(sim, cloudflare_conn, tmp_path):
    sim.add_fault("truncated", times=1)
    with CloudflareBillingHook().download_paygo_usage(directory=str(tmp_path)) as spooled:
        assert list(spooled) == raw_usage(sim, STANDARD_ACCOUNT)
        assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("success_false", CloudflareAPIError, "success: false on HTTP 200"),
        ("null_result", CloudflareResponseError, "'result' of type null"),
        ("wrong_type_result", CloudflareResponseError, "'result' of type object"),
        ("truncated", CloudflareConnectionError, "Could not reach"),
    ],
)
def test_download_errors_match_the_in_memory_call_and_leave_nothing(sim, use_conn, tmp_path, kind, error, message):
    sim.add_fault(kind)
    hook = use_conn(max_retry_wait=0)
    with pytest.raises(error, match=message):
        hook.get_paygo_usage()
    with pytest.raises(error, match=message):
        hook.download_paygo_usage(directory=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_extras_saved_empty_by_the_connection_form_mean_the_defaults(sim, use_conn):
    # What Airflow's connection form saves when only the token and the account id are filled in.
    empty = dict.fromkeys(("timeout", "max_retry_wait", "usage_path", "info_path", "verify", "allow_insecure_http"))
    hook = use_conn(**empty)
    assert (hook.settings.timeout, hook.settings.max_retry_wait, hook.settings.verify) == (30.0, 60.0, True)
    assert hook.test_connection()[0] is True
    blank = use_conn(**dict.fromkeys(empty, ""))
    assert blank.get_paygo_usage() == raw_usage(sim, STANDARD_ACCOUNT)


def test_test_connection_does_not_name_the_temporary_connection_id(sim, use_conn):
    ok, message = use_conn(account_id="NOT-A-HEX-ID").test_connection()
    assert not ok
    assert "this connection extra 'account_id' (the form's 'Account ID' field)" in message
    assert "cloudflare_default" not in message and "'NOT-A-HEX-ID'" in message
    assert sim.request_count() == 0


# -- List Accounts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "state"),
    [
        ({"covered": True, "subscriptions": []}, "lists no subscription"),
        (
            {
                "covered": False,
                "subscriptions": [{"id": "SUB", "billing_cycle_anchor_timestamp": "2025-01-14T00:00:00Z"}],
            },
            "is not covered (covered: false)",
        ),
    ],
    ids=["covered-without-subscriptions", "not-covered-with-a-subscription"],
)
def test_billing_info_without_a_usable_cycle_places_no_period(sim, use_conn, info, state):
    sim.add_fault("canned_result", routes=["billable-usage/info"], result=info)
    with pytest.raises(CloudflareNoBillingCycleError) as err:
        use_conn().get_billing_period(at="2025-11-20")
    assert str(err.value) == (
        f"Cloudflare's billing info for account {STANDARD_ACCOUNT} {state}: there is no billing-cycle anchor to "
        "place 2025-11-20T00:00:00+00:00 in a billing period. Check that the account is a self-serve (PayGo) "
        "account whose token may read its billing; or fetch a window of dates (from_ and to) instead."
    )


def test_a_bad_instant_for_the_billing_period_is_named_before_any_request(sim, use_conn):
    with pytest.raises(CloudflareBillingInputError, match=r"^at='soon' is not "):
        use_conn().get_billing_period(at="soon")
    assert sim.request_count() == 0


def test_list_accounts_reads_every_page(sim, use_conn):
    generated = sim.add_generated_accounts(120)
    token = "cfsim-list-accounts-paging"
    sim.add_token(token, accounts=generated)
    accounts = use_conn(token).list_accounts()

    assert accounts == [{"id": a.account_id, "name": a.name} for a in sim.accounts() if a.account_id in generated]
    assert [a["id"] for a in accounts] == generated  # the API's order, each once
    pages = [r["query"] for r in sim.requests if r["path"].endswith("/accounts")]
    assert pages == [{"page": str(n), "per_page": "50"} for n in (1, 2, 3)]


def test_list_accounts_returns_only_what_the_token_sees(sim, use_conn):
    token = "cfsim-list-accounts-subset"
    sim.add_token(token, accounts=[FOCUS_ACCOUNT, STANDARD_ACCOUNT])
    ids = [a["id"] for a in use_conn(token).list_accounts()]
    assert ids == [a.account_id for a in sim.accounts() if a.account_id in (STANDARD_ACCOUNT, FOCUS_ACCOUNT)]
    # The default token sees every account, the catalogue's and the generated ones alike.
    assert [a["id"] for a in use_conn().list_accounts()] == [a.account_id for a in sim.accounts()]


def test_list_accounts_stops_at_the_page_count_even_after_a_full_page(sim, use_conn):
    generated = sim.add_generated_accounts(100)  # two full pages: the count, not the page size, ends it
    token = "cfsim-list-accounts-two-full-pages"
    sim.add_token(token, accounts=generated)
    assert [a["id"] for a in use_conn(token).list_accounts()] == generated
    assert sim.request_count(path_contains="/accounts") == 2


@pytest.mark.parametrize(
    ("result", "kind"),
    [
        ([{"id": FOCUS_ACCOUNT, "name": "a"}, "not an account"], "array"),
        ([{"name": "no id"}], "array"),
        ([{"id": 7}], "array"),
        ({"id": FOCUS_ACCOUNT}, "object"),
        (None, "null"),
    ],
    ids=["a-string-item", "an-item-without-id", "a-numeric-id", "an-object", "null"],
)
def test_list_accounts_refuses_a_result_that_is_not_a_list_of_accounts(sim, use_conn, result, kind):
    sim.add_fault("canned_result", routes=["accounts"], result=result)
    with pytest.raises(CloudflareResponseError) as err:
        use_conn().list_accounts()
    assert str(err.value) == (
        "Cloudflare answered List Accounts (page 1) with a 'result' that is not a list of accounts with an 'id' "
        f"({kind}). A proxy or an API change; retry later, and report it if it persists."
    )


def test_list_accounts_without_result_info_takes_a_short_page_for_the_last(sim, use_conn):
    sim.add_fault("canned_result", routes=["accounts"], result=[{"id": FOCUS_ACCOUNT, "name": "Only one"}])
    assert use_conn().list_accounts() == [{"id": FOCUS_ACCOUNT, "name": "Only one"}]
    assert sim.request_count(path_contains="/accounts") == 1


def test_list_accounts_that_cannot_reach_the_api_names_no_account(monkeypatch):
    unreachable = "http://127.0.0.1:9/client/v4"  # the discard port: nothing listens on loopback
    connection = connection_uri_json(unreachable, SIM_TOKEN, STANDARD_ACCOUNT, max_retry_wait=0)
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_DEFAULT", connection)
    with pytest.raises(CloudflareConnectionError) as err:
        CloudflareBillingHook().list_accounts()
    assert str(err.value).startswith(f"Could not reach the Cloudflare API at {unreachable} on /accounts: ")


def test_list_accounts_without_a_page_count_stops_at_a_short_page(sim, use_conn):
    generated = sim.add_generated_accounts(60)
    token = "cfsim-list-accounts-no-page-count"
    sim.add_token(token, accounts=generated)
    sim.add_fault("envelope_variant", result_info={"total_pages": None})
    assert [a["id"] for a in use_conn(token).list_accounts()] == generated
    assert sim.request_count(path_contains="/accounts") == 2  # 50, then 10: the short page is the last


def test_list_accounts_errors_are_the_hooks_errors_and_never_show_the_token(sim, use_conn):
    with pytest.raises(CloudflareAuthenticationError) as err:
        use_conn("cfsim-unknown-token-9f3e").list_accounts()
    message = str(err.value)
    assert "on /accounts" in message and "for account" not in message
    assert "cfsim-unknown-token-9f3e" not in message and err.value.account_id is None


def test_list_accounts_is_retried_like_every_call(sim, use_conn):
    sim.add_fault("server_error", times=1, status=502)
    sim.add_fault("rate_limit", times=1, retry_after=1)
    hook = use_conn()
    assert [a["id"] for a in hook.list_accounts()] == [a.account_id for a in sim.accounts()]
    assert [r["status"] for r in sim.requests][:3] == [502, 429, 200]


def test_list_accounts_success_false_is_an_error_not_no_accounts(sim, use_conn):
    sim.add_fault("success_false")
    with pytest.raises(CloudflareAPIError, match=r"HTTP 200 on /accounts .*success: false"):
        use_conn().list_accounts()


# -- rate limits: what the retry rule waits out ---------------------------------------------------


def test_a_429_asking_for_exactly_the_retry_budget_is_waited_out(sim, use_conn):
    sim.add_fault("rate_limit", times=1, retry_after=3)
    hook = use_conn(max_retry_wait=3)
    started = time.monotonic()
    assert hook.get_paygo_usage() == raw_usage(sim, STANDARD_ACCOUNT)
    assert time.monotonic() - started >= 3
    assert [r["status"] for r in sim.requests[:2]] == [429, 200]


def test_a_429_longer_than_the_rate_limit_wait_raises_at_once_for_the_caller_to_defer(sim, use_conn):
    sim.add_fault("rate_limit", times=1, retry_after=4)
    use_conn(max_retry_wait=60)
    hook = CloudflareBillingHook(max_rate_limit_wait=2)
    with pytest.raises(CloudflareRateLimitError) as err:
        hook.get_paygo_usage()
    assert err.value.retry_after == 4 and sim.request_count() == 1


def test_retries_log_no_deprecation_warning(sim, use_conn, recwarn):
    sim.add_fault("server_error", times=2, status=503)
    use_conn().get_paygo_usage()
    assert [r["status"] for r in sim.requests[:3]] == [503, 503, 200]
    # tenacity warns from the caller's line: the hook's module, every call, before the fix.
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning) and w.filename.endswith("billing.py")]
