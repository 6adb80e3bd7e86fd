"""Client-side rate limiting driven by the API's own ``Ratelimit`` header, shared by every thread.

Cloudflare allows 1,200 requests per 5 minutes per token and answers the next one with 429 *and a block
of every call of that token for up to 5 minutes*: dashboards, Terraform and other DAGs included. Retrying
after a 429 is too late. So each request first reserves a slot from the budget the API last reported
(``Ratelimit: "default";r=<remaining>;t=<seconds to reset>``); with none left it waits for the reset, or,
when the reset is further away than the caller may wait, refuses at once (:class:`RateLimitExhausted`)
so the caller can defer instead of sending a request that would start a block.

One :class:`RateLimitBudget` exists per credential in a process (:func:`budget_for_credential`), keyed by
a hash of it, so every hook, thread and task of the process that uses the same token shares one budget.
Other processes are only seen through the ``r`` the API reports. The estimate is conservative: each answer
counts every other request still in flight as spent, and within one window the estimate only goes down.
After the reported reset, one request goes first (a probe) and the others wait for its answer, so the new
window's budget is read before it is spent. An API that sends no ``Ratelimit`` header is not throttled.

Across processes and machines (Airflow runs every task in a process of its own), the budget keeps a
*reserve*: it sends only while more than ``reserve`` requests are left, where the reserve is the number of
other requests that may be in flight unseen, ``concurrent_tasks - 1`` (the slots of the token's Airflow
pool), and at least 2 % of the quota the API reports in ``Ratelimit-Policy``. Why this holds for any number
of processes: take the last answer, in the API's order, that let any request go out in a window. When it
was counted at least ``concurrent_tasks`` requests were left; after it, each of the ``concurrent_tasks``
senders (pool slots) can send at most one more request before it reads a newer answer, so the window is
never overshot. A slot passes from one task to the next, so a task leaves it in the same state: a task
that saw the reserve reached waits for the reset before it gives its slot up (:meth:`RateLimitBudget.handover_wait`),
and the next task's first request, sent blind, is that slot's "one more request".
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType

log = logging.getLogger(__name__)

HEADER = "Ratelimit"
POLICY_HEADER = "Ratelimit-Policy"
#: The least share of the reported quota kept in reserve for requests of other processes still in flight.
MIN_RESERVE_SHARE = 0.02


def parse_ratelimit(value: str | None) -> tuple[int, float] | None:
    """``(remaining, seconds to reset)`` from a ``Ratelimit`` header; None if absent or unreadable.

    The header is a list of policies (``"default";r=50;t=30, "burst";r=3;t=1``); the one with the fewest
    requests left is the one that binds (for a tie, the later reset).
    """
    binding: tuple[int, float] | None = None
    for item in (value or "").split(","):
        params = dict(part.strip().partition("=")[::2] for part in item.split(";")[1:])
        try:
            candidate = (max(0, int(float(params["r"]))), max(0.0, float(params["t"])))
        except (KeyError, ValueError):
            continue
        if binding is None or (candidate[0], -candidate[1]) < (binding[0], -binding[1]):
            binding = candidate
    return binding


def parse_ratelimit_policy(value: str | None) -> int | None:
    """The quota (``q``) of the most restrictive policy in a ``Ratelimit-Policy`` header; None if absent.

    ``"default";q=1200;w=300`` -> 1200; ``"default";q=1200;w=300, "burst";q=100;w=60`` -> 100.
    """
    quotas = []
    for item in (value or "").split(","):
        params = dict(part.strip().partition("=")[::2] for part in item.split(";")[1:])
        try:
            quotas.append(max(0, int(float(params["q"]))))
        except (KeyError, ValueError):
            continue
    return min(quotas) if quotas else None


class RateLimitExhausted(Exception):
    """No request is left in the current window, and the reset is further away than the caller may wait.

    :param wait: seconds until the API resets the budget
    """

    def __init__(self, wait: float) -> None:
        self.wait = wait
        super().__init__(f"rate limit exhausted: the budget resets in {wait:.1f} s")


class RateLimitSlot:
    """The right to send one request. Report its answer's headers with :meth:`answered`; leaving the
    ``with`` block without an answer (a network error) gives the slot back with nothing learnt."""

    def __init__(self, budget: RateLimitBudget, generation: int, probe: bool) -> None:
        self._budget = budget
        self.generation = generation
        self.probe = probe
        self._settled = False

    def answered(self, headers: Mapping[str, str]) -> None:
        """Record the answer's rate-limit headers (any status, 429 included)."""
        if not self._settled:
            self._settled = True
            self._budget._settle(self, headers)

    def __enter__(self) -> RateLimitSlot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._settled:
            self._settled = True
            self._budget._settle(self, None)


def _wait_on(condition: threading.Condition, seconds: float) -> None:
    condition.wait(seconds)


class RateLimitBudget:
    """The requests one credential may still send in the API's current window; thread-safe.

    :param clock: monotonic seconds (injectable for tests)
    :param wait: blocks on the condition for up to the given seconds (injectable with ``clock``)
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[threading.Condition, float], None] = _wait_on,
    ) -> None:
        self._clock = clock
        self._wait = wait
        self._condition = threading.Condition()
        self._remaining: int | None = None  # None: unknown until an answer reports it
        self._reset_at = 0.0
        self._generation = 0  # one per window; answers from an earlier window do not set the budget
        self._in_flight = 0
        self._probe_in_flight = False
        self._reported = True  # False once an answer came without the header: then never throttle
        self._concurrent_tasks = 1
        self._quota: int | None = None  # from Ratelimit-Policy, once an answer reports it

    def share_with(self, concurrent_tasks: int) -> None:
        """Keep a reserve for ``concurrent_tasks - 1`` other senders (the largest number any caller gave)."""
        with self._condition:
            self._concurrent_tasks = max(self._concurrent_tasks, concurrent_tasks)

    @property
    def held_back(self) -> int:
        """Requests of each window left unspent: those other processes may have in flight, unseen."""
        share = 0 if self._quota is None else int(self._quota * MIN_RESERVE_SHARE)
        return max(self._concurrent_tasks - 1, share)

    def handover_wait(self) -> float:
        """Seconds until the window resets if this process saw its budget down to the reserve, else 0.

        A task waits this long before giving its pool slot to another task, whose first request goes out
        before it can read the budget (see the module docstring).
        """
        with self._condition:
            if self._remaining is None or self._remaining > self.held_back:
                return 0.0
            return max(0.0, self._reset_at - self._clock())

    def reserve(self, max_wait: float) -> RateLimitSlot:
        """Take a slot, waiting up to ``max_wait`` seconds for the window to reset if none is left.

        :raises RateLimitExhausted: none is left and the reset is more than ``max_wait`` seconds away;
            raised at once, without waiting.
        """
        deadline = self._clock() + max(0.0, max_wait)
        announced = False
        with self._condition:
            while True:
                now = self._clock()
                if self._remaining is not None and now >= self._reset_at:
                    self._generation += 1  # the window has reset: read the new budget first
                    self._remaining = None
                if not self._reported:
                    return self._take(probe=False)
                if self._remaining is None:
                    if not self._probe_in_flight:
                        self._probe_in_flight = True
                        return self._take(probe=True)
                    if now >= deadline:  # the probe is slow, not the budget short: go unthrottled
                        return self._take(probe=False)
                    self._wait(self._condition, deadline - now)
                    continue
                if self._remaining > self.held_back:
                    self._remaining -= 1
                    return self._take(probe=False)
                wait = self._reset_at - now
                if self._reset_at > deadline:
                    raise RateLimitExhausted(wait)
                if not announced:
                    announced = True
                    log.info(
                        "Cloudflare rate limit: %d request(s) left for this credential, kept for other tasks "
                        "sharing it; waiting %.1f s for the window to reset.",
                        self._remaining,
                        wait,
                    )
                self._wait(self._condition, wait)

    def _take(self, probe: bool) -> RateLimitSlot:
        self._in_flight += 1
        return RateLimitSlot(self, self._generation, probe)

    def _settle(self, slot: RateLimitSlot, headers: Mapping[str, str] | None) -> None:
        with self._condition:
            self._in_flight -= 1
            if slot.probe:
                self._probe_in_flight = False
            reported = parse_ratelimit(headers.get(HEADER)) if headers is not None else None
            quota = parse_ratelimit_policy(headers.get(POLICY_HEADER)) if headers is not None else None
            if quota is not None:
                self._quota = quota
            if headers is not None and reported is None and self._remaining is None:
                self._reported = False
            if reported is not None:
                self._reported = True
                self._learn(slot, *reported)
            self._condition.notify_all()

    def _learn(self, slot: RateLimitSlot, remaining: int, reset_in: float) -> None:
        now = self._clock()
        # Requests still in flight may not have been counted yet when the API answered this one.
        estimate = max(0, remaining - self._in_flight)
        if remaining == 0:
            # Nothing left, whatever window this answer came from (a 429 block may outlast the window).
            self._remaining = 0
            self._reset_at = max(self._reset_at, now + reset_in)
        elif slot.generation != self._generation:
            return  # an answer from a window that has since reset says nothing about this one
        elif self._remaining is None:
            self._remaining = estimate
            self._reset_at = now + reset_in
        else:
            # The window's reset stays the first one reported: later answers may only come from before a
            # block that has since pushed it back.
            self._remaining = min(self._remaining, estimate)


_budgets: dict[str, RateLimitBudget] = {}
_budgets_lock = threading.Lock()


def budget_for_credential(*credential: str) -> RateLimitBudget:
    """The process-wide budget of one credential (e.g. base URL and token; email and Global API key).

    Only a SHA-256 hash of the parts is kept, never the credential itself.
    """
    key = hashlib.sha256("\0".join(credential).encode()).hexdigest()
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = RateLimitBudget()
        return budget
