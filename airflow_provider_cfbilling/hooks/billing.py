"""Hook for Cloudflare's PayGo billable-usage API: authentication, HTTP, retries and path fallback.

Only this module talks HTTP. It imports nothing heavier than requests, so a DAG file that imports an
operator or sensor of this provider stays cheap to parse.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import platform
import random
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import requests
import tenacity
from airflow.exceptions import AirflowNotFoundException  # the Task SDK's class, re-exported (3.3)
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from airflow_provider_cfbilling import CONNECTION_FIELDS, DISTRIBUTION_NAME, __version__
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
    CloudflareTLSError,
)
from airflow_provider_cfbilling.utils.periods import BillingPeriod, billing_period_at, parse_instant
from airflow_provider_cfbilling.utils.ratelimit import RateLimitBudget, RateLimitExhausted, budget_for_credential
from airflow_provider_cfbilling.utils.spool import SpooledRecords, scan_envelope, scan_head
from airflow_provider_cfbilling.utils.validation import validate_account_id, validate_window

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRY_WAIT = 60.0
# Added to a 429's Retry-After so that the tasks it released do not all send at the same instant; a retry
# budget of N seconds honours a Retry-After of N seconds plus this.
RATE_LIMIT_JITTER = 1.0
# List Accounts: Cloudflare's largest page.
ACCOUNTS_PATH = "/accounts"
ACCOUNTS_PER_PAGE = 50

# Cloudflare's documented path first, then the older ones it replaced, newest first: the endpoint has moved
# twice, and an account may still be served on an older path only.
USAGE_PATHS = (
    "/accounts/{account_id}/billable-usage",
    "/accounts/{account_id}/paygo-usage",
    "/accounts/{account_id}/billing/usage/paygo",
)
INFO_PATHS = (
    "/accounts/{account_id}/billable-usage/info",
    "/accounts/{account_id}/paygo-usage-info",
)
NO_ROUTE_CODES = frozenset({7000, 7003})

# The path template that last answered, per (connection id, base URL, endpoint kind), for this process:
# every task builds a new hook, and without this memory each would pay for the moved path again.
_learned_paths: dict[tuple[str, str, str], str] = {}
_learned_paths_lock = threading.Lock()
AUTHENTICATION_CODES = frozenset({9106, 6003, 10000})
PERMISSION_CODES = frozenset({9109})
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})

USER_AGENT = f"{DISTRIBUTION_NAME}/{__version__} requests/{requests.__version__} python/{platform.python_version()}"


@dataclass(frozen=True)
class _ConnectionSettings:
    """What the hook reads from the Airflow connection, validated once. Credentials stay out of repr."""

    conn_id: str
    base_url: str
    headers: dict[str, str] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)
    account_id: str | None
    timeout: float
    max_retry_wait: float
    concurrent_tasks: int
    usage_path: str | None  # None: not configured, the known paths are tried
    info_path: str | None
    verify: bool | str


class CloudflareBillingHook(BaseHook):
    """
    Interact with Cloudflare's PayGo billable-usage API.

    The connection (type ``cloudflare``) holds the API token with the *Billing Read* permission in
    ``password``. With ``login`` set to an email, ``password`` is read as a Global API key instead and
    the legacy ``X-Auth-Email``/``X-Auth-Key`` headers are sent. ``host`` may override the API base URL.
    Extras: ``account_id`` (default account), ``timeout``, ``max_retry_wait``, ``concurrent_tasks``,
    ``usage_path``, ``info_path``, ``verify`` (TLS verification, or a CA bundle path) and
    ``allow_insecure_http``.

    :param cloudflare_conn_id: The Airflow connection id. Default ``cloudflare_default``.
    :param timeout: Seconds to wait for a connection and for each read; overrides the connection's
        ``timeout`` extra (default 30).
    :param max_retry_wait: Total seconds the hook may sleep between retries of one call; overrides the
        connection's ``max_retry_wait`` extra (default 60). A 429 asking for longer raises
        :class:`~airflow_provider_cfbilling.exceptions.CloudflareRateLimitError` at once, and so does a
        request that would have to wait longer for the token's rate-limit window: requests are throttled
        before they are sent, on the budget the API reports in its ``Ratelimit`` header, shared by every
        hook and thread of the process that uses the same credentials, keeping back the requests that the
        connection's ``concurrent_tasks`` other tasks may have in flight (see ``utils/ratelimit.py``).
    :param max_rate_limit_wait: Longest wait for the rate limit (a 429's ``Retry-After``, or the reset of a
        spent window) spent in this process; a longer one raises
        :class:`~airflow_provider_cfbilling.exceptions.CloudflareRateLimitError` at once, so that a
        deferrable task can wait in the triggerer instead. Default: ``max_retry_wait``.
    """

    conn_name_attr = "cloudflare_conn_id"
    default_conn_name = "cloudflare_default"
    conn_type = "cloudflare"
    hook_name = "Cloudflare"

    def __init__(
        self,
        cloudflare_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retry_wait: float | None = None,
        max_rate_limit_wait: float | None = None,
    ) -> None:
        super().__init__()
        self.cloudflare_conn_id = cloudflare_conn_id
        self._timeout = timeout
        self._max_retry_wait = max_retry_wait
        self._max_rate_limit_wait = max_rate_limit_wait
        # How messages name the connection; see test_connection for when it cannot be named.
        self._where = f"connection '{cloudflare_conn_id}'"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cloudflare_conn_id={self.cloudflare_conn_id!r})"

    # -- connection -------------------------------------------------------------------------------

    @cached_property
    def settings(self) -> _ConnectionSettings:
        """The connection's settings, validated; credentials are registered with Airflow's masker."""
        where = self._where
        if not isinstance(self.cloudflare_conn_id, str) or not self.cloudflare_conn_id.strip():
            raise CloudflareBillingInputError(
                f"cloudflare_conn_id={self.cloudflare_conn_id!r} is blank (did a template render to nothing?): "
                "pass the id of a connection of type 'cloudflare', or leave it unset for 'cloudflare_default'."
            )
        try:
            conn = self.get_connection(self.cloudflare_conn_id)
        except AirflowNotFoundException:
            raise CloudflareBillingInputError(
                f"The connection '{self.cloudflare_conn_id}' is not defined: create a connection of type "
                f"'cloudflare' with that id (UI, `airflow connections add`, or "
                f"AIRFLOW_CONN_{self.cloudflare_conn_id.upper()}), or pass cloudflare_conn_id=... naming an "
                "existing one."
            ) from None
        # Airflow's connection form saves every declared extra, null when left empty, and a hand-written
        # extra may hold "": either means "the default", for every extra alike.
        extra = {key: value for key, value in conn.extra_dejson.items() if not _is_unset(value)}
        secret = conn.password or ""
        if not secret.strip():
            raise CloudflareBillingInputError(
                f"{_sentence(where)} has no credentials: put a Cloudflare API token with the Billing Read permission "
                "in its password field (or a Global API key, with the account email in login)."
            )
        secret = secret.strip()
        mask_secret(secret)
        if conn.login:
            headers = {"X-Auth-Email": conn.login.strip(), "X-Auth-Key": secret}
        else:
            # The masker replaces the token wherever it appears, so the header's value needs no mask of its own.
            headers = {"Authorization": f"Bearer {secret}"}
        headers["User-Agent"] = USER_AGENT
        headers["Accept"] = "application/json"

        base_url = _validate_base_url(
            conn.host or DEFAULT_BASE_URL, where, _as_bool(extra.get("allow_insecure_http"), where)
        )
        account_id = extra.get("account_id")
        return _ConnectionSettings(
            conn_id=self.cloudflare_conn_id,
            base_url=base_url,
            headers=headers,
            secrets=(secret,),
            # Checked here, not at first use: a connection saved with a malformed id is refused by
            # `airflow connections test` and by every task, even one that passes its own account_id.
            account_id=None if account_id is None else validate_account_id(account_id, _extra(where, "account_id")),
            timeout=_seconds(
                self._timeout,
                "the hook's timeout argument",
                extra.get("timeout"),
                _extra(where, "timeout"),
                DEFAULT_TIMEOUT,
                allow_zero=False,
            ),
            max_retry_wait=_seconds(
                self._max_retry_wait,
                "the hook's max_retry_wait argument",
                extra.get("max_retry_wait"),
                _extra(where, "max_retry_wait"),
                DEFAULT_MAX_RETRY_WAIT,
                allow_zero=True,
            ),
            concurrent_tasks=_concurrent_tasks(extra.get("concurrent_tasks"), where),
            usage_path=_configured_path(extra.get("usage_path"), where, "usage_path"),
            info_path=_configured_path(extra.get("info_path"), where, "info_path"),
            verify=_verify_setting(extra.get("verify"), where),
        )

    @property
    def account_id(self) -> str:
        """The connection's default account id (``account_id`` extra), validated."""
        return validate_account_id(self.settings.account_id, _extra(self._where, "account_id"))

    def get_conn(self) -> requests.Session:
        """A requests Session carrying the auth headers; connections are reused across calls."""
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update(self.settings.headers)
        session.verify = self.settings.verify
        return session

    @cached_property
    def _rate_limit(self) -> RateLimitBudget:
        """The budget shared by every hook and thread of this process that uses the same credentials."""
        budget = budget_for_credential(self.settings.base_url, *self.settings.secrets)
        budget.share_with(self.settings.concurrent_tasks)
        return budget

    @property
    def _rate_limit_wait(self) -> float:
        """Longest in-process wait for the rate limit (see ``max_rate_limit_wait``)."""
        if self._max_rate_limit_wait is None:
            return self.settings.max_retry_wait
        return min(self._max_rate_limit_wait, self.settings.max_retry_wait)

    # -- public API -------------------------------------------------------------------------------

    def get_paygo_usage(
        self,
        account_id: str | None = None,
        from_: Any = None,
        to: Any = None,
    ) -> list[dict[str, Any]]:
        """
        Return the account's billable usage records (``GET /accounts/{account_id}/billable-usage``).

        Without ``from_`` and ``to`` the API answers with the current billing period. With both, they
        are sent as UTC dates (``YYYY-MM-DD``); how the API reads ``to`` (inclusive or not) is the API's.

        :param account_id: The account; default: the connection's ``account_id`` extra.
        :param from_: Start of the window: a date, an aware datetime (its UTC date), or an ISO string.
        :param to: End of the window, same types as ``from_``. Give both or neither.
        :return: One dict per record, keyed by the API's field names, exactly as the API sent them: JSON
            integers as ``int``, other JSON numbers as :class:`~decimal.Decimal` read from the answer's text
            (a cost keeps every digit; never a binary float).
        """
        account = self._account(account_id)
        result = self._get("usage", account, _window_params(from_, to))
        if not isinstance(result, list) or not all(isinstance(row, dict) for row in result):
            raise _not_a_list_of_records(account, _describe_type(result))
        return result

    def download_paygo_usage(
        self,
        account_id: str | None = None,
        from_: Any = None,
        to: Any = None,
        *,
        directory: str | None = None,
    ) -> SpooledRecords:
        """
        :meth:`get_paygo_usage` for answers too large to hold in memory as Python objects.

        The body is written to a local file as it arrives (inside ``directory``), its envelope checked
        (``success`` and the type of ``result``, reading no further than that takes), and the records are
        parsed one at a time each time the result is iterated: the same records, in the same order, with the
        same values as :meth:`get_paygo_usage`. Each iteration also checks that every item is a record and
        that the document is complete (raising :class:`CloudflareResponseError` otherwise), so a large answer
        is parsed once, by the pass that uses it. Close the result (or delete ``directory``) to remove the file.

        :param account_id: The account; default: the connection's ``account_id`` extra.
        :param from_: Start of the window, as for :meth:`get_paygo_usage`.
        :param to: End of the window, as for :meth:`get_paygo_usage`.
        :param directory: Where to spool the body; default: the system's temporary directory.
        :return: A sized, re-iterable :class:`~airflow_provider_cfbilling.utils.spool.SpooledRecords`.
        """
        account = self._account(account_id)
        params = _window_params(from_, to)
        return self._get("usage", account, params, spool_dir=directory or tempfile.gettempdir())

    def get_billing_info(self, account_id: str | None = None) -> dict[str, Any]:
        """
        Return the account's billing info: ``{"covered": bool, "subscriptions": [...]}``.

        Each subscription carries ``id``, ``billing_cycle_anchor_timestamp``, ``start_timestamp`` and
        optionally ``end_timestamp``: what the billing-period arithmetic needs.

        :param account_id: The account; default: the connection's ``account_id`` extra.
        """
        account = self._account(account_id)
        result = self._get("info", account, None)
        if not isinstance(result, dict):
            raise CloudflareResponseError(
                f"Cloudflare answered the billing-info call for account {account} with a 'result' of type "
                f"{_describe_type(result)}, not an object with 'covered' and 'subscriptions'."
            )
        return result

    def list_accounts(self) -> list[dict[str, Any]]:
        """
        Return every account these credentials can see (``GET /accounts``, all pages).

        Pages are read until the page count the API reports (``result_info.total_pages``); an account that
        shows up on two pages (accounts added while paging) is listed once.

        :return: ``[{"id": ..., "name": ...}]`` in the API's order; ``name`` may be None.
        """
        accounts: dict[str, dict[str, Any]] = {}
        page = 1
        while True:
            params = {"page": str(page), "per_page": str(ACCOUNTS_PER_PAGE)}
            result, paging = self._request(ACCOUNTS_PATH, None, params, None, with_paging=True)
            if not isinstance(result, list) or not all(
                isinstance(item, dict) and isinstance(item.get("id"), str) for item in result
            ):
                raise CloudflareResponseError(
                    f"Cloudflare answered List Accounts (page {page}) with a 'result' that is not a list of "
                    f"accounts with an 'id' ({_describe_type(result)}). A proxy or an API change; retry later, "
                    "and report it if it persists."
                )
            for item in result:
                accounts.setdefault(item["id"], {"id": item["id"], "name": item.get("name")})
            total_pages = paging.get("total_pages") if isinstance(paging, dict) else None
            # Without a page count, a short or empty page is the last one.
            more = page < total_pages if isinstance(total_pages, int) else len(result) >= ACCOUNTS_PER_PAGE
            if not more or not result:
                return list(accounts.values())
            page += 1

    def wait_for_rate_limit_handover(self) -> float:
        """
        Before a task gives up its pool slot: if this process spent the token's rate-limit window down to
        the requests kept for other tasks, wait for the window to reset.

        The next task in the slot sends its first request before it can read the budget; this wait is what
        makes that request safe (see ``utils/ratelimit.py``). A process that made no request does not wait,
        nor does one whose reset is further away than ``max_retry_wait`` (a block: every request of the
        token is refused until it ends anyway).

        :return: the seconds waited
        """
        if "_rate_limit" not in self.__dict__:
            return 0.0
        wait = self._rate_limit.handover_wait()
        if wait > self.settings.max_retry_wait:
            self.log.warning(
                "This token's rate limit resets in %.0f s, longer than this connection's max_retry_wait: not "
                "waiting for it before handing the pool slot on.",
                wait,
            )
            return 0.0
        if wait > 0:
            self.log.info(
                "This token's rate-limit window is spent down to the requests kept for other tasks: "
                "waiting %.1f s for it to reset before handing the pool slot on.",
                wait,
            )
            time.sleep(wait)
        return wait

    def get_billing_period(
        self, account_id: str | None = None, *, at: Any, subscription_id: str | None = None
    ) -> BillingPeriod:
        """
        Return the billing period of the account that contains the instant ``at``: one info call.

        Periods are monthly, in UTC, on whole days: from midnight of the day of the subscription's
        ``billing_cycle_anchor_timestamp`` (an anchor at ``2024-03-17T13:45:12Z`` gives periods starting on
        the 17th at ``00:00:00Z``, as the usage rows' ``BillingPeriodStart``), anchors on the 29th to 31st
        clamping to a short month's last day. See
        :func:`~airflow_provider_cfbilling.utils.periods.billing_period_at` for the choice of subscription
        and for cancelled subscriptions.

        :param account_id: The account; None for the connection's ``account_id`` extra.
        :param at: The instant to place: a date (midnight UTC), an aware datetime or an ISO 8601 string.
        :param subscription_id: The subscription whose cycle defines the periods; default: the
            earliest-anchored one active at ``at``.
        :raises CloudflareNoBillingCycleError: the info answer says the account is not covered or lists no
            subscription.
        """
        account = self._account(account_id)
        moment = parse_instant(at, "at")  # checked before any request
        info = self.get_billing_info(account)
        if not info.get("covered") or not info.get("subscriptions"):
            state = "is not covered (covered: false)" if not info.get("covered") else "lists no subscription"
            raise CloudflareNoBillingCycleError(
                f"Cloudflare's billing info for account {account} {state}: there is no billing-cycle anchor to "
                f"place {moment.isoformat()} in a billing period. Check that the account is a self-serve (PayGo) "
                "account whose token may read its billing; or fetch a window of dates (from_ and to) instead."
            )
        return billing_period_at(info, moment, subscription_id, account=account)

    def test_connection(self) -> tuple[bool, str]:
        """
        Check the credentials and the Billing Read permission with one cheap call on the account.

        Airflow's UI tests the form's values as a copy saved under a random temporary connection id, which
        the hook cannot tell from a real one: its messages say "this connection" rather than show that id.
        """
        self._where = "this connection"
        try:
            account = self.account_id
            try:
                info = self.get_billing_info(account)
                detail = f"{len(info.get('subscriptions') or [])} subscription(s)"
            except CloudflareRouteNotFoundError:
                # Accounts without the info endpoint still answer the usage call.
                detail = f"{len(self.get_paygo_usage(account))} usage record(s) this period"
        except CloudflareBillingError as exc:
            return False, str(exc)
        return (
            True,
            f"Connected to {self.settings.base_url}: billing of account {account} is readable ({detail}).",
        )

    # -- internals --------------------------------------------------------------------------------

    def _account(self, account_id: str | None) -> str:
        if account_id is None:
            return self.account_id
        return validate_account_id(account_id, "the account_id argument")

    def usage_url(self, account_id: str | None = None) -> str:
        """The URL of the account's usage endpoint: the path that answered last in this process (or the
        configured one), else Cloudflare's documented one. No request is sent."""
        candidates, _ = self._path_candidates("usage")
        return self.settings.base_url + candidates[0].format(account_id=self._account(account_id))

    def _path_candidates(self, kind: str) -> tuple[list[str], tuple[str, str, str] | None]:
        """The path templates to try, in order, and the memory key (None for a configured path)."""
        configured = self.settings.usage_path if kind == "usage" else self.settings.info_path
        if configured is not None:
            return [configured], None
        key = (self.cloudflare_conn_id, self.settings.base_url, kind)
        known = USAGE_PATHS if kind == "usage" else INFO_PATHS
        with _learned_paths_lock:
            learned = _learned_paths.get(key, known[0])
        return list(dict.fromkeys([learned, *known])), key

    def _get(self, kind: str, account_id: str, params: Mapping[str, str] | None, spool_dir: str | None = None) -> Any:
        """GET an endpoint, falling back to the next known path when one answers "no route"."""
        candidates, key = self._path_candidates(kind)
        tried: list[str] = []
        last_error: CloudflareRouteNotFoundError | None = None
        for template in candidates:
            path = template.format(account_id=account_id)
            try:
                result = self._request(path, account_id, params, spool_dir)
            except CloudflareRouteNotFoundError as exc:
                tried.append(path)
                last_error = exc
                continue
            if tried and key is not None:
                with _learned_paths_lock:
                    _learned_paths[key] = template
                self.log.warning(
                    "Cloudflare %s endpoint moved: %s answered 'no route'; using %s in this process from now on.",
                    kind,
                    ", ".join(tried),
                    template,
                )
            return result
        assert last_error is not None
        if key is None:
            advice = (
                f"The configured {kind} path answered 'no route'. Check the account id, and the connection extra "
                f"'{kind}_path' against Cloudflare's API docs; remove the extra to use the documented path."
            )
        else:
            advice = (
                f"None of the known {kind} paths answered. Check the account id, then look up the current "
                f"path in Cloudflare's API docs and set it in the connection extra '{kind}_path' "
                "(with {account_id} in it)."
            )
        raise CloudflareRouteNotFoundError(
            status=last_error.status,
            errors=last_error.errors,
            account_id=account_id,
            path=", ".join(tried),
            advice=advice,
        )

    def _request(
        self,
        path: str,
        account_id: str | None,
        params: Mapping[str, str] | None,
        spool_dir: str | None,
        *,
        with_paging: bool = False,
    ) -> Any:
        """One logical call: retried on 429/5xx/network errors within ``max_retry_wait`` seconds.

        :param account_id: the account the call is about, for messages; None for List Accounts
        :param with_paging: return ``(result, result_info)`` instead of the result
        """
        budget = self.settings.max_retry_wait
        rate_limit_wait = self._rate_limit_wait
        deadline = time.monotonic() + budget
        log = self.log
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda exc: _is_transient(exc, rate_limit_wait)),
            wait=_wait_for(budget),
            stop=_stop_after_sleeping(budget),
            before_sleep=lambda state: _log_retry(log, state),
            reraise=True,
        )
        # A used Retrying is a reference cycle: nothing in it may point at the hook, or the hook and its
        # session (with an open socket) live until the next full garbage collection.
        for attempt in retrying:
            with attempt:
                max_wait = min(deadline - time.monotonic(), rate_limit_wait)
                return self._request_once(path, account_id, params, max_wait, spool_dir, with_paging)

    def _request_once(
        self,
        path: str,
        account_id: str | None,
        params: Mapping[str, str] | None,
        max_wait: float,
        spool_dir: str | None,
        with_paging: bool = False,
    ) -> Any:
        url = self.settings.base_url + path
        try:
            slot = self._rate_limit.reserve(max_wait=max_wait)
        except RateLimitExhausted as exc:
            raise _rate_limit_error(exc.wait, account_id, path, self._rate_limit_wait) from None
        try:
            with slot:
                # `verify` is passed per request: requests lets REQUESTS_CA_BUNDLE override session.verify.
                response = self._session.get(
                    url,
                    params=params,
                    timeout=self.settings.timeout,
                    verify=self.settings.verify,
                    stream=spool_dir is not None,
                )
                slot.answered(response.headers)
                if spool_dir is not None and 200 <= response.status_code < 300:
                    spooled = _download(response, spool_dir)
                    body = b""
                else:
                    spooled, body = None, response.content
        except requests.exceptions.SSLError as exc:
            raise CloudflareTLSError(
                f"TLS verification of {self.settings.base_url} failed{_for_account(account_id)} on {path}: "
                f"{self._redact(type(exc).__name__ + ': ' + str(exc))}. Check the host, or point the connection "
                "extra 'verify' at the CA bundle that signed its certificate."
            ) from None
        except requests.RequestException as exc:
            raise CloudflareConnectionError(
                f"Could not reach the Cloudflare API at {self.settings.base_url}{_for_account(account_id)} "
                f"on {path}: {self._redact(type(exc).__name__ + ': ' + str(exc))}. Check the network and "
                "the connection's host; transient failures were retried."
            ) from None
        if spooled is not None:
            assert account_id is not None  # only usage answers are spooled
            return self._check_spooled(spooled, response.status_code, account_id, path)
        result = self._parse(response.status_code, response.headers, body, account_id, path)
        if with_paging:
            # The body already parsed as a success envelope; List Accounts' pages are small.
            return result, json.loads(body).get("result_info")
        return result

    def _check_spooled(self, spool_path: str, status: int, account_id: str, path: str) -> SpooledRecords:
        """Check a spooled 2xx answer's envelope, reading no more of it than that takes.

        The records are checked (each an object, the document complete) by the pass that reads them:
        a large answer is parsed once, not once here and again there.
        """
        try:
            with open(spool_path, "rb") as spool:
                envelope = scan_head(spool)
                if envelope.success is not True:
                    envelope = scan_envelope(spool)  # a failure: its errors, for the message
            if envelope.success is None:
                raise CloudflareResponseError(
                    f"Cloudflare answered HTTP {status} for account {account_id} on {path} with JSON "
                    "that is not a Cloudflare envelope (no 'success'). A proxy or an incomplete answer; retry later."
                )
            if envelope.success is not True:
                raise _success_false_error(status, envelope.errors, account_id, path)
            if envelope.result_kind != "array":
                raise _not_a_list_of_records(account_id, envelope.result_kind)
        except BaseException:
            os.unlink(spool_path)
            raise
        return SpooledRecords(
            spool_path, not_a_record=lambda kind: _not_a_list_of_records(account_id, f"list with a {kind} item")
        )

    def _parse(self, status: int, headers: Mapping[str, str], body: bytes, account_id: str | None, path: str) -> Any:
        """Turn one HTTP answer into the envelope's ``result``, or the matching exception."""
        envelope: Any = None
        try:
            # Numbers with a fraction or exponent are read from the text as Decimal, never through a binary
            # float: a cost keeps every digit Cloudflare sent.
            envelope = json.loads(body, parse_float=Decimal)
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or "success" not in envelope:
            snippet = self._redact(body[:160].decode("utf-8", "replace")).strip()
            if status >= 500 or status == 429:
                raise _api_error(status, [], account_id, path, headers, self.settings.max_retry_wait)
            raise CloudflareResponseError(
                f"Cloudflare answered HTTP {status}{_for_account(account_id)} on {path} with a body that is "
                f"not a Cloudflare JSON envelope ({len(body)} bytes, starting {snippet[:80]!r}). A proxy or an "
                "incomplete answer; retry later."
            )
        errors = envelope.get("errors") or []
        if 200 <= status < 300 and envelope.get("success") is True:
            return envelope.get("result")
        if 200 <= status < 300:
            raise _success_false_error(status, errors, account_id, path)
        raise _api_error(status, errors, account_id, path, headers, self.settings.max_retry_wait)

    def _redact(self, text: str) -> str:
        for secret in self.settings.secrets:
            text = text.replace(secret, "***")
        return text


# -- module helpers (pure) ------------------------------------------------------------------------


def _api_error(
    status: int,
    errors: list[dict[str, Any]],
    account_id: str | None,
    path: str,
    headers: Mapping[str, str],
    max_retry_wait: float,
) -> CloudflareAPIError:
    """Map an error answer to the exception a user can act on."""
    codes = {e.get("code") for e in errors if isinstance(e, dict)}
    common: dict[str, Any] = {"status": status, "errors": errors, "account_id": account_id, "path": path}
    if status == 429:
        retry_after = _retry_after_seconds(headers)
        return CloudflareRateLimitError(
            retry_after=retry_after,
            advice=(
                f"Rate limited: Cloudflare asked to wait {retry_after:.0f} s (this hook waits at most "
                f"{max_retry_wait:.0f} s in total). Cloudflare allows 1,200 requests per 5 minutes per token; "
                "spread the load or retry after the wait."
            ),
            **common,
        )
    if codes & NO_ROUTE_CODES or (status == 404 and not codes):
        return CloudflareRouteNotFoundError(
            advice="No route: the path moved or the account id is not routable.", **common
        )
    if codes & AUTHENTICATION_CODES:
        return CloudflareAuthenticationError(
            advice=(
                "The credentials were rejected: they are missing, malformed, wrong or expired. Put a valid API "
                "token in the connection's password (or a Global API key with the account email in login)."
            ),
            **common,
        )
    if codes & PERMISSION_CODES or status == 403:
        return CloudflarePermissionError(
            advice=(
                f"The credentials may not read billing{_for_account(account_id)}: the API token needs the "
                "'Billing Read' permission on that account, and the account must be a PayGo (self-serve) "
                "account."
            ),
            **common,
        )
    if status >= 500:
        return CloudflareServerError(
            advice="Cloudflare had a server error; it was retried. Retry later or check cloudflarestatus.com.",
            **common,
        )
    if 1183 in codes:
        return CloudflareAPIError(
            advice="The API rejected the request parameters: check from_/to (ISO dates, from_ <= to).",
            **common,
        )
    return CloudflareAPIError(advice="The request was rejected; see Cloudflare's error message.", **common)


def _rate_limit_error(
    wait: float, account_id: str | None, path: str, max_retry_wait: float
) -> CloudflareRateLimitError:
    """The token's budget is spent (per the API's Ratelimit header): refuse before sending, not after a 429."""
    return CloudflareRateLimitError(
        status=429,
        errors=[],
        account_id=account_id,
        path=path,
        retry_after=wait,
        advice=(
            f"Not sent: this token has no request left in Cloudflare's rate-limit window, which resets in "
            f"{wait:.0f} s (this hook waits at most {max_retry_wait:.0f} s in total). Sending now would get a "
            "429 and block the token for up to 5 minutes; defer, or retry after the wait."
        ),
    )


def _retry_after_seconds(headers: Mapping[str, str]) -> float:
    """Seconds from ``Retry-After`` (delta-seconds or an HTTP date); 0 when absent or unreadable."""
    value = headers.get("Retry-After")
    if not value:
        return 0.0
    try:
        return max(0.0, float(Retry(0).parse_retry_after(value)))
    except InvalidHeader:
        return 0.0


def _log_retry(log: Any, state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    sleep = state.next_action.sleep if state.next_action else 0.0
    # The provider's messages end with a full stop; another library's may not.
    reason = str(error).rstrip(".")
    log.warning("Cloudflare call failed (attempt %d): %s. Retrying in %.1f s.", state.attempt_number, reason, sleep)


def _is_transient(exc: BaseException, budget: float) -> bool:
    """Worth retrying: network failures, 5xx, and 429s whose wait fits in the retry budget."""
    if isinstance(exc, CloudflareRateLimitError):
        return exc.retry_after <= budget
    if isinstance(exc, CloudflareTLSError):  # a certificate does not fix itself between attempts
        return False
    return isinstance(exc, (CloudflareConnectionError, CloudflareServerError))


def _wait_for(budget: float) -> Callable[[tenacity.RetryCallState], float]:
    """Honour ``Retry-After`` when the API sent one; otherwise exponential backoff with jitter."""
    backoff = tenacity.wait_exponential(multiplier=0.5, max=8.0) + tenacity.wait_random(0, 0.5)

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, CloudflareRateLimitError) and error.retry_after > 0:
            # Jitter, so that the tasks released by the same Retry-After do not all send at once. Not cut
            # to the budget: sending before Retry-After has passed only earns another 429.
            return error.retry_after + random.uniform(0, RATE_LIMIT_JITTER)
        return float(backoff(state))

    return wait


def _stop_after_sleeping(budget: float) -> Callable[[tenacity.RetryCallState], bool]:
    """Stop when the next wait would not end within ``budget`` seconds of the call's start.

    A 429's wait counts as the ``Retry-After`` it asked for, after the sleeps already taken (its jitter is
    not counted): a 429 asking for exactly ``budget`` seconds is waited out, not given up at once.
    """
    before_delay = tenacity.stop_before_delay(budget)

    def stop(state: tenacity.RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, CloudflareRateLimitError) and error.retry_after > 0:
            return state.idle_for + error.retry_after > budget
        return bool(before_delay(state))

    return stop


def _concurrent_tasks(value: Any, where: str) -> int:
    """The ``concurrent_tasks`` extra: a whole number of tasks, 1 or more (default 1)."""
    if value is None:
        return 1
    number = value
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        name = _sentence(_extra(where, "concurrent_tasks"))
        raise CloudflareBillingInputError(
            f"{name} is {value!r}: it must be a whole number of tasks, 1 or more: "
            "the slots of the Airflow pool that the tasks using this connection run in. Leave it empty for 1."
        )
    return number


def _validate_base_url(url: str, where: str, allow_insecure_http: bool) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise CloudflareBillingInputError(
            f"{_sentence(where)} host {url!r} is not an API base URL: use a full URL such as {DEFAULT_BASE_URL!r}, "
            "or leave host empty for the default."
        )
    if parts.scheme == "http" and not (allow_insecure_http or _is_loopback(parts.hostname)):
        raise CloudflareBillingInputError(
            f"{_sentence(where)} host {url!r} uses plain http: the API token would travel unencrypted. Use https, or "
            "set the extra 'allow_insecure_http': true if this is deliberate (e.g. a local proxy)."
        )
    return url


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _configured_path(template: Any, where: str, name: str) -> str | None:
    """A ``usage_path``/``info_path`` extra: None when unset (the known paths are tried), else the template."""
    if _is_unset(template):
        return None
    if not isinstance(template, str) or not template.startswith("/") or "{account_id}" not in template:
        raise CloudflareBillingInputError(
            f"{_sentence(where)} extra '{name}' is {template!r}: it must be a path starting with '/' that contains "
            "'{account_id}', e.g. '/accounts/{account_id}/billable-usage'."
        )
    return template


def _is_unset(value: Any) -> bool:
    """Null or a blank string: what the connection form saves for a field left empty."""
    return value is None or (isinstance(value, str) and not value.strip())


def _sentence(text: str) -> str:
    """A message that opens with a name ("connection 'x' ...", "the hook's ...") opens with a capital."""
    return text[:1].upper() + text[1:]


def _extra(where: str, key: str) -> str:
    """Name an extra as a user finds it: its key, and its label in the connection form."""
    return f"{where} extra '{key}' (the form's '{CONNECTION_FIELDS[key]['label']}' field)"


def _seconds(
    argument: float | None, argument_name: str, value: Any, source: str, default: float, *, allow_zero: bool
) -> float:
    """A duration from the hook's argument if given, else from the connection's extra, else the default."""
    if argument is not None:
        value, source = argument, argument_name
        fix = "Pass a number of seconds, or None to use the connection's setting."
    elif value is None:
        return default
    else:
        fix = f"Set it to a number such as {default:g}, or leave it empty for the default ({default:g})."
    try:
        # A JSON true is not a number of seconds, though float() would read it as 1.
        number = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (math.isfinite(number) and (number > 0 or (allow_zero and number == 0))):
        rule = "0 or a positive number" if allow_zero else "a positive number"
        raise CloudflareBillingInputError(f"{_sentence(source)} is {value!r}: it must be {rule} of seconds. {fix}")
    return number


def _verify_setting(value: Any, where: str) -> bool | str:
    """The ``verify`` extra: TLS verification on (default) or off, or the path of a CA bundle that exists."""
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        if os.path.isfile(text):
            return text
    name = _sentence(_extra(where, "verify"))
    raise CloudflareBillingInputError(
        f"{name} is {value!r}: use true (the default), false, or the path of an existing CA "
        "bundle file that signed the API's certificate."
    )


def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    name = _sentence(_extra(where, "allow_insecure_http"))
    raise CloudflareBillingInputError(f"{name} is {value!r}: use true or false.")


def _success_false_error(
    status: int, errors: list[dict[str, Any]], account_id: str | None, path: str
) -> CloudflareAPIError:
    """A 2xx answer whose envelope says ``success: false``: an error, never an empty result."""
    return CloudflareAPIError(
        status=status,
        errors=errors,
        account_id=account_id,
        path=path,
        advice="Cloudflare reported success: false on HTTP 200; no data was used. Retry later.",
    )


def _download(response: requests.Response, directory: str) -> str:
    """Write a streamed body to a new file in ``directory`` as it arrives; the file is removed on failure."""
    descriptor, spool_path = tempfile.mkstemp(dir=directory, prefix=".cfbilling-usage-", suffix=".json")
    try:
        with os.fdopen(descriptor, "wb") as spool:
            for chunk in response.iter_content(chunk_size=1 << 20):
                spool.write(chunk)
    except BaseException:
        os.unlink(spool_path)
        raise
    return spool_path


def _window_params(from_: Any, to: Any) -> dict[str, str] | None:
    window = validate_window(from_, to)
    return {"from": window[0].isoformat(), "to": window[1].isoformat()} if window else None


def _not_a_list_of_records(account_id: str, kind: str) -> CloudflareResponseError:
    return CloudflareResponseError(
        f"Cloudflare answered the usage call for account {account_id} with a 'result' of type {kind}, not a list "
        "of records. This is not 'no usage' (that is []); the API or a proxy misbehaved: retry later, and report "
        "it if it persists."
    )


def _for_account(account_id: str | None) -> str:
    """`` for account X`` in a message, or nothing for a call about no one account (List Accounts)."""
    return "" if account_id is None else f" for account {account_id}"


def _describe_type(value: Any) -> str:
    """The JSON name of a parsed value's type (what the API sent, not Python's name for it).

    Answers are parsed with ``parse_float=Decimal``: a JSON number is an ``int`` or a ``Decimal``, never a float.
    """
    names = {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        Decimal: "number",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)
