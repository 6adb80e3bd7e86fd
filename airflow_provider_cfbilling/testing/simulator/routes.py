"""The Cloudflare API routes: one request in, one :class:`Answer` out (no sockets here).

Route table (under ``/client/v4``):

* ``GET /accounts``: List Accounts, paged.
* ``GET /accounts/{id}/billable-usage``: the documented usage call, 27-field records.
* ``GET /accounts/{id}/paygo-usage`` and ``/accounts/{id}/billing/usage/paygo``: the older record
  (11 required + 4 optional fields); the beta path also caps a window at 62 days.
* ``GET /accounts/{id}/billable-usage/info`` and ``/accounts/{id}/paygo-usage-info``: subscriptions.

Everything the routes need from the simulator (clock, tokens, faults, rate limits, accounts) goes
through its public methods.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from airflow_provider_cfbilling.testing.simulator import exceptions
from airflow_provider_cfbilling.testing.simulator.accounts import (
    BILLABLE_USAGE_COLUMNS,
    PAYGO_USAGE_COLUMNS,
    SimAccount,
)
from airflow_provider_cfbilling.testing.simulator.exceptions import ApiError
from airflow_provider_cfbilling.testing.simulator.faults import (
    ACCOUNTS_ROUTE,
    BETA_ROUTE,
    INFO_ROUTES,
    Fault,
    row_shape,
)
from airflow_provider_cfbilling.testing.simulator.periods import billing_period_start, contains_anchor_day
from airflow_provider_cfbilling.testing.simulator.rendering import style_timestamp, usage_chunks

if TYPE_CHECKING:
    from airflow_provider_cfbilling.testing.simulator.server import CloudflareSimulator

API_PREFIX = "/client/v4"
SIM_TOKEN = "cfsim-billing-read-token"
SIM_TOKEN_NO_BILLING = "cfsim-no-billing-token"
SIM_EMAIL = "finops@example.com"
SIM_GLOBAL_KEY = "cfsim-global-api-key"

#: The beta path's longest window (days), as its documentation stated.
BETA_MAX_WINDOW_DAYS = 62
#: Cloudflare's documented paging of List Accounts.
ACCOUNTS_PER_PAGE_DEFAULT, ACCOUNTS_PER_PAGE_MIN, ACCOUNTS_PER_PAGE_MAX = 20, 5, 50

_ACCOUNT_ID_RE = re.compile(r"[0-9a-f]{32}")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ROUTE_RE = re.compile(
    r"/client/v4/accounts/([^/]+)/(billing/usage/paygo|billable-usage/info|billable-usage|paygo-usage-info|paygo-usage)"
)
_COLUMNS_OF_ROUTE = {
    "billable-usage": BILLABLE_USAGE_COLUMNS,
    "paygo-usage": PAYGO_USAGE_COLUMNS,
    BETA_ROUTE: PAYGO_USAGE_COLUMNS,
}


class _Headers(Protocol):
    def get(self, name: str) -> str | None: ...


@dataclass(frozen=True)
class TokenGrant:
    """What a credential may do: read billing, and see which accounts (None: all of them)."""

    billing_read: bool
    accounts: frozenset[str] | None = None

    def sees(self, account_id: str) -> bool:
        return self.accounts is None or account_id in self.accounts


@dataclass
class Exchange:
    """What the request log keeps of one API request (never a header value)."""

    method: str
    path: str
    query: dict[str, str]
    time: float
    auth: str | None = None
    account_id: str | None = None
    fault: str | None = None
    user_agent: str | None = None  # not a secret; lets tests check what the client identifies as

    def note(self, kinds: Sequence[str]) -> None:
        if kinds:
            self.fault = ",".join(([self.fault] if self.fault else []) + list(kinds))


@dataclass
class Answer:
    """One HTTP answer for the server to send. ``reset``: drop the connection without answering."""

    status: int
    chunks: Sequence[bytes]
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    send_faults: Sequence[Fault] = ()
    reset: bool = False

    @classmethod
    def error(cls, error: ApiError, send_faults: Sequence[Fault] = (), **kwargs: Any) -> Answer:
        return cls(error.status, [error.body()], send_faults=send_faults, **kwargs)


@dataclass
class _Envelope:
    """The success envelope; ``envelope_variant`` changes errors, messages and adds result_info."""

    errors: Any = field(default_factory=list)
    messages: Any = field(default_factory=list)
    result_info: dict[str, Any] | None = None

    @classmethod
    def of(cls, faults: Sequence[Fault], result_info: dict[str, Any] | None = None) -> _Envelope:
        envelope = cls(result_info=result_info)
        for fault in faults:
            if fault.kind == "envelope_variant":
                params = fault.params
                envelope.errors = params.get("errors", envelope.errors)
                envelope.messages = params.get("messages", envelope.messages)
                if "result_info" in params:
                    envelope.result_info = {**(envelope.result_info or {}), **params["result_info"]}
        return envelope

    def wrap(self, result_chunks: Sequence[bytes]) -> list[bytes]:
        head = (
            b'{"success":true,"errors":'
            + json.dumps(self.errors).encode()
            + b',"messages":'
            + json.dumps(self.messages).encode()
            + b',"result":'
        )
        tail = b"}" if self.result_info is None else b',"result_info":' + json.dumps(self.result_info).encode() + b"}"
        return [head, *result_chunks, tail]


def handle_api(
    sim: CloudflareSimulator, method: str, path: str, raw_query: str, headers: _Headers
) -> tuple[Answer, Exchange, list[tuple[str, str]]]:
    """Answer one API request. Returns the answer, its log entry and the Ratelimit headers."""
    auth_kind, principal, auth_error, grant, secrets = _credentials(sim, headers)
    query = dict(parse_qsl(raw_query, keep_blank_values=True))
    exchange = Exchange(
        method=method,
        path=sim.scrub(path, secrets),
        query={k: sim.scrub(v, secrets) for k, v in query.items()},
        time=time.time(),
        auth=auth_kind,
        user_agent=sim.scrub(headers.get("User-Agent") or "", secrets) or None,
    )
    today = sim.begin_request(path)
    ratelimit_headers = sim.ratelimit_peek(principal)

    match = _ROUTE_RE.fullmatch(path)
    if method != "GET" or (match is None and path.rstrip("/") != f"{API_PREFIX}/accounts"):
        return Answer.error(exceptions.no_route()), exchange, ratelimit_headers
    account_id, route = (match.group(1), match.group(2)) if match else (None, ACCOUNTS_ROUTE)
    if account_id is not None:
        if not _ACCOUNT_ID_RE.fullmatch(account_id):
            return Answer.error(exceptions.could_not_route(exchange.path)), exchange, ratelimit_headers
        exchange.account_id = account_id

        route_fault = sim.take_route_fault(route, account_id, path)
        if route_fault is not None:
            exchange.fault = route_fault.kind
            return Answer.error(_route_fault_error(route_fault, exchange.path)), exchange, ratelimit_headers

    if auth_error is not None:
        return Answer.error(auth_error), exchange, ratelimit_headers
    assert principal is not None and grant is not None
    retry_after, ratelimit_headers = sim.ratelimit_hit(principal)
    if retry_after is not None:
        exchange.fault = "rate_limited"
        answer = Answer.error(exceptions.rate_limited(), headers=[("Retry-After", str(max(1, math.ceil(retry_after))))])
        return answer, exchange, ratelimit_headers
    account = sim.account(account_id) if account_id is not None else None
    if account_id is not None and (not grant.billing_read or account is None or not grant.sees(account_id)):
        return Answer.error(exceptions.unauthorized()), exchange, ratelimit_headers

    answer_fault, send_faults = sim.take_request_faults(route, account_id, path)
    if answer_fault is not None:
        exchange.fault = answer_fault.kind
        return _answer_fault(answer_fault, send_faults), exchange, ratelimit_headers
    exchange.note([f.kind for f in send_faults])
    result_faults = sim.take_result_faults(route, account_id, path)
    exchange.note([f.kind for f in result_faults])

    canned = [f for f in result_faults if f.kind == "canned_result"]
    if canned:
        answer = Answer(200, _Envelope.of(result_faults).wrap([json.dumps(canned[-1].params["result"]).encode()]))
    elif account is None:
        answer = _list_accounts(sim, grant, query, result_faults)
    elif route in INFO_ROUTES:
        answer = _info(account, result_faults)
    else:
        try:
            answer = _usage(sim, account, route, query, today, result_faults)
        except ApiError as error:
            answer = Answer.error(error)
    answer.send_faults = send_faults
    return answer, exchange, ratelimit_headers


def _credentials(
    sim: CloudflareSimulator, headers: _Headers
) -> tuple[str | None, str | None, ApiError | None, TokenGrant | None, list[str]]:
    """(auth kind, principal key, error, grant, the secrets presented, to scrub from logs)."""
    authorization = headers.get("Authorization")
    email = headers.get("X-Auth-Email")
    key = headers.get("X-Auth-Key")
    secrets = [s for s in (authorization, key) if s]
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if token:
            secrets.append(token)
        if scheme.lower() != "bearer" or not token or any(ch.isspace() for ch in token):
            return "bearer", None, exceptions.invalid_headers(), None, secrets
        grant = sim.token_grant(token)
        principal = "token:" + hashlib.sha256(token.encode()).hexdigest()[:24]
        if grant is None:
            return "bearer", principal, exceptions.authentication_error(), None, secrets
        return "bearer", principal, None, grant, secrets
    if email is not None or key is not None:
        if not email or not key:
            return "legacy", None, exceptions.missing_credentials(), None, secrets
        principal = "user:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:24]
        if email.strip().lower() != SIM_EMAIL or key.strip() != SIM_GLOBAL_KEY:
            return "legacy", principal, exceptions.authentication_error(), None, secrets
        return "legacy", principal, None, TokenGrant(billing_read=True), secrets
    return None, None, exceptions.missing_credentials(), None, secrets


def _route_fault_error(fault: Fault, path: str) -> ApiError:
    if fault.kind == "info_unavailable":
        return exceptions.no_route()
    status = int(fault.params.get("status", 404))
    code = fault.params.get("code")
    if code == 7000:
        return exceptions.no_route(status)
    # What Cloudflare answers for an unknown path under an account: both codes (or 7003 alone).
    return exceptions.could_not_route(path, status, with_no_route=code != 7003)


def _answer_fault(fault: Fault, send_faults: Sequence[Fault]) -> Answer:
    kind, params = fault.kind, fault.params
    if kind == "reset":
        return Answer(0, [], reset=True)
    if kind in ("rate_limit", "block"):
        seconds = float(params.get("retry_after", 300 if kind == "block" else 1))
        if params.get("retry_after_http_date"):
            retry_after = formatdate(time.time() + seconds, usegmt=True)
        else:
            retry_after = str(math.ceil(seconds))
        return Answer.error(exceptions.rate_limited(), send_faults, headers=[("Retry-After", retry_after)])
    if kind == "server_error":
        status = int(params.get("status", 502))
        return Answer(status, [exceptions.error_page(status)], "text/html", send_faults=send_faults)
    # success_false
    error = {
        "code": int(params.get("code", 1000)),
        "message": str(params.get("message", "An internal error occurred. Please try again.")),
    }
    return Answer(200, [exceptions.error_body([error])], send_faults=send_faults)


def _result_shape(faults: Sequence[Fault]) -> tuple[str | None, str]:
    """(``null_result`` / ``wrong_type_result`` / None, the timestamp style)."""
    kinds = {f.kind for f in faults}
    replaced = (
        "null_result" if "null_result" in kinds else "wrong_type_result" if "wrong_type_result" in kinds else None
    )
    styles = [f.params["style"] for f in faults if f.kind == "timestamp_style"]
    return replaced, styles[-1] if styles else "Z"


def _info(account: SimAccount, faults: Sequence[Fault]) -> Answer:
    replaced, style = _result_shape(faults)
    subscriptions = []
    for subscription in account.subscriptions:
        item = {
            "id": subscription.id,
            "billing_cycle_anchor_timestamp": style_timestamp(subscription.anchor_timestamp, style),
            "start_timestamp": style_timestamp(subscription.anchor_timestamp, style),
        }
        if subscription.end_timestamp is not None:  # omitted (never null) while active
            item["end_timestamp"] = style_timestamp(subscription.end_timestamp, style)
        subscriptions.append(item)
    result: Any = {"covered": True, "subscriptions": subscriptions}
    if any(f.kind == "not_covered" for f in faults):
        result = {"covered": False, "subscriptions": []}
    if replaced == "wrong_type_result":
        result = [result]
    elif replaced == "null_result":
        result = None
    return Answer(200, _Envelope.of(faults).wrap([json.dumps(result).encode()]))


def _usage(
    sim: CloudflareSimulator,
    account: SimAccount,
    route: str,
    query: dict[str, str],
    today: date,
    faults: Sequence[Fault],
) -> Answer:
    window = _parse_window(query)
    if route == BETA_ROUTE and window is not None and (window[1] - window[0]).days + 1 > BETA_MAX_WINDOW_DAYS:
        raise exceptions.invalid_parameters()
    if window is not None and not sim.to_inclusive:
        window = (window[0], window[1] - timedelta(days=1))
    envelope = _Envelope.of(faults)
    replaced, _ = _result_shape(faults)
    if replaced == "null_result":
        return Answer(200, envelope.wrap([b"null"]))
    days = _usage_days(account, window, today, sim.enforce_window_rules)
    chunks: list[bytes] = []
    if days is not None:
        zones = sim.large_zones if account.zone_breakdown else 0
        chunks = usage_chunks(account, days[0], days[1], zones, row_shape(faults, _COLUMNS_OF_ROUTE[route]))
    body = [b'{"data":[' if replaced == "wrong_type_result" else b"["]
    for index, chunk in enumerate(chunks):
        if index:
            body.append(b",")
        body.append(chunk)
    body.append(b"]}" if replaced == "wrong_type_result" else b"]")
    return Answer(200, envelope.wrap(body))


def _usage_days(
    account: SimAccount, window: tuple[date, date] | None, today: date, window_rules: bool
) -> tuple[date, date] | None:
    """The inclusive (first, last) days to serve, or None for an empty list. Usage exists for whole
    UTC days before today, from the anchor's day until the subscription ends."""
    if not account.has_usage:
        return None
    anchor = account.anchor
    end = today if account.usage_end is None else min(today, account.usage_end)
    if window is None:
        if today <= anchor:
            return None
        first, last = billing_period_start(anchor, today), end - timedelta(days=1)
    else:
        if window_rules and not contains_anchor_day(anchor, *window):
            return None
        first, last = max(window[0], anchor), min(window[1], end - timedelta(days=1))
    return (first, last) if first <= last else None


def parse_date(text: str) -> date:
    if not _DATE_RE.fullmatch(text):
        raise ValueError(f"not a YYYY-MM-DD date: {text!r}")
    return date.fromisoformat(text)


def _parse_window(query: dict[str, str]) -> tuple[date, date] | None:
    if "from" not in query and "to" not in query:
        return None
    if "from" not in query or "to" not in query:
        raise exceptions.invalid_parameters()
    try:
        first, last = parse_date(query["from"]), parse_date(query["to"])
    except ValueError:
        raise exceptions.invalid_parameters() from None
    if first > last:
        raise exceptions.invalid_parameters()
    return first, last


def _list_accounts(
    sim: CloudflareSimulator, grant: TokenGrant, query: dict[str, str], faults: Sequence[Fault]
) -> Answer:
    """Cloudflare's List Accounts: the accounts this credential sees, ``per_page`` (5..50, default
    20; values outside are clamped) at a time."""
    try:
        page = int(query.get("page", "1"))
        per_page = int(query.get("per_page", str(ACCOUNTS_PER_PAGE_DEFAULT)))
    except ValueError:
        return Answer.error(exceptions.invalid_parameters())
    if page < 1:
        return Answer.error(exceptions.invalid_parameters())
    per_page = min(max(per_page, ACCOUNTS_PER_PAGE_MIN), ACCOUNTS_PER_PAGE_MAX)
    visible = [a for a in sim.accounts() if grant.sees(a.account_id)]
    shown = visible[(page - 1) * per_page : page * per_page]
    records = [
        {
            "id": a.account_id,
            "name": a.name,
            "type": "standard",
            "settings": {
                "enforce_twofactor": False,
                "use_account_custom_ns_by_default": False,
                "default_nameservers": "cloudflare.standard",
                "abuse_contact_email": None,
            },
            "created_on": a.created_on,
        }
        for a in shown
    ]
    paging = {
        "page": page,
        "per_page": per_page,
        "count": len(records),
        "total_count": len(visible),
        "total_pages": math.ceil(len(visible) / per_page),
    }
    return Answer(200, _Envelope.of(faults, paging).wrap([json.dumps(records).encode()]))
