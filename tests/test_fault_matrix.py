"""The fault matrix: every way the API can misbehave, against the operator end to end, in every output mode.

Each case runs the usage operator (current billing period, the month-to-date pipeline) against the simulator
with a fault switched on, once per output mode: XCom, and a ``file://`` object in each file format. The
outcome of every case is written in its row and is one of:

* ``CLEAN``: the same output, byte for byte, as a run without the fault (the hook absorbed it);
* ``CLEAN_PLUS_COLUMNS``: the clean output plus the unknown columns the API added (nothing dropped);
* ``EMPTY``: a valid empty output (the API has no usage: that is a result, not an error);
* an exception type and the words its message must contain: the cause, named. The destination then still
  holds its previous object, untouched, and nothing else (no partial object, no temporary file).

Never a partial or empty file passed off as success. The table in ``docs/faults.md`` is this one.

Timing: the connection's ``timeout`` is 1 s and ``max_retry_wait`` 5 s, so transient faults are retried as in
production, only quicker. The budget leaves room for the one retry a transient fault needs even on a loaded
machine (the hook gives up when the time spent plus the next backoff, 0.5 to 1 s, reaches it: with 2 s, a
0.5 s read timeout left too little); cases whose fault persists use ``max_retry_wait=0`` (the first failure is final),
because what matters here is what the operator does once the hook gives up (the retry budget itself is
proven in ``test_hook.py``). The "connect timeout" is a loopback socket that listens with a full backlog and
never accepts: the kernel drops the SYN, so the client's connect times out.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from conftest import BUCKET, body, connection_uri_json, keys, run_operator

from airflow_provider_cfbilling.exceptions import (
    CloudflareAPIError,
    CloudflareAuthenticationError,
    CloudflareBillingError,
    CloudflareConnectionError,
    CloudflarePermissionError,
    CloudflareRateLimitError,
    CloudflareResponseError,
    CloudflareRouteNotFoundError,
    CloudflareServerError,
)
from airflow_provider_cfbilling.testing.simulator import (
    EMPTY_ACCOUNT,
    SIM_TOKEN,
    SIM_TOKEN_NO_BILLING,
    STANDARD_ACCOUNT,
)
from airflow_provider_cfbilling.utils.formats import write_records

MODES = ("xcom", "jsonl", "json", "csv", "parquet")
FILE_MODES = MODES[1:]
CLEAN = "clean"
CLEAN_PLUS_COLUMNS = "clean plus the new columns"
EMPTY = "valid empty output"
EXTRA_COLUMNS = {"x_FutureColumn": "future", "x_FutureAmount": 1.5}  # the simulator's default extra columns
DAGS = Path(__file__).parent / "dags"


@dataclass(frozen=True)
class Case:
    """One row of the matrix: the fault(s), and what the operator must do about them."""

    id: str
    faults: tuple[tuple[str, dict[str, Any]], ...] = ()
    outcome: str | type[Exception] = CLEAN
    message: str = ""  # a regex the error message must match
    statuses: tuple[int | None, ...] | None = None  # the usage calls' statuses the simulator must have seen
    account: str = STANDARD_ACCOUNT
    token: str = SIM_TOKEN
    host: str = "simulator"  # or "blackhole", or "stripping_proxy"
    conn: dict[str, Any] = field(default_factory=dict)  # connection extras over the defaults


def once(kind: str, **params: Any) -> tuple[tuple[str, dict[str, Any]], ...]:
    return ((kind, {"times": 1, **params}),)


def always(kind: str, **params: Any) -> tuple[tuple[str, dict[str, Any]], ...]:
    return ((kind, params),)


GIVE_UP = {"max_retry_wait": 0}  # persistent faults: the first failure is final
FIVE_XX = (500, 502, 503, 504)

CASES = [
    Case("no fault"),
    # -- rate limits
    Case("429 short, Retry-After in seconds", once("rate_limit", retry_after=1), statuses=(429, 200)),
    Case(
        "429 short, Retry-After as an HTTP date",
        once("rate_limit", retry_after=1, retry_after_http_date=True),
        statuses=(429, 200),
    ),
    Case(
        "429 five-minute block",
        always("block"),
        CloudflareRateLimitError,
        r"wait 300 s.*retry_delay >= 300 s",
        statuses=(429,),  # no retry storm against a blocked token
    ),
    # -- server errors: HTML pages, not JSON
    # Every 5xx is retried alike (test_hook.py runs each status through a retry); two of them here, once each.
    *[Case(f"{s} HTML page, once", once("server_error", status=s), statuses=(s, 200)) for s in (502, 503)],
    *[
        Case(
            f"{s} HTML page, persistent",
            always("server_error", status=s),
            CloudflareServerError,
            f"HTTP {s}",
            conn=GIVE_UP,
        )
        for s in FIVE_XX
    ],
    # -- the network
    Case("connection reset, once", once("reset"), statuses=(None, 200)),
    Case(
        "connection reset, persistent",
        always("reset"),
        CloudflareConnectionError,
        r"Could not reach.*Connection",
        conn=GIVE_UP,
    ),
    Case(
        "connect timeout (nothing accepts)",
        outcome=CloudflareConnectionError,
        message=r"Could not reach .*ConnectTimeout",
        host="blackhole",
        conn={**GIVE_UP, "timeout": 0.5},
    ),
    Case(
        "read timeout (slow body), once",
        once("slow", body_delay=3),
        conn={"timeout": 0.5},
        statuses=(200, 200),  # the first answer started, then stalled mid-body
    ),
    Case(
        "read timeout (slow body), persistent",
        always("slow", body_delay=3),
        CloudflareConnectionError,
        r"Could not reach .*Read timed out",
        conn={**GIVE_UP, "timeout": 0.5},
    ),
    Case("truncated JSON, once", once("truncated"), statuses=(200, 200)),
    Case(
        "truncated JSON, persistent",
        always("truncated"),
        CloudflareConnectionError,
        r"Could not reach.*IncompleteRead",
        conn=GIVE_UP,
    ),
    # -- answers that are not usable
    Case("success: false on HTTP 200", always("success_false"), CloudflareAPIError, r"HTTP 200.*success: false"),
    Case("result null", always("null_result"), CloudflareResponseError, r"'result' of type null.*not 'no usage'"),
    Case("result of the wrong type", always("wrong_type_result"), CloudflareResponseError, r"'result' of type object"),
    # -- records that break the contract
    *[
        Case(
            f"{column} missing",
            always("missing_column", column=column),
            CloudflareResponseError,
            f"whose {column} is missing",
        )
        for column in ("ContractedCost", "ChargePeriodStart", "BillingCurrency", "ServiceName")
    ],
    *[
        Case(f"{column} null", always("null_column", column=column), CloudflareResponseError, f"whose {column} is null")
        for column in ("ContractedCost", "CumulatedContractedCost", "BillingPeriodStart", "ConsumedUnit")
    ],
    Case(
        "numbers sent as strings",
        always("numbers_as_strings"),
        CloudflareResponseError,
        r"whose ConsumedQuantity holds the string '[0-9.]+' where the API sends a JSON number",
    ),
    Case("unknown extra columns", always("extra_columns"), CLEAN_PLUS_COLUMNS),
    Case("empty result", outcome=EMPTY, account=EMPTY_ACCOUNT),
    # -- credentials
    Case(
        "no credentials reach the API (9106)",
        outcome=CloudflareAuthenticationError,
        message=r"HTTP 400.*9106: Missing X-Auth-Key.*credentials were rejected",
        host="stripping_proxy",
    ),
    Case(
        "wrong or expired token (10000)",
        outcome=CloudflareAuthenticationError,
        message=r"HTTP 403.*10000: Authentication error.*wrong or expired",
        token="cfsim-expired-token",
    ),
    Case(
        "token without Billing Read (9109)",
        outcome=CloudflarePermissionError,
        message=r"HTTP 403.*9109.*needs the 'Billing Read' permission",
        token=SIM_TOKEN_NO_BILLING,
    ),
    # -- the endpoint moved
    # (a moved documented path falling back to an older one is in test_hook.py: the older paths serve the
    # older record shape, so the output is not the clean run's)
    Case(
        "every known path moved",
        always("path_moved", also_interim=True, also_current=True),
        CloudflareRouteNotFoundError,
        r"None of the known usage paths answered.*usage_path",
        statuses=(404, 404, 404),
    ),
]


# -- references: the clean run, and a previous object to protect ---------------------------------------


@dataclass
class Reference:
    records: list[dict[str, Any]]  # the clean run's XCom
    files: dict[str, bytes]  # the clean run's object, per format
    previous: dict[str, bytes]  # an older object (one day less of usage), per format


@pytest.fixture(scope="module")
def reference(simulator_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    sim = simulator_server
    out = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_CLOUDFLARE_DEFAULT", connection_uri_json(sim.url, SIM_TOKEN, STANDARD_ACCOUNT))
        sim.reset()
        records = run_operator()
        files = {}
        for file_format in FILE_MODES:
            run_operator(destination=(out / f"usage.{file_format}").as_uri())
            files[file_format] = (out / f"usage.{file_format}").read_bytes()
        sim.set_today(dt.date(2025, 11, 19))
        previous = {}
        for file_format in FILE_MODES:
            run_operator(destination=(out / f"previous.{file_format}").as_uri())
            previous[file_format] = (out / f"previous.{file_format}").read_bytes()
        sim.reset()
    assert len(records) == 24  # 6 days of the November period, 4 services
    # The reference itself is checked against the API's answer fetched without the provider, so that the
    # "no fault" row compares with what Cloudflare sent, not with the code under test.
    answer = requests.get(
        f"{sim.url}/accounts/{STANDARD_ACCOUNT}/billable-usage",
        headers={"Authorization": f"Bearer {SIM_TOKEN}"},
        timeout=30,
    )
    assert records == answer.json()["result"]
    exact = json.loads(answer.text, parse_float=Decimal)["result"]
    assert [json.loads(line, parse_float=Decimal) for line in files["jsonl"].splitlines()] == exact
    assert all(previous[f] != files[f] for f in FILE_MODES)
    yield Reference(records, files, previous)


@pytest.fixture(scope="module")
def blackhole() -> Iterator[str]:
    """A loopback port that never completes a TCP handshake: listen(0), backlog filled, never accept."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield f"http://127.0.0.1:{port}/client/v4"
    for sock in [*fillers, server]:
        sock.close()


class CredentialStrippingProxy:
    """A loopback HTTP proxy in front of the simulator that drops the credential headers on the way, as a
    misconfigured corporate proxy does (what makes Cloudflare answer 9106)."""

    STRIPPED = frozenset({"authorization", "x-auth-key", "x-auth-email"})

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        upstream_root = f"{parts.scheme}://{parts.netloc}"
        stripped = self.STRIPPED

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in stripped | {"host"}}
                answer = requests.get(upstream_root + self.path, headers=headers, timeout=30)
                body = answer.content
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{parts.path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stripping_proxy(simulator_server: Any) -> Iterator[str]:
    proxy = CredentialStrippingProxy(simulator_server.url)
    yield proxy.url
    proxy.close()


def expected_output(case: Case, mode: str, reference: Reference) -> Any:
    """What a successful case must produce in ``mode``: records for XCom, bytes for a file."""
    if case.outcome == CLEAN:
        return reference.records if mode == "xcom" else reference.files[mode]
    if case.outcome == EMPTY:
        return [] if mode == "xcom" else _bytes([], mode)
    assert case.outcome == CLEAN_PLUS_COLUMNS
    widened = [{**record, **EXTRA_COLUMNS} for record in reference.records]
    return widened if mode == "xcom" else _bytes(widened, mode)


def _bytes(records: list[dict[str, Any]], file_format: str) -> bytes:
    buffer = io.BytesIO()
    write_records(records, buffer, file_format)
    return buffer.getvalue()


# -- the matrix ------------------------------------------------------------------------------------------


class LocalStore:
    """A ``file://`` destination in a test's own directory."""

    def __init__(self, directory: Path, file_format: str) -> None:
        self.path = directory / f"usage.{file_format}"
        self.uri = self.path.as_uri()
        self.conn_id: str | None = None

    def put(self, data: bytes) -> None:
        self.path.write_bytes(data)

    def get(self) -> bytes:
        return self.path.read_bytes()

    def version(self) -> Any:
        return self.path.stat().st_mtime_ns

    def listing(self) -> list[str]:
        return sorted(os.listdir(self.path.parent))


class S3Store:
    """A key in the moto server's bucket, through an ``aws`` connection."""

    def __init__(self, client: Any, conn_id: str, file_format: str) -> None:
        self.client, self.conn_id, self.key = client, conn_id, f"usage.{file_format}"
        self.uri = f"s3://{BUCKET}/{self.key}"

    def put(self, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=self.key, Body=data)

    def get(self) -> bytes:
        return body(self.client, self.key)

    def version(self) -> Any:
        return self.client.head_object(Bucket=BUCKET, Key=self.key)["ETag"]

    def listing(self) -> list[str]:
        return keys(self.client)


def check_case(
    case: Case,
    mode: str,
    store: LocalStore | S3Store | None,
    sim: Any,
    reference: Reference,
    blackhole: str,
    stripping_proxy: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run one case in one mode and check its outcome (see the module docstring)."""
    host = {"blackhole": blackhole, "stripping_proxy": stripping_proxy}.get(case.host, sim.url)
    extras = {"timeout": 1, "max_retry_wait": 5, **case.conn}
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_DEFAULT", connection_uri_json(host, case.token, case.account, **extras))
    for kind, params in case.faults:
        sim.add_fault(kind, **params)
    if store is not None:
        store.put(reference.previous[mode])
        before = store.version()

    def land() -> Any:
        if store is None:
            return run_operator()
        return run_operator(destination=store.uri, destination_conn_id=store.conn_id)

    if isinstance(case.outcome, type):
        with pytest.raises(case.outcome) as failure:
            land()
        message = str(failure.value)
        assert isinstance(failure.value, CloudflareBillingError)
        assert re.search(case.message, message, re.DOTALL), message
        if isinstance(failure.value, CloudflareAPIError) or case.outcome is CloudflareResponseError:
            assert case.account in message, message  # the error names the account
        if store is not None:  # the previous object is untouched, and nothing else was left
            assert store.get() == reference.previous[mode]
            assert store.version() == before
            assert store.listing() == [f"usage.{mode}"]
    else:
        result = land()
        expected = expected_output(case, mode, reference)
        if store is None:
            assert result == expected
            assert json.dumps(result) == json.dumps(expected)  # same types and key order, not just equal
        else:
            assert store.get() == expected
            assert result["rows"] == (0 if case.outcome == EMPTY else len(reference.records))
            assert store.listing() == [f"usage.{mode}"]  # replaced whole, no temporary object left
            if case.outcome == CLEAN_PLUS_COLUMNS:
                assert b"x_FutureColumn" in store.get()

    if case.statuses is not None:
        assert tuple(r["status"] for r in sim.requests if "info" not in r["path"]) == case.statuses


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault_matrix(
    case: Case,
    mode: str,
    sim: Any,
    reference: Reference,
    blackhole: str,
    stripping_proxy: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = None if mode == "xcom" else LocalStore(tmp_path, mode)
    check_case(case, mode, store, sim, reference, blackhole, stripping_proxy, monkeypatch)


S3_CASES = [
    c
    for c in CASES
    if c.id
    in (
        "no fault",
        "429 short, Retry-After in seconds",
        "502 HTML page, persistent",
        "truncated JSON, once",
        "ContractedCost missing",
        "numbers sent as strings",
        "unknown extra columns",
        "empty result",
        "wrong or expired token (10000)",
    )
]


@pytest.mark.parametrize("mode", ["jsonl", "parquet"])
@pytest.mark.parametrize("case", S3_CASES, ids=[c.id for c in S3_CASES])
def test_fault_matrix_on_s3(
    case: Case,
    mode: str,
    sim: Any,
    reference: Reference,
    blackhole: str,
    stripping_proxy: str,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A representative set of rows against an S3-protocol server (moto): the same outcomes."""
    client, conn_id = s3
    check_case(case, mode, S3Store(client, conn_id, mode), sim, reference, blackhole, stripping_proxy, monkeypatch)


def test_the_matrix_covers_every_fault_kind_that_touches_usage() -> None:
    """A fault kind added to the simulator must get a row here (or be listed as not about usage)."""
    from airflow_provider_cfbilling.testing.simulator import FAULT_KINDS

    covered = {kind for case in CASES for kind, _ in case.faults}
    about_billing_info_only = {"info_unavailable", "not_covered"}
    # Valid answers, not faults of the API: validated against the published schema and fed to the hook, the
    # operator and the sensor in test_contract.py (exact money in test_exact_money.py, a reconciliation
    # mismatch in test_operator.py).
    valid_but_unusual = {
        "envelope_variant",
        "timestamp_style",
        "long_decimals",
        "huge_integer",
        "cost_mismatch",
        "canned_result",
        "restated",  # a restatement: tests/test_restatements.py
    }
    assert set(FAULT_KINDS) - about_billing_info_only - valid_but_unusual == covered


# -- the same faults through real DAG runs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_format", "faults", "expected_state"),
    [
        ("jsonl", once("rate_limit", retry_after=1), "success"),
        ("parquet", always("missing_column", column="ContractedCost"), "failed"),
        ("csv", always("truncated"), "failed"),
        ("json", always("server_error", status=503), "failed"),
    ],
    ids=["429 short: same bytes", "column missing: failed", "truncated: failed", "503: failed"],
)
def test_faults_in_real_dag_runs(
    file_format: str,
    faults: tuple[tuple[str, dict[str, Any]], ...],
    expected_state: str,
    sim: Any,
    reference: Reference,
    dag_runner: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_DEFAULT",
        connection_uri_json(sim.url, SIM_TOKEN, STANDARD_ACCOUNT, timeout=1, max_retry_wait=5),
    )
    monkeypatch.setenv("CFBILLING_TEST_OUT", tmp_path.as_uri())
    monkeypatch.setenv("CFBILLING_TEST_FORMAT", file_format)
    destination = tmp_path / f"usage.{file_format}"
    destination.write_bytes(reference.previous[file_format])
    for kind, params in faults:
        sim.add_fault(kind, **params)

    result = dag_runner(DAGS / "faults_matrix.py", "faults_matrix")

    assert result.task_states == {"land": expected_state}
    if expected_state == "success":
        assert destination.read_bytes() == reference.files[file_format]
        assert result.xcom("land")["rows"] == len(reference.records)
    else:
        assert destination.read_bytes() == reference.previous[file_format]
        assert ("land", "return_value", -1) not in result.xcoms
    assert sorted(os.listdir(tmp_path)) == [destination.name]


# -- the sensor: a row without BillingPeriodStart is not "no usage" -----------------------------------------


@pytest.mark.parametrize("kind", ["missing_column", "null_column"])
def test_the_sensor_does_not_read_rows_without_a_period_as_no_usage(
    kind: str, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor

    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_DEFAULT", connection_uri_json(sim.url, SIM_TOKEN, STANDARD_ACCOUNT))
    sim.set_today(dt.date(2025, 12, 20))  # November's period is over by the clock; the API must agree
    sim.add_fault(kind, column="BillingPeriodStart", path="billable-usage")
    sensor = CloudflareBillingPeriodSensor(task_id="wait", target="2025-11-20", mode="poke")
    with pytest.raises(CloudflareResponseError, match=r"without BillingPeriodStart .*could close a period"):
        sensor.poke({})  # type: ignore[arg-type]
