"""The HTTP server, its request handler and :class:`CloudflareSimulator` (the state and its API)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, cast
from urllib.parse import urlsplit

from airflow_provider_cfbilling.testing.simulator.accounts import ACCOUNTS, SimAccount, generated_account
from airflow_provider_cfbilling.testing.simulator.control import handle_control
from airflow_provider_cfbilling.testing.simulator.exceptions import error_body
from airflow_provider_cfbilling.testing.simulator.faults import (
    ANSWER_FAULTS,
    RESULT_FAULTS,
    ROUTE_FAULTS,
    ROW_FAULTS,
    SEND_FAULTS,
    Fault,
    validate_fault,
)
from airflow_provider_cfbilling.testing.simulator.ratelimit import RateLimiter, parse_rate_limit
from airflow_provider_cfbilling.testing.simulator.rendering import BODY_CACHE
from airflow_provider_cfbilling.testing.simulator.routes import (
    API_PREFIX,
    SIM_GLOBAL_KEY,
    SIM_TOKEN,
    SIM_TOKEN_NO_BILLING,
    Answer,
    Exchange,
    TokenGrant,
    handle_api,
    parse_date,
)


def to_date(value: date | str | None) -> date:
    if value is None:
        return datetime.now(timezone.utc).date()
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return parse_date(str(value))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


class _Handler(BaseHTTPRequestHandler):
    """Turns sockets into calls of :func:`handle_api` / :func:`handle_control` and writes answers."""

    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    server_version = "cloudflare"
    timeout = 120  # idle keep-alive connections eventually free their thread

    _secrets: list[str]
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

    def log_message(self, format: str, *args: Any) -> None:
        if self.sim.quiet:
            return
        text = self.sim.scrub(format % args, getattr(self, "_secrets", []))
        sys.stderr.write(f"cfbilling-simulator {self.address_string()} - {text}\n")

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        self._secrets = [v for v in (self.headers.get("Authorization"), self.headers.get("X-Auth-Key")) if v]
        self._secrets += [v.partition(" ")[2].strip() for v in self._secrets[:1] if " " in v]
        self._headers_started = False
        try:
            url = urlsplit(self.path)
            body = self._read_body()
            for prefix in ("/__sim/", API_PREFIX + "/__sim/"):
                if url.path.startswith(prefix):
                    self._control(url.path[len(prefix) :].rstrip("/"), body)
                    return
            answer, exchange, ratelimit_headers = handle_api(self.sim, self.command, url.path, url.query, self.headers)
            self._send_api(answer, exchange, ratelimit_headers)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            # A simulator bug: answer 500 if still possible so the client does not hang.
            traceback.print_exc()
            self.close_connection = True
            if not self._headers_started:
                self._write(500, [error_body([{"code": 10001, "message": "simulator internal error"}])])

    def _control(self, endpoint: str, body: bytes) -> None:
        try:
            payload = json.loads(body) if body.strip() else {}
            if not isinstance(payload, dict):
                raise ValueError("the request body must be a JSON object")
            status, result = handle_control(self.sim, self.command, endpoint, payload)
        except (ValueError, TypeError) as error:
            status, result = 400, {"error": str(error)}
        self._write(status, [json.dumps(result).encode()])

    def _send_api(self, answer: Answer, exchange: Exchange, ratelimit_headers: list[tuple[str, str]]) -> None:
        # Log before answering: once a client holds the answer, its request is in the log.
        self.sim.record(exchange, None if answer.reset else answer.status)
        if answer.reset:
            self._reset_connection()
            return
        headers = [*answer.headers, *ratelimit_headers, ("CF-RAY", os.urandom(8).hex() + "-SIM")]
        self._write(answer.status, answer.chunks, answer.content_type, headers, answer.send_faults)

    def _write(
        self,
        status: int,
        chunks: Sequence[bytes],
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
        if delay:
            self.sim.pause(delay)
        self._headers_started = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(total))
        for name, value in headers:
            self.send_header(name, value)
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        stop_at = total // 2 if (truncate or body_delay) else total
        sent = self._send_range(chunks, 0, stop_at)
        if truncate:
            self.close_connection = True
            return
        if body_delay:
            self.sim.pause(body_delay)
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

    def _reset_connection(self) -> None:
        """Drop the connection with a TCP RST and no answer at all."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The real close happens when rfile/wfile are closed in finish(); linger 0 makes it a RST.
        self.connection.close()


@dataclass
class _ClockAdvance:
    """Move the clock to ``today`` once ``remaining`` more matching API calls have been answered."""

    remaining: int
    today: date
    path: str | None

    def describe(self) -> dict[str, Any]:
        return {"after": self.remaining, "today": self.today.isoformat(), "path": self.path}


class CloudflareSimulator:
    """A Cloudflare billable-usage API on a loopback port, served from a daemon thread.

    See the package docstring for the accounts, routes, faults and control endpoints.

    :param today: the simulated clock (a date; default: UTC today): usage exists for days before it.
    :param host: a loopback address to listen on.
    :param port: the port (0: any free port).
    :param enforce_window_rules: answer ``[]`` for a ``from``/``to`` range without an anchor day.
    :param to_inclusive: read ``to`` inclusively (False: exclusively).
    :param large_zones: zones of LARGE_ACCOUNT.
    :param rate_limit: ``(max_requests, window_seconds, block_seconds)`` or ``"MAX/WINDOW/BLOCK"``:
        Cloudflare-style enforcement per credential (None: headers only).
    :param quiet: False logs requests to stderr (never a credential).
    """

    def __init__(
        self,
        today: date | str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        enforce_window_rules: bool = True,
        to_inclusive: bool = True,
        large_zones: int = 10,
        rate_limit: Sequence[float] | str | None = None,
        quiet: bool = True,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"the simulator only listens on loopback addresses, not {host!r}")
        self.host = host
        self.quiet = quiet
        self._requested_port = port
        self._initial = (
            to_date(today),
            bool(enforce_window_rules),
            bool(to_inclusive),
            int(large_zones),
            parse_rate_limit(rate_limit),
        )
        self._lock = threading.RLock()
        self._tokens: dict[str, TokenGrant] = {
            SIM_TOKEN: TokenGrant(billing_read=True),
            SIM_TOKEN_NO_BILLING: TokenGrant(billing_read=False),
        }
        self._accounts: dict[str, SimAccount] = dict(ACCOUNTS)
        self._generated = 0
        self._faults: list[Fault] = []
        self._clock_advances: list[_ClockAdvance] = []
        self._log: list[dict[str, Any]] = []
        self._stopping = threading.Event()
        self._server: _SimServer | None = None
        self._thread: threading.Thread | None = None
        self._apply_initial_state()

    def _apply_initial_state(self) -> None:
        today, window_rules, to_inclusive, zones, rate_limit = self._initial
        with self._lock:
            self._today = today
            self.enforce_window_rules = window_rules
            self.to_inclusive = to_inclusive
            self.set_large_zones(zones)
            self._rate_limit = rate_limit
            self._limiter = RateLimiter(rate_limit)
            self._faults.clear()
            self._clock_advances.clear()
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

    def pause(self, seconds: float) -> None:
        """Sleep in a handler (slow faults), cut short when the simulator stops."""
        self._stopping.wait(seconds)

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
            self._today = to_date(today)

    def advance_clock_after(self, calls: int, today: date | str, *, path: str | None = None) -> None:
        """After ``calls`` more API calls (only those whose path contains ``path``, if given) have
        been answered, the clock moves to ``today`` by itself: the ``calls``-th call still sees the
        old date, the next one the new. Lets a test script "the day ends after the 3rd poke"
        without moving the clock from another thread."""
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
            raise ValueError("calls must be a positive integer")
        with self._lock:
            self._clock_advances.append(_ClockAdvance(calls, to_date(today), path))

    def begin_request(self, path: str) -> date:
        """The clock as one API request sees it; counts the request for :meth:`advance_clock_after`."""
        with self._lock:
            today = self._today
            for advance in list(self._clock_advances):
                if advance.path is None or advance.path in path:
                    advance.remaining -= 1
                    if advance.remaining <= 0:
                        self._today = advance.today
                        self._clock_advances.remove(advance)
            return today

    def set_window_rules(self, enabled: bool) -> None:
        with self._lock:
            self.enforce_window_rules = bool(enabled)

    def set_to_inclusive(self, inclusive: bool) -> None:
        """Read ``to`` inclusively (True, the default) or exclusively."""
        with self._lock:
            self.to_inclusive = bool(inclusive)

    def set_large_zones(self, zones: int) -> None:
        if isinstance(zones, bool) or not isinstance(zones, int) or zones < 1:
            raise ValueError("large_zones must be a positive integer")
        with self._lock:
            self.large_zones = zones

    def set_rate_limit(self, rate_limit: Sequence[float] | str | None) -> None:
        """Change (or with None, switch off) rate-limit enforcement; resets the counters."""
        parsed = parse_rate_limit(rate_limit)
        with self._lock:
            self._rate_limit = parsed
            self._limiter = RateLimiter(parsed)

    def ratelimit_peek(self, principal: str | None) -> list[tuple[str, str]]:
        with self._lock:
            limiter = self._limiter
        return limiter.peek(principal)

    def ratelimit_hit(self, principal: str) -> tuple[float | None, list[tuple[str, str]]]:
        with self._lock:
            limiter = self._limiter
        return limiter.hit(principal)

    @property
    def config(self) -> dict[str, Any]:
        with self._lock:
            return {
                "today": self._today.isoformat(),
                "large_zones": self.large_zones,
                "enforce_window_rules": self.enforce_window_rules,
                "to_inclusive": self.to_inclusive,
                "rate_limit": list(self._rate_limit) if self._rate_limit else None,
                "clock_advances": [a.describe() for a in self._clock_advances],
            }

    @staticmethod
    def clear_cache() -> None:
        """Drop the rendered usage bodies (shared by all instances; pure functions of account,
        window, zone count and row shape), e.g. to time a cold LARGE answer."""
        BODY_CACHE.clear()

    def reset(self) -> None:
        """Back to the constructor's state: faults, pending clock advances, request log, clock,
        window rules, ``to`` reading, zones and rate-limit state. Tokens and generated accounts stay."""
        self._apply_initial_state()

    # -- credentials and accounts -------------------------------------------------------------
    def add_token(self, token: str, billing_read: bool = True, accounts: Iterable[str] | None = None) -> None:
        """Register an API token. ``accounts``: the only account ids it sees (None: all)."""
        if not token or any(ch.isspace() for ch in token):
            raise ValueError("a token must be a non-empty string without whitespace")
        if isinstance(accounts, str):
            raise ValueError("accounts must be a list of account ids, not one string")
        grant = TokenGrant(bool(billing_read), None if accounts is None else frozenset(accounts))
        with self._lock:
            self._tokens[token] = grant

    def token_grant(self, token: str) -> TokenGrant | None:
        with self._lock:
            return self._tokens.get(token)

    def add_generated_accounts(self, count: int) -> list[str]:
        """Add ``count`` generated accounts with usage (deterministic: the n-th generated account of
        any simulator has the same id and data); returns their ids."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        with self._lock:
            added = [generated_account(self._generated + n) for n in range(count)]
            self._generated += count
            for account in added:
                self._accounts[account.account_id] = account
        return [a.account_id for a in added]

    def account(self, account_id: str) -> SimAccount | None:
        with self._lock:
            return self._accounts.get(account_id)

    def accounts(self) -> list[SimAccount]:
        """Every account: the catalogue, then the generated ones in the order added."""
        with self._lock:
            return list(self._accounts.values())

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
        validate_fault(kind, times, params)
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

    def take_route_fault(self, route: str, account_id: str, path: str) -> Fault | None:
        """The first matching ``path_moved``/``info_unavailable`` fault (used up)."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in ROUTE_FAULTS and fault.applies(route, account_id, path):
                    self._consume(fault)
                    return fault
        return None

    def take_request_faults(self, route: str, account_id: str | None, path: str) -> tuple[Fault | None, list[Fault]]:
        """The first matching answer-replacing fault and every matching slow/truncated fault."""
        with self._lock:
            answer: Fault | None = None
            send: list[Fault] = []
            for fault in list(self._faults):
                if not fault.applies(route, account_id, path):
                    continue
                if fault.kind in ANSWER_FAULTS and answer is None:
                    answer = fault
                elif fault.kind in SEND_FAULTS:
                    send.append(fault)
                else:
                    continue
                self._consume(fault)
            return answer, send

    def take_result_faults(self, route: str, account_id: str | None, path: str) -> list[Fault]:
        """Every matching fault that changes the result or its rows (copies; the originals used up)."""
        with self._lock:
            taken = []
            for fault in list(self._faults):
                if fault.kind in RESULT_FAULTS + ROW_FAULTS and fault.applies(route, account_id, path):
                    taken.append(Fault(fault.kind, fault.account_id, fault.path, None, dict(fault.params)))
                    self._consume(fault)
            return taken

    # -- request log ------------------------------------------------------------------------
    def record(self, exchange: Exchange, status: int | None) -> None:
        """Add one API request to the log (``status`` None: the connection was reset)."""
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

    def scrub(self, text: str, presented: Iterable[str] = ()) -> str:
        """Replace any credential (presented in this request or known to the simulator)."""
        with self._lock:
            secrets = {*presented, *self._tokens, SIM_GLOBAL_KEY}
        for secret in sorted(secrets, key=len, reverse=True):
            if secret and secret in text:
                text = text.replace(secret, "[REDACTED]")
        return text
