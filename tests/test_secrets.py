"""Secrets: the API token never leaks, and it only travels over verified TLS (or to loopback).

* A canary token, unique to this module, is the connection's password. On the real engine (scheduler,
  dag-processor, triggerer, api-server, and the real task runner writing real task logs), a DAG runs the
  operator through success and through every kind of failure; then every byte the run produced is searched:
  each task log, each component's output, the whole metadata database (XCom, rendered template fields, ...),
  the written files, and the simulator's own log (run in its own process, verbose) and request log.
* The same in process, through the operator's error paths: exception text and tracebacks, XCom values,
  written files, captured logs.
* TLS: verification is on by default (a self-signed certificate is refused); the connection's ``verify``
  extra accepts the CA bundle; plain ``http://`` is refused unless the host is loopback or the connection
  says ``allow_insecure_http``.

Every search is paired with a positive control, so that an empty or unread source cannot pass for a clean
one: the sources must be non-empty and contain what they should (the account id, the error messages).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import REPO_ROOT, airflow_env, connection_uri_json
from conftest import run_operator as run
from engine import Engine, wait_until

from airflow_provider_cfbilling.exceptions import (
    CloudflareBillingError,
    CloudflareBillingInputError,
    CloudflareConnectionError,
    CloudflareTLSError,
)
from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.testing.simulator import (
    ANCHOR31_ACCOUNT,
    EMPTY_ACCOUNT,
    FOCUS_ACCOUNT,
    LARGE_ACCOUNT,
    SIM_TOKEN,
    STANDARD_ACCOUNT,
)

# Unique to this module (the hook tests have their own): a hit can only come from here.
CANARY = "cfcanary-secrets-3b9d1f7a2c5e4d6f8a0b1c2d3e4f5a6b"
DAG_FILE = Path(__file__).parent / "dags" / "faults_secrets.py"
DAG_ID = "faults_secrets"
EXPECTED_STATES = {
    "land_file": "success",
    "land_xcom": "success",
    "server_error": "failed",
    "success_false": "failed",
    "truncated": "failed",
    "deferred_then_bad_record": "failed",
    "revoked_token": "failed",
}
# What each task's log must say: the cause, with its context (a log without it would hide nothing).
EXPECTED_IN_TASK_LOG = {
    "land_file": [f"Landed 24 rows of account {STANDARD_ACCOUNT}"],
    "land_xcom": [f"Fetching Cloudflare usage of account {STANDARD_ACCOUNT}"],
    "server_error": ["Cloudflare call failed (attempt 1)", f"HTTP 502 for account {FOCUS_ACCOUNT}"],
    # The older path answers "no route"; the fallback path answers success: false.
    "success_false": [
        f"HTTP 200 for account {ANCHOR31_ACCOUNT} on /accounts/{ANCHOR31_ACCOUNT}/billable-usage",
        "success: false",
    ],
    "truncated": ["Could not reach the Cloudflare API at http://127.0.0.1:", f"for account {EMPTY_ACCOUNT}"],
    "deferred_then_bad_record": [
        "deferring",
        "Resuming after Cloudflare's rate-limit wait",
        "ContractedCost is missing",
    ],
    "revoked_token": [f"HTTP 403 for account {STANDARD_ACCOUNT}", "10000: Authentication error"],
}


def find(needle: str, root: Path) -> list[str]:
    """Every file under ``root`` whose bytes contain ``needle`` (binary files included)."""
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if needle.encode() in path.read_bytes():
            hits.append(str(path))
    return hits


def test_the_search_finds_a_planted_canary(tmp_path: Path) -> None:
    """The detector itself can fail: a canary planted in a nested binary file is found."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "blob.bin").write_bytes(b"\x00\x01" + CANARY.encode() + b"\xff")
    (tmp_path / "clean.txt").write_text("nothing here")
    assert find(CANARY, tmp_path) == [str(tmp_path / "a" / "b" / "blob.bin")]


# -- the real engine --------------------------------------------------------------------------------------


class SimulatorProcess:
    """The simulator in its own process, verbose (its log is one of the places searched), knowing the canary.

    ``CANARY + "-revoked"`` is unknown to it: the API answers 403/10000, as for a revoked token.
    """

    def __init__(self, workdir: Path) -> None:
        self.log_path = workdir / "simulator.err"
        launcher = (
            "import sys, threading, datetime\n"
            "from airflow_provider_cfbilling.testing.simulator import CloudflareSimulator\n"
            "sim = CloudflareSimulator(today=datetime.date(2025, 11, 20), quiet=False)\n"
            f"sim.add_token({CANARY!r})\n"
            "sim.start()\n"
            "print(sim.url, flush=True)\n"
            "threading.Event().wait()\n"
        )
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", launcher], stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO_ROOT
            )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.log_path.read_text()
        self.root = self.url.removesuffix("/client/v4")

    def add_fault(self, kind: str, **params: Any) -> None:
        requests.post(f"{self.root}/__sim/faults", json={"kind": kind, **params}, timeout=10).raise_for_status()

    def requests_log(self) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.root}/__sim/requests", timeout=10)
        answer.raise_for_status()
        return list(answer.json())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, SimulatorProcess, Path]]:
    """One run of ``faults_secrets`` on the real engine; yields (engine, simulator, output directory)."""
    work = tmp_path_factory.mktemp("secrets-engine")
    home, out = work / "airflow-home", work / "out"
    (home / "dags").mkdir(parents=True)
    out.mkdir()
    shutil.copy(DAG_FILE, home / "dags" / DAG_FILE.name)
    simulator = SimulatorProcess(work)
    try:
        simulator.add_fault("server_error", account_id=FOCUS_ACCOUNT, status=502)
        simulator.add_fault("path_moved", account_id=ANCHOR31_ACCOUNT)
        simulator.add_fault("success_false", account_id=ANCHOR31_ACCOUNT)
        simulator.add_fault("truncated", account_id=EMPTY_ACCOUNT)
        # Longer than a deferrable task waits in the worker, and than a worker takes to report the deferred try: a
        # resume sooner meets a race inside Airflow (a late executor event fails the re-queued try).
        simulator.add_fault("rate_limit", account_id=LARGE_ACCOUNT, times=1, retry_after=12)
        simulator.add_fault("missing_column", account_id=LARGE_ACCOUNT, column="ContractedCost")
        # A retry budget that always leaves room for the first retry (its log line is expected below): with a
        # budget of 1 s, tenacity gives up without retrying whenever the first attempt plus the first backoff
        # (0.5 to 1 s) reach it, which a loaded machine makes likely. 12 s stays longer than the budget: defers.
        extra = {"timeout": 5, "max_retry_wait": 5}
        engine = Engine(
            home,
            {
                "AIRFLOW_CONN_CLOUDFLARE_DEFAULT": connection_uri_json(
                    simulator.url, CANARY, STANDARD_ACCOUNT, **extra
                ),
                "AIRFLOW_CONN_CLOUDFLARE_REVOKED": connection_uri_json(simulator.url, CANARY + "-revoked", **extra),
                "CFBILLING_TEST_OUT": out.as_uri(),
            },
        )
        engine.airflow("db", "migrate")
        try:
            engine.start()
            states = engine.run_dag(DAG_ID, tasks=len(EXPECTED_STATES), timeout=150)
            assert states == EXPECTED_STATES, f"{states}\n{engine.diagnostics()}"
            # A task's final state can reach the database before the task runner's supervisor has written the
            # task's last log lines (it serves both on one loop; seen on a loaded machine): wait for the logs.
            try:
                wait_until(engine, "every task's log to hold its expected lines", lambda: not missing_lines(engine), 60)
            except AssertionError as exc:
                # What is missing first (CI shows the head of a failure), then each log's tail, then the engine.
                logs = {task: text[-3000:] for task, text in task_logs(engine).items()}
                raise AssertionError(f"missing from the task logs: {missing_lines(engine)}\n{logs}\n{exc}") from None
            yield engine, simulator, out
        finally:
            engine.stop()
    finally:
        simulator.stop()


def task_logs(engine: Engine) -> dict[str, str]:
    """Each task's log as the real task runner wrote it under AIRFLOW_HOME/logs, by task id."""
    logs: dict[str, str] = {}
    for path in (engine.home / "logs").rglob("*"):
        if path.is_file() and f"dag_id={DAG_ID}" in str(path):
            task_id = next(part.split("=", 1)[1] for part in path.parts if part.startswith("task_id="))
            logs[task_id] = logs.get(task_id, "") + path.read_text(errors="replace")
    return logs


def missing_lines(engine: Engine) -> list[tuple[str, str]]:
    """(task id, text) of each expected text not (yet) in its task's log."""
    logs = task_logs(engine)
    return [
        (task_id, text)
        for task_id, texts in EXPECTED_IN_TASK_LOG.items()
        for text in texts
        if text not in logs.get(task_id, "")
    ]


@pytest.mark.e2e
def test_the_task_runner_s_logs_never_hold_the_token(engine_run: tuple[Engine, SimulatorProcess, Path]) -> None:
    engine, _, _ = engine_run
    logs = task_logs(engine)
    assert set(logs) == set(EXPECTED_STATES)
    for task_id, expected in EXPECTED_IN_TASK_LOG.items():
        for text in expected:
            assert text in logs[task_id], f"{task_id}: {text!r} not in its log:\n{logs[task_id][-3000:]}"
    assert find(CANARY, engine.home / "logs") == []
    # The components' own output (scheduler, triggerer, api-server, dag-processor), the trigger included.
    outputs = {name: (engine.home / f"{name}.out").read_text(errors="replace") for name in engine.processes}
    assert all(outputs.values()), "a component wrote nothing: the search would prove nothing"
    assert [name for name, text in outputs.items() if CANARY in text] == []


@pytest.mark.e2e
def test_the_metadata_database_never_holds_the_token(engine_run: tuple[Engine, SimulatorProcess, Path]) -> None:
    engine, _, _ = engine_run
    import sqlite3

    with sqlite3.connect(f"file:{engine.db_path}?mode=ro", uri=True) as db:
        dump = "\n".join(db.iterdump())
    assert STANDARD_ACCOUNT in dump and "ContractedCost" in dump  # XComs are in there
    assert CANARY not in dump

    (manifest,) = engine.query("SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'land_file'", DAG_ID)
    assert json.loads(manifest[0])["rows"] == 24
    (records,) = engine.query("SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'land_xcom'", DAG_ID)
    assert len(json.loads(records[0])) == 24
    (rendered,) = engine.query(
        "SELECT rendered_fields FROM rendered_task_instance_fields WHERE dag_id = ? AND task_id = 'land_file'", DAG_ID
    )
    fields = json.loads(rendered[0])
    assert fields["account_id"] == STANDARD_ACCOUNT  # rendered from the same connection
    assert fields["subscription_id"] == "***"  # the password, rendered by a template, is masked


@pytest.mark.e2e
def test_written_files_and_the_simulator_never_hold_the_token(
    engine_run: tuple[Engine, SimulatorProcess, Path],
) -> None:
    _, simulator, out = engine_run
    (landed,) = [p for p in out.rglob("*") if p.is_file()]
    assert landed.name == "usage.jsonl" and len(landed.read_bytes().splitlines()) == 24
    assert find(CANARY, out) == []

    sim_log = simulator.log_path.read_text(errors="replace")
    assert f"/accounts/{STANDARD_ACCOUNT}/billable-usage" in sim_log  # verbose: one line per request
    assert CANARY not in sim_log
    requests_log = simulator.requests_log()
    assert {r["auth"] for r in requests_log} == {"bearer"} and len(requests_log) >= len(EXPECTED_STATES)
    assert CANARY not in json.dumps(requests_log)


# -- in process: exception text, tracebacks, XCom, files, logs ---------------------------------------------


@pytest.mark.parametrize(
    ("token_suffix", "fault", "params"),
    [
        ("", None, {}),
        ("", "server_error", {"status": 502}),
        ("", "truncated", {}),
        ("", "reset", {}),
        ("", "success_false", {}),
        ("", "block", {}),
        ("", "missing_column", {"column": "ContractedCost"}),
        ("", "numbers_as_strings", {}),
        ("", "path_moved", {"also_interim": True, "also_current": True}),
        ("-revoked", None, {}),
    ],
)
@pytest.mark.parametrize("mode", ["xcom", "jsonl", "parquet"])
def test_no_operator_path_leaks_the_token(
    sim: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    token_suffix: str,
    fault: str | None,
    params: dict[str, Any],
    mode: str,
) -> None:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    sim.add_token(CANARY)
    monkeypatch.setattr(sim, "quiet", False)  # the simulator logs each request to stderr
    token = CANARY + token_suffix
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_DEFAULT",
        connection_uri_json(sim.url, token, STANDARD_ACCOUNT, max_retry_wait=0.5, timeout=1),
    )
    if fault:
        sim.add_fault(fault, **params)
    destination = None if mode == "xcom" else (tmp_path / f"usage.{mode}").as_uri()
    operator = CloudflarePaygoUsageOperator(task_id="usage", destination=destination)
    seen: list[str] = [repr(operator), repr(operator.hook)]
    with caplog.at_level(logging.DEBUG):
        try:
            result = operator.execute({"outlet_events": OutletEventAccessors()})  # type: ignore[arg-type]
            seen.append(json.dumps(result))
            failed = None
        except CloudflareBillingError as exc:
            failed = exc
            seen += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    captured = capsys.readouterr()
    seen += [captured.out, captured.err, caplog.text, json.dumps(sim.requests)]
    seen += [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file()]

    assert (failed is None) == (fault is None and not token_suffix)
    everything = "\n".join(seen)
    assert STANDARD_ACCOUNT in everything  # the sources are live
    if any(r["status"] is not None for r in sim.requests):  # a reset connection gets no log line
        assert f"/accounts/{STANDARD_ACCOUNT}/billable-usage" in captured.err
    assert CANARY not in everything


# -- TLS and plain http -------------------------------------------------------------------------------------


class TlsProxy:
    """A loopback HTTPS endpoint with a fresh self-signed certificate, forwarding to the simulator."""

    def __init__(self, upstream_port: int, workdir: Path) -> None:
        self.cert_path, key_path = self._certificate(workdir)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.cert_path, key_path)
        self.upstream_port = upstream_port
        self.connections = 0  # TCP connections accepted, TLS handshake or not
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}/client/v4"
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _certificate(workdir: Path) -> tuple[Path, Path]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cfbilling self-signed test")])
        now = dt.datetime.now(dt.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        cert_path, key_path = workdir / "cert.pem", workdir / "key.pem"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_path, key_path

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        try:
            while True:
                readable, _, _ = select.select([tls, upstream], [], [], 30)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is tls else tls).sendall(data)
        except OSError:
            return
        finally:
            tls.close()
            upstream.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def tls_proxy(sim: Any, tmp_path: Path) -> Iterator[TlsProxy]:
    proxy = TlsProxy(sim.port, tmp_path)
    yield proxy
    proxy.close()


@pytest.fixture
def no_ca_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the environment's CA-bundle variables, which requests lets override a session's ``verify``."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def use_tls(monkeypatch: pytest.MonkeyPatch, proxy: TlsProxy, **extra: Any) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_DEFAULT",
        connection_uri_json(proxy.url, SIM_TOKEN, STANDARD_ACCOUNT, max_retry_wait=0, timeout=5, **extra),
    )


def test_tls_verification_is_on_by_default(
    sim: Any, tls_proxy: TlsProxy, monkeypatch: pytest.MonkeyPatch, no_ca_override: None
) -> None:
    use_tls(monkeypatch, tls_proxy)
    with pytest.raises(CloudflareConnectionError, match=r"SSLError.*CERTIFICATE_VERIFY_FAILED.*self-signed"):
        run()
    assert tls_proxy.connections >= 1
    assert sim.requests == []  # the handshake failed: no request, so the token was never sent


def test_a_certificate_failure_is_not_retried(
    sim: Any, tls_proxy: TlsProxy, monkeypatch: pytest.MonkeyPatch, no_ca_override: None
) -> None:
    """A certificate does not fix itself between attempts: one connection, however large the retry budget."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_DEFAULT",
        connection_uri_json(tls_proxy.url, SIM_TOKEN, STANDARD_ACCOUNT, max_retry_wait=5, timeout=5),
    )
    with pytest.raises(CloudflareTLSError):
        run()
    assert tls_proxy.connections == 1


def test_the_verify_extra_trusts_a_ca_bundle(
    sim: Any, tls_proxy: TlsProxy, monkeypatch: pytest.MonkeyPatch, no_ca_override: None
) -> None:
    use_tls(monkeypatch, tls_proxy, verify=str(tls_proxy.cert_path))
    assert len(run()) == 24
    assert [r["status"] for r in sim.requests] == [200]


def test_the_verify_extra_wins_over_the_environment_s_ca_bundle(
    sim: Any, tls_proxy: TlsProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    import certifi

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    use_tls(monkeypatch, tls_proxy, verify=str(tls_proxy.cert_path))
    assert len(run()) == 24


@pytest.mark.parametrize("verify", ["/nonexistent/ca-bundle.pem", "yes-please"])
def test_a_bad_verify_extra_is_refused_before_any_request(
    sim: Any, tls_proxy: TlsProxy, monkeypatch: pytest.MonkeyPatch, no_ca_override: None, verify: str
) -> None:
    use_tls(monkeypatch, tls_proxy, verify=verify)
    with pytest.raises(CloudflareBillingInputError, match="verify"):
        run()
    assert tls_proxy.connections == 0


@pytest.mark.parametrize(
    ("host", "extra", "refused"),
    [
        ("http://billing-proxy.internal/client/v4", {}, True),
        ("http://10.0.0.8:8080/client/v4", {}, True),
        ("http://127.0.0.1.nip.io/client/v4", {}, True),  # a name that merely starts like loopback
        ("http://billing-proxy.internal/client/v4", {"allow_insecure_http": False}, True),
        ("http://billing-proxy.internal/client/v4", {"allow_insecure_http": True}, False),
        ("http://billing-proxy.internal/client/v4", {"allow_insecure_http": "true"}, False),
        ("http://localhost:8787/client/v4", {}, False),
        ("http://127.0.0.1:8787/client/v4", {}, False),
        ("http://127.8.9.10:8787/client/v4", {}, False),
        ("http://[::1]:8787/client/v4", {}, False),
        ("https://billing-proxy.internal/client/v4", {}, False),
    ],
)
def test_plain_http_is_refused_unless_loopback_or_allowed(
    monkeypatch: pytest.MonkeyPatch, host: str, extra: dict[str, Any], refused: bool
) -> None:
    from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_DEFAULT", connection_uri_json(host, SIM_TOKEN, STANDARD_ACCOUNT, **extra)
    )
    if refused:
        with pytest.raises(CloudflareBillingInputError, match=r"plain http: the API token would travel unencrypted"):
            run()
    else:
        assert CloudflareBillingHook().settings.base_url == host


def test_the_simulator_process_starts_and_stops_quickly(tmp_path: Path) -> None:
    """The engine tests' simulator process: up, answering with the canary, and gone on stop."""
    simulator = SimulatorProcess(tmp_path)
    try:
        answer = requests.get(
            f"{simulator.url}/accounts/{STANDARD_ACCOUNT}/billing/usage/paygo",
            headers={"Authorization": f"Bearer {CANARY}"},
            timeout=10,
        )
        assert answer.status_code == 200 and len(answer.json()["result"]) == 24
    finally:
        simulator.stop()
    assert simulator.process.returncode is not None  # stop() waited for it
    assert os.path.getsize(simulator.log_path) > 0 and CANARY not in simulator.log_path.read_text()


def test_verify_false_turns_verification_off_deliberately(
    sim: Any, tls_proxy: TlsProxy, monkeypatch: pytest.MonkeyPatch, no_ca_override: None
) -> None:
    use_tls(monkeypatch, tls_proxy, verify="false")  # a string, as the connection form stores it
    assert len(run()) == 24


# -- the masker --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stored", ["{token}", " {token}\n"], ids=["as-is", "pasted-with-whitespace"])
def test_hook_registers_the_token_with_airflows_masker(sim, stored):
    """In a fresh process (the masker is process-wide: an earlier test must not have masked it already), reading
    the connection registers the token the hook sends, whitespace stripped, so any later log line is masked."""
    token = f"cfcanary-masker-{uuid.uuid4().hex}"
    code = (
        "from airflow.sdk._shared.secrets_masker import redact\n"
        "from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook\n"
        "CloudflareBillingHook().settings\n"
        f"print(redact('token is {token} and Bearer {token}'))\n"
    )
    env = {**airflow_env(), "AIRFLOW_CONN_CLOUDFLARE_DEFAULT": connection_uri_json(sim.url, stored.format(token=token))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "token is *** and Bearer ***"
