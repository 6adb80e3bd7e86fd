"""Unusual answers and the paths only they reach.

First, answers the simulator never gives, because Cloudflare does not: what a proxy, a captive portal or a
broken gateway between the task and the API can send. A loopback HTTP server plays that part (a real server
on a real socket, as the credential-stripping proxy of the fault matrix); the hook reaches it as its host.
Then answers the simulator does give (its ``canned_result`` and route faults) that no other test sent.
"""

from __future__ import annotations

import io
import json
import re
import threading
import warnings
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pendulum
import pytest
from conftest import connection_uri_json, fetch_answer, run_operator

from airflow_provider_cfbilling.exceptions import (
    CloudflareAPIError,
    CloudflareAuthenticationError,
    CloudflarePermissionError,
    CloudflareRateLimitError,
    CloudflareResponseError,
    CloudflareRouteNotFoundError,
    CloudflareServerError,
)
from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook
from airflow_provider_cfbilling.testing.simulator import EMPTY_ACCOUNT, SIM_TOKEN, STANDARD_ACCOUNT

Answer = tuple[int, dict[str, str], bytes]
EMPTY_USAGE: Answer = (200, {}, b'{"success": true, "errors": [], "messages": [], "result": []}')


class CannedServer:
    """Answers each request with the next canned answer (the last one once the list is used up)."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.paths: list[str] = []
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                canned.paths.append(self.path)
                status, headers, body = canned.answers.pop(0) if len(canned.answers) > 1 else canned.answers[0]
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/client/v4"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def canned(monkeypatch: pytest.MonkeyPatch) -> Iterator[CannedServer]:
    server = CannedServer()
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_DEFAULT",
        connection_uri_json(server.url, SIM_TOKEN, STANDARD_ACCOUNT, max_retry_wait=5),
    )
    yield server
    server.stop()


def both_paths(hook: CloudflareBillingHook, tmp_path: Path) -> list[Any]:
    """The in-memory call and the spooled one, each as an outcome (the records, or the exception)."""
    outcomes: list[Any] = []
    for call in (hook.get_paygo_usage, lambda: list(hook.download_paygo_usage(directory=str(tmp_path)))):
        try:
            outcomes.append(call())
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def assert_not_complete(error: Exception) -> None:
    """The spooled path's message for a body that is not one complete JSON document, with the parser's reason."""
    found = re.fullmatch(
        r"Cloudflare's answer is not a complete JSON document \((.+)\): a proxy page or a cut-off body\. "
        r"Nothing was used; retry later\.",
        str(error),
    )
    assert found, str(error)
    assert "error" in found.group(1)  # the first line of the parser's own words (the next ones quote the body)


def test_a_proxy_page_with_status_200_is_an_error_never_an_empty_list(canned: CannedServer, tmp_path: Path) -> None:
    canned.answers = [(200, {"Content-Type": "text/html"}, b"<html><body>Sign in to continue</body></html>")]
    in_memory, spooled = both_paths(CloudflareBillingHook(), tmp_path)
    assert isinstance(in_memory, CloudflareResponseError)
    assert "answered HTTP 200 for account" in str(in_memory)
    assert "not a Cloudflare JSON envelope" in str(in_memory) and "'<html><body>Sign in" in str(in_memory)
    assert isinstance(spooled, CloudflareResponseError)
    assert_not_complete(spooled)
    assert list(tmp_path.iterdir()) == []  # the spooled body is removed
    assert len(canned.paths) == 2  # one request each: a 2xx page is not retried


def test_a_failure_cut_off_after_its_head_is_not_complete(canned: CannedServer, tmp_path: Path) -> None:
    """success: false and result first, then the errors cut off: the failure's own scan finds the cut."""
    canned.answers = [(200, {}, b'{"success": false, "result": null, "errors": [{"code": 10')]
    records = None
    with pytest.raises(CloudflareResponseError) as failure:
        records = CloudflareBillingHook().download_paygo_usage(directory=str(tmp_path))
    assert records is None
    assert_not_complete(failure.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "envelope",
    [{"result": []}, {"data": [], "status": "ok"}],
    ids=["result-without-success", "another-apis-json"],
)
def test_json_without_success_is_not_taken_for_an_answer(
    canned: CannedServer, tmp_path: Path, envelope: dict[str, Any]
) -> None:
    canned.answers = [(200, {}, json.dumps(envelope).encode())]
    in_memory, spooled = both_paths(CloudflareBillingHook(), tmp_path)
    assert isinstance(in_memory, CloudflareResponseError)
    assert "not a Cloudflare JSON envelope" in str(in_memory)
    assert isinstance(spooled, CloudflareResponseError)
    assert f"HTTP 200 for account {STANDARD_ACCOUNT}" in str(spooled)
    assert "JSON that is not a Cloudflare envelope (no 'success')" in str(spooled)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("header", [{}, {"Retry-After": "soon"}], ids=["no-retry-after", "unreadable-retry-after"])
def test_a_429_without_a_readable_retry_after_backs_off_and_retries(
    canned: CannedServer, header: dict[str, str]
) -> None:
    limited = b'{"success": false, "errors": [{"code": 971, "message": "Please wait"}], "messages": [], "result": null}'
    canned.answers = [(429, header, limited), EMPTY_USAGE]
    assert CloudflareBillingHook().get_paygo_usage() == []
    assert len(canned.paths) == 2  # retried once, after the backoff, and then answered


def test_a_404_without_error_codes_is_no_route_and_the_next_known_path_is_tried(canned: CannedServer) -> None:
    not_found = b'{"success": false, "errors": [], "messages": [], "result": null}'
    canned.answers = [(404, {}, not_found), EMPTY_USAGE]
    assert CloudflareBillingHook().get_paygo_usage() == []
    assert [path.split("?")[0] for path in canned.paths] == [
        f"/client/v4/accounts/{STANDARD_ACCOUNT}/billable-usage",
        f"/client/v4/accounts/{STANDARD_ACCOUNT}/paygo-usage",
    ]


@pytest.mark.parametrize(
    ("status", "errors", "error_class", "advice"),
    [
        (
            400,
            [{"code": 10000, "message": "Authentication error"}],
            CloudflareAuthenticationError,
            "The credentials were rejected: they are missing, malformed, wrong or expired. Put a valid API token in "
            "the connection's password (or a Global API key with the account email in login).",
        ),
        (
            403,
            [],
            CloudflarePermissionError,
            f"The credentials may not read billing for account {STANDARD_ACCOUNT}: the API token needs the 'Billing "
            "Read' permission on that account, and the account must be a PayGo (self-serve) account.",
        ),
        (
            400,
            [{"code": 9109, "message": "Unauthorized to access requested resource"}],
            CloudflarePermissionError,
            f"The credentials may not read billing for account {STANDARD_ACCOUNT}: the API token needs the 'Billing "
            "Read' permission on that account, and the account must be a PayGo (self-serve) account.",
        ),
        (
            400,
            [{"code": 1183, "message": "Invalid date"}],
            CloudflareAPIError,
            "The API rejected the request parameters: check from_/to (ISO dates, from_ <= to).",
        ),
        (
            400,
            [{"code": 1234, "message": "Something else"}],
            CloudflareAPIError,
            "The request was rejected; see Cloudflare's error message.",
        ),
        (
            429,
            [{"code": 971, "message": "Please wait"}],
            CloudflareRateLimitError,
            "Rate limited: Cloudflare asked to wait 30 s (this hook waits at most 5 s in total). Cloudflare allows "
            "1,200 requests per 5 minutes per token; spread the load or retry after the wait.",
        ),
    ],
    ids=["authentication", "403-without-codes", "permission-code", "bad-parameters", "other", "rate-limited"],
)
def test_each_error_answer_is_its_own_exception_with_its_advice(
    canned: CannedServer, status: int, errors: list[dict[str, Any]], error_class: type[Exception], advice: str
) -> None:
    body = json.dumps({"success": False, "errors": errors, "messages": [], "result": None}).encode()
    canned.answers = [(status, {"Retry-After": "30"} if status == 429 else {}, body)]
    with pytest.raises(CloudflareAPIError) as failure:
        CloudflareBillingHook().get_paygo_usage()
    assert type(failure.value) is error_class
    detail = "; ".join(f"{e['code']}: {e['message']}" for e in errors) or "none given"
    assert str(failure.value) == (
        f"Cloudflare API returned HTTP {status} for account {STANDARD_ACCOUNT} on "
        f"/accounts/{STANDARD_ACCOUNT}/billable-usage (errors: {detail}). {advice}"
    )
    assert len(canned.paths) == 1  # none of them is retried


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_that_outlasts_the_retry_budget_says_it_was_retried(
    canned: CannedServer, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    no_retries = connection_uri_json(canned.url, SIM_TOKEN, STANDARD_ACCOUNT, max_retry_wait=0)
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_DEFAULT", no_retries)
    canned.answers = [(status, {}, b'{"success": false, "errors": [], "messages": [], "result": null}')]
    with pytest.raises(CloudflareServerError) as failure:
        CloudflareBillingHook().get_paygo_usage()
    assert str(failure.value) == (
        f"Cloudflare API returned HTTP {status} for account {STANDARD_ACCOUNT} on /accounts/{STANDARD_ACCOUNT}/"
        "billable-usage (errors: none given). Cloudflare had a server error; it was retried. Retry later or check "
        "cloudflarestatus.com."
    )


def test_list_accounts_without_a_route_says_so(canned: CannedServer) -> None:
    no_route = b'{"success": false, "errors": [{"code": 7003, "message": "No route for the URI"}], "result": null}'
    canned.answers = [(404, {}, no_route)]
    with pytest.raises(CloudflareRouteNotFoundError) as failure:
        CloudflareBillingHook().list_accounts()
    assert str(failure.value) == (
        "Cloudflare API returned HTTP 404 on /accounts (errors: 7003: No route for the URI). No route: the path "
        "moved or the account id is not routable."
    )


@pytest.mark.parametrize(
    "header", [{}, {"Retry-After": "soon"}, {"Retry-After": "0"}], ids=["no-retry-after", "unreadable", "zero"]
)
def test_a_429_without_a_readable_retry_after_reports_no_wait(canned: CannedServer, header: dict[str, str]) -> None:
    limited = b'{"success": false, "errors": [{"code": 971, "message": "Please wait"}], "messages": [], "result": null}'
    canned.answers = [(429, header, limited)]
    with pytest.raises(CloudflareRateLimitError) as failure:
        CloudflareBillingHook(max_retry_wait=0).get_paygo_usage()
    assert failure.value.retry_after == 0.0
    assert "Cloudflare asked to wait 0 s" in str(failure.value)
    assert len(canned.paths) == 1


# -- answers the simulator gives on request --------------------------------------------------------------


def served_with(sim: Any, column: str, value: Any) -> list[dict[str, Any]]:
    """The simulator's own current-period records, the last one's ``column`` replaced by ``value``."""
    records = json.loads(fetch_answer(sim, STANDARD_ACCOUNT))["result"]
    records[-1] = {**records[-1], column: value}
    return records


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("ServiceName", 7, "whose ServiceName holds 7, not a string"),
        ("ChargePeriodStart", 20251020, "whose ChargePeriodStart holds 20251020, not an ISO 8601 date-time string"),
        (
            "BillingPeriodStart",
            "October 2025",
            "whose BillingPeriodStart holds 'October 2025', not an ISO 8601 date-time with a UTC offset",
        ),
        ("ContractedCost", True, "whose ContractedCost holds True, not a number"),
        ("ContractedCost", {"amount": "1.5"}, "whose ContractedCost holds {'amount': "),
        ("CumulatedPricingQuantity", 1.5, "whose CumulatedPricingQuantity holds "),
    ],
)
def test_a_record_with_a_wrongly_typed_required_column_stops_the_run(
    sim: Any, use_conn: Any, tmp_path: Path, column: str, value: Any, problem: str
) -> None:
    records = served_with(sim, column, value)
    sim.add_fault("canned_result", routes=["billable-usage"], result=records)
    for destination in (None, (tmp_path / "usage.jsonl").as_uri()):
        with pytest.raises(CloudflareResponseError) as failure:
            run_operator(destination=destination)
        message = str(failure.value)
        assert problem in message, message
        assert f"(row {len(records)}:" in message  # the last record: the rows before it were accepted
    assert list(tmp_path.iterdir()) == []  # nothing landed, no staged file left


def test_the_sensor_names_a_billing_period_start_that_is_not_an_instant(sim: Any, use_conn: Any) -> None:
    """The sensor reads BillingPeriodStart itself (to see whether the API's period moved on): a value that is
    not an instant is the API's fault, named with the account, never read as "no usage"."""
    from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor

    sim.set_today(pendulum.date(2025, 12, 20))  # November's period is over by the clock; the API must agree
    sim.add_fault("canned_result", routes=["billable-usage"], result=served_with(sim, "BillingPeriodStart", "Dec"))
    sensor = CloudflareBillingPeriodSensor(task_id="wait", target="2025-11-20", mode="poke")
    with pytest.raises(CloudflareResponseError) as failure:
        sensor.poke({})  # type: ignore[arg-type]
    assert str(failure.value).startswith(
        f"Cloudflare sent BillingPeriodStart='Dec' for account {STANDARD_ACCOUNT}, which is not an ISO 8601 instant"
    )


def test_an_integer_column_holding_a_fraction_is_named(sim: Any, use_conn: Any) -> None:
    sim.add_fault("canned_result", routes=["billable-usage"], result=served_with(sim, "PricingQuantity", 2.5))
    with pytest.raises(CloudflareResponseError, match=r"whose PricingQuantity holds Decimal\('2.5'\), not an integer"):
        run_operator()


@pytest.mark.parametrize(
    ("item", "kind"),
    [(42, "number"), (1.5, "number"), (None, "null"), (True, "boolean"), ("x", "string"), ([1], "array")],
)
def test_usage_items_that_are_not_records_are_refused_on_both_paths(
    sim: Any, use_conn: Any, tmp_path: Path, item: Any, kind: str
) -> None:
    records: list[Any] = json.loads(fetch_answer(sim, STANDARD_ACCOUNT))["result"]
    sim.add_fault("canned_result", routes=["billable-usage"], result=[*records, item])
    with pytest.raises(CloudflareResponseError, match="'result' of type array, not a list of records"):
        run_operator()
    spooled_message = f"for account {STANDARD_ACCOUNT} with a 'result' of type list with a {kind} item, not a list"
    with pytest.raises(CloudflareResponseError, match=re.escape(spooled_message)):
        list(use_conn().download_paygo_usage(directory=str(tmp_path)))


@pytest.mark.parametrize("result", [{"covered": True}, "none", 0, None], ids=["object", "string", "number", "null"])
def test_a_usage_result_that_is_not_an_array_is_named_with_the_account_on_both_paths(
    sim: Any, use_conn: Any, tmp_path: Path, result: Any
) -> None:
    sim.add_fault("canned_result", routes=["billable-usage"], result=result)
    kind = {dict: "object", str: "string", int: "number", type(None): "null"}[type(result)]
    for outcome in both_paths(use_conn(), tmp_path):
        assert isinstance(outcome, CloudflareResponseError)
        assert f"for account {STANDARD_ACCOUNT} with a 'result' of type {kind}, not a list of records" in str(outcome)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("info", "kind"),
    [([], "array"), ("covered", "string"), (None, "null"), (True, "boolean"), (7, "number"), (0.5, "number")],
)
def test_billing_info_that_is_not_an_object_is_an_error(sim: Any, use_conn: Any, info: Any, kind: str) -> None:
    sim.add_fault("canned_result", routes=["billable-usage/info"], result=info)
    expected = f"for account {STANDARD_ACCOUNT} with a 'result' of type {kind}, not an object with 'covered' and"
    with pytest.raises(CloudflareResponseError, match=re.escape(expected)):
        use_conn().get_billing_info()


def test_a_large_answer_is_spooled_to_a_hidden_file_read_as_bytes(sim: Any, use_conn: Any, tmp_path: Path) -> None:
    """The spool file is hidden (a lake's listing skips it) and named for what it is; reading it raises no
    warning (ijson warns, and will fail, on a file opened as text)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = use_conn().download_paygo_usage(directory=str(tmp_path))
        assert len(list(records)) > 0
    (spooled,) = tmp_path.iterdir()
    assert re.fullmatch(r"\.cfbilling-usage-\w+\.json", spooled.name), spooled.name
    records.close()
    assert list(tmp_path.iterdir()) == []


def test_test_connection_falls_back_to_the_usage_call_without_the_info_endpoint(sim: Any, use_conn: Any) -> None:
    sim.add_fault("info_unavailable")
    records = json.loads(fetch_answer(sim, STANDARD_ACCOUNT))["result"]
    ok, message = use_conn().test_connection()
    assert ok is True
    assert f"{len(records)} usage record(s) this period" in message


def test_billing_period_placeholder_for_an_empty_current_period_is_the_accounts_period(
    sim: Any, use_conn: Any, tmp_path: Path
) -> None:
    """No usage yet: "now" is placed in the account's billing cycle (its anchor is on the 5th of a month)."""

    def period_start_now() -> str:
        today = pendulum.now("UTC").date()
        start = today.replace(day=5) if today.day >= 5 else today.subtract(months=1).replace(day=5)
        return start.isoformat()

    before = period_start_now()
    manifest = run_operator(account_id=EMPTY_ACCOUNT, destination=tmp_path.as_uri() + "/{billing_period}.jsonl")
    after = period_start_now()  # a run across midnight of the 5th may see either
    assert manifest["rows"] == 0
    landed = [p.name for p in tmp_path.iterdir()]
    assert landed in ([f"{before}.jsonl"], [f"{after}.jsonl"])
    assert manifest["uri"] == (tmp_path / landed[0]).as_uri()


def test_a_spooled_success_false_names_the_apis_errors_as_the_in_memory_call_does(
    sim: Any, use_conn: Any, tmp_path: Path
) -> None:
    sim.add_fault("success_false", code=1234, message="Usage is being recomputed")
    hook = use_conn(max_retry_wait=0)
    in_memory, spooled = both_paths(hook, tmp_path)
    assert isinstance(in_memory, CloudflareAPIError) and isinstance(spooled, CloudflareAPIError)
    assert spooled.errors == in_memory.errors == [{"code": 1234, "message": "Usage is being recomputed"}]
    assert str(spooled) == str(in_memory)
    assert "1234: Usage is being recomputed" in str(spooled)
    assert list(tmp_path.iterdir()) == []


def test_spooled_records_can_be_closed_twice(sim: Any, use_conn: Any, tmp_path: Path) -> None:
    records = use_conn().download_paygo_usage(directory=str(tmp_path))
    assert len(list(tmp_path.iterdir())) == 1
    records.close()
    records.close()  # e.g. a with-block after an explicit close: the file is gone, nothing to do
    assert list(tmp_path.iterdir()) == []


def test_an_envelope_with_result_before_success_is_read_on_both_paths(
    sim: Any, canned: CannedServer, tmp_path: Path
) -> None:
    """JSON objects are unordered: a gateway that re-serialises the answer may put ``result`` first."""
    served = json.loads(fetch_answer(sim, STANDARD_ACCOUNT))
    reordered = {"result": served["result"], "result_info": {}, "messages": [], "errors": [], "success": True}
    canned.answers = [(200, {}, json.dumps(reordered).encode())]
    in_memory, spooled = both_paths(CloudflareBillingHook(), tmp_path)
    expected = json.loads(fetch_answer(sim, STANDARD_ACCOUNT), parse_float=Decimal)["result"]
    assert in_memory == spooled == expected


def test_a_failure_with_a_null_result_before_success_names_the_apis_errors(
    canned: CannedServer, tmp_path: Path
) -> None:
    body = {"result": None, "success": False, "errors": [{"code": 1000, "message": "Try again"}], "messages": []}
    canned.answers = [(200, {}, json.dumps(body).encode())]
    in_memory, spooled = both_paths(CloudflareBillingHook(max_retry_wait=0), tmp_path)
    assert isinstance(spooled, CloudflareAPIError) and isinstance(in_memory, CloudflareAPIError)
    assert spooled.errors == in_memory.errors == body["errors"]
    assert str(spooled) == str(in_memory)


class CountingReader(io.RawIOBase):
    """A file that counts the bytes it hands out."""

    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._file.read(len(buffer))
        buffer[: len(chunk)] = chunk
        self.bytes_read += len(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)


def test_the_head_scan_reads_only_the_head_when_success_comes_first(sim: Any) -> None:
    """What the spooled path promises for a large answer: its envelope checked without reading it through."""
    from airflow_provider_cfbilling.utils.spool import scan_head

    record = json.loads(fetch_answer(sim, STANDARD_ACCOUNT))["result"][0]
    data = json.dumps({"success": True, "errors": [], "messages": [], "result": [record] * 20_000}).encode()
    reader = CountingReader(data)
    envelope = scan_head(reader)  # type: ignore[arg-type]
    assert (envelope.success, envelope.result_kind) == (True, "array")
    assert reader.bytes_read < len(data) // 20  # the head: ijson's first buffers, not the 20,000 records
