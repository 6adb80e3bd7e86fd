"""Client-side rate limiting: many workers share one token's budget and never trigger Cloudflare's block."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airflow_provider_cfbilling.exceptions import CloudflareRateLimitError
from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook
from airflow_provider_cfbilling.testing.simulator import STANDARD_ACCOUNT
from airflow_provider_cfbilling.utils import ratelimit
from airflow_provider_cfbilling.utils.ratelimit import (
    RateLimitBudget,
    RateLimitExhausted,
    budget_for_credential,
    parse_ratelimit,
    parse_ratelimit_policy,
)
from tests.conftest import connection_uri_json


class FakeClock:
    """Monotonic time that only moves when a waiter "sleeps" (the whole timeout, as if nobody woke it)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, condition: threading.Condition, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def header(remaining: int, reset_in: float, quota: int | None = None) -> dict[str, str]:
    headers = {"Ratelimit": f'"default";r={remaining};t={reset_in}'}
    if quota is not None:
        headers["Ratelimit-Policy"] = f'"default";q={quota};w=300'
    return headers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def budget(clock: FakeClock) -> RateLimitBudget:
    return RateLimitBudget(clock=clock, wait=clock.wait)


def spend(budget: RateLimitBudget, answer: Mapping[str, str] | None, max_wait: float = 0.0) -> None:
    with budget.reserve(max_wait) as slot:
        if answer is not None:
            slot.answered(answer)


# -- a DAG author's view first -------------------------------------------------------------------


@pytest.fixture
def limited_conn(sim: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh token (so a fresh process-wide budget) on a simulator enforcing 5 requests per second."""
    token = f"cfsim-ratelimit-{time.monotonic_ns()}"
    sim.add_token(token)
    sim.set_rate_limit((5, 1, 30))
    conn = connection_uri_json(sim.url, token, STANDARD_ACCOUNT, max_retry_wait=5)
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_LIMITED", conn)
    return "cloudflare_limited"


def test_concurrent_workers_share_the_budget_and_never_get_a_429(sim: Any, limited_conn: str) -> None:
    def fetch(_: int) -> int:
        return len(CloudflareBillingHook(limited_conn).get_paygo_usage())

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(fetch, range(12)))
    elapsed = time.monotonic() - started

    assert len(counts) == 12 and len(set(counts)) == 1 and counts[0] > 0
    statuses = [r["status"] for r in sim.requests]
    assert statuses.count(200) == 12 and 429 not in statuses
    assert elapsed >= 2.0  # 12 requests at 5 per second need three windows


def test_a_spent_budget_beyond_the_retry_budget_raises_before_sending(sim: Any, monkeypatch: Any) -> None:
    token = f"cfsim-ratelimit-{time.monotonic_ns()}"
    sim.add_token(token)
    sim.set_rate_limit((2, 60, 300))
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_LIMITED", connection_uri_json(sim.url, token, STANDARD_ACCOUNT, max_retry_wait=5)
    )
    hook = CloudflareBillingHook("cloudflare_limited")
    hook.get_paygo_usage()
    hook.get_paygo_usage()
    with pytest.raises(CloudflareRateLimitError, match="Not sent") as err:
        hook.get_paygo_usage()
    assert 55 <= err.value.retry_after <= 61
    refused = err.value
    assert (refused.status, refused.errors, refused.account_id) == (429, [], STANDARD_ACCOUNT)
    assert refused.path == f"/accounts/{STANDARD_ACCOUNT}/billable-usage"
    assert [r["status"] for r in sim.requests] == [200, 200]  # the refused call never reached the API


def test_a_process_that_spent_the_window_down_to_the_reserve_waits_for_the_reset_before_handing_over(
    sim: Any, monkeypatch: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    token = f"cfsim-handover-{time.monotonic_ns()}"
    sim.add_token(token)
    sim.set_rate_limit((3, 1, 30))  # 3 requests a second; a pool of 3 tasks keeps 2 for the other two
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_HANDOVER",
        connection_uri_json(sim.url, token, STANDARD_ACCOUNT, max_retry_wait=5, concurrent_tasks=3),
    )
    hook = CloudflareBillingHook("cloudflare_handover")
    assert hook.wait_for_rate_limit_handover() == 0.0  # no request sent: nothing to hand over
    hook.get_paygo_usage()

    capsys.readouterr()
    started = time.monotonic()
    waited = hook.wait_for_rate_limit_handover()
    elapsed = time.monotonic() - started
    assert 0 < waited <= 1  # the 1 s window's reset
    assert elapsed >= waited  # slept through it, however short
    announced = [line for line in capsys.readouterr().out.splitlines() if "rate-limit window" in line]
    assert len(announced) == 1
    assert (
        "] This token's rate-limit window is spent down to the requests kept for other tasks: waiting "
        f"{waited:.1f} s for it to reset before handing the pool slot on. ["
    ) in announced[0]

    assert hook.wait_for_rate_limit_handover() == 0.0  # the window has reset: no wait, no message
    assert "rate-limit window" not in capsys.readouterr().out


def test_the_budget_is_keyed_by_a_hash_of_the_credential_never_the_credential() -> None:
    token = "cfsecret-never-stored-7d1e"
    first = budget_for_credential("https://api.example/client/v4", token)
    assert budget_for_credential("https://api.example/client/v4", token) is first
    assert budget_for_credential("https://api.example/client/v4", token + "x") is not first
    assert budget_for_credential("https://other.example/client/v4", token) is not first
    assert not any(token in key for key in ratelimit._budgets)


# -- many task processes sharing one token ---------------------------------------------------------


def run_task(connection: str, accounts: list[str], report: Any) -> None:
    """One Airflow task in a process of its own: build the hook, fetch the accounts, hand the slot on."""
    import os

    from airflow_provider_cfbilling.exceptions import CloudflareBillingError

    os.environ["AIRFLOW_CONN_CLOUDFLARE_FLEET"] = connection
    hook = CloudflareBillingHook("cloudflare_fleet")
    outcome: dict[str, Any] = {"fetched": 0, "errors": []}
    try:
        for account in accounts:
            hook.get_paygo_usage(account)
            outcome["fetched"] += 1
    except CloudflareBillingError as exc:
        outcome["errors"].append(type(exc).__name__)
    finally:
        hook.wait_for_rate_limit_handover()
    report.send(outcome)


def run_in_pool(connection: str, tasks: list[list[str]], slots: int) -> list[dict[str, Any]]:
    """Run each task in a process of its own, at most ``slots`` at once (an Airflow pool's slots).

    Processes are forked from a server process that imported the hook once, as Celery's prefork and
    LocalExecutor workers fork task processes from a warm parent; the first ``slots`` tasks start
    together, and each slot starts its next task as soon as the last one exits.
    """
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["airflow_provider_cfbilling.hooks.billing"])
    queue = list(tasks)
    lock = threading.Lock()
    first_wave = threading.Barrier(slots)
    outcomes: list[dict[str, Any]] = []

    def slot() -> None:
        first_wave.wait()
        while True:
            with lock:
                if not queue:
                    return
                task = queue.pop(0)
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=run_task, args=(connection, task, sender))
            process.start()
            sender.close()
            # A task that dies before reporting fails the test here (EOFError). Its exit status after reporting
            # is not the subject: a forked interpreter's teardown has been seen to end it with 255.
            outcome = receiver.recv()
            process.join()
            with lock:
                outcomes.append(outcome)

    failures: list[BaseException] = []

    def guarded_slot() -> None:
        try:
            slot()
        except BaseException as exc:  # a slot's failure fails the test, not only its thread
            failures.append(exc)
            first_wave.abort()

    threads = [threading.Thread(target=guarded_slot) for _ in range(slots)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return outcomes


@pytest.fixture
def fleet(sim: Any) -> Any:
    """One token for every task process, on a simulator enforcing 6 requests per 2 s (block: 30 s);
    returns the connection (JSON) and the tasks, each a list of accounts to fetch."""

    def configure(**extra: Any) -> list[list[str]]:
        token = f"cfsim-fleet-{time.monotonic_ns()}"
        accounts = sim.add_generated_accounts(6)
        sim.add_token(token, accounts=accounts)
        sim.set_rate_limit((6, 2, 30))
        # 6 tasks of 4 requests each (3 pool slots, 2 tasks per slot): 24 requests, four windows' worth.
        tasks = [[accounts[(n + k) % len(accounts)] for k in range(4)] for n in range(len(accounts))]
        return connection_uri_json(sim.url, token, **extra), tasks

    return configure


def test_task_processes_sharing_a_token_in_a_pool_never_get_a_429(sim: Any, fleet: Any) -> None:
    connection, tasks = fleet(concurrent_tasks=3, max_retry_wait=10)
    outcomes = run_in_pool(connection, tasks, slots=3)

    assert len(outcomes) == len(tasks)
    assert all(outcome == {"fetched": 4, "errors": []} for outcome in outcomes), outcomes
    statuses = [r["status"] for r in sim.requests]
    assert statuses.count(429) == 0 and statuses.count(200) == 24


def test_the_per_process_budget_alone_overshoots_with_several_processes(sim: Any, fleet: Any) -> None:
    """The control: without the pool's size (each process reserves for itself only), the same tasks get
    429s and block the token, as measured on the real engine. It shows the test above can fail."""
    connection, tasks = fleet(max_retry_wait=0)
    outcomes = run_in_pool(connection, tasks, slots=3)

    statuses = [r["status"] for r in sim.requests]
    assert statuses.count(429) > 0
    assert any("CloudflareRateLimitError" in outcome["errors"] for outcome in outcomes)


# -- the reserve for other processes, with a fake clock -------------------------------------------


def test_the_reserve_for_other_tasks_is_not_spent(budget: RateLimitBudget, clock: FakeClock) -> None:
    budget.share_with(4)  # three other tasks may have a request in flight, unseen
    spend(budget, header(10, 30))
    for _ in range(7):  # 10 left: 7 may go, 3 stay for the others
        spend(budget, None)
    with pytest.raises(RateLimitExhausted) as err:
        budget.reserve(max_wait=5)
    assert err.value.wait == 30 and clock.waits == []
    assert str(err.value) == "rate limit exhausted: the budget resets in 30.0 s"


def test_the_reserve_is_at_least_two_percent_of_the_reported_quota(budget: RateLimitBudget) -> None:
    spend(budget, header(1000, 300, quota=1200))  # 24 kept back, though no pool size was given
    assert budget.held_back == 24
    budget.share_with(40)
    assert budget.held_back == 39


def test_a_task_that_spent_down_to_the_reserve_hands_its_slot_on_after_the_reset(
    budget: RateLimitBudget, clock: FakeClock
) -> None:
    budget.share_with(3)
    spend(budget, header(5, 12))
    assert budget.handover_wait() == 0  # 5 left, 2 kept: the next task may send at once
    for _ in range(3):
        spend(budget, None)
    assert budget.handover_wait() == 12  # down to the reserve: wait for the reset
    clock.now = 12.5
    assert budget.handover_wait() == 0


def test_a_process_that_made_no_request_hands_over_at_once(budget: RateLimitBudget) -> None:
    budget.share_with(8)
    assert budget.handover_wait() == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"default";q=1200;w=300', 1200),
        ('"default";q=1200;w=300, "burst";q=100;w=60', 100),
        ('"default";w=300', None),
        ("", None),
        (None, None),
    ],
)
def test_parse_ratelimit_policy(value: str | None, expected: int | None) -> None:
    assert parse_ratelimit_policy(value) == expected


# -- the header ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"default";r=50;t=30', (50, 30.0)),
        ("default;r=0;t=12", (0, 12.0)),
        ('"default";r=50;t=30, "burst";r=3;t=1', (3, 1.0)),
        ('"a";r=3;t=1, "b";r=3;t=9', (3, 9.0)),
        ('"default";t=2.5;r=7', (7, 2.5)),
        ('"default";r=50', None),
        ("garbage", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_ratelimit(value: str | None, expected: tuple[int, float] | None) -> None:
    assert parse_ratelimit(value) == expected


# -- the budget, with a fake clock ---------------------------------------------------------------


def test_the_reported_budget_is_spent_then_the_caller_waits_for_the_reset(
    budget: RateLimitBudget, clock: FakeClock
) -> None:
    spend(budget, header(3, 10))  # the probe: 3 left, reset in 10 s
    for _ in range(3):
        spend(budget, None)
    assert clock.waits == []
    with budget.reserve(max_wait=30) as slot:
        assert clock.now == 10 and slot.probe  # waited for the reset, then reads the new window first
        slot.answered(header(4, 10))
    assert clock.waits == [10]


def test_a_reset_beyond_max_wait_raises_at_once_with_the_wait(budget: RateLimitBudget, clock: FakeClock) -> None:
    spend(budget, header(0, 42))
    with pytest.raises(RateLimitExhausted) as err:
        budget.reserve(max_wait=5)
    assert err.value.wait == 42 and clock.waits == []


def test_requests_in_flight_count_as_spent(budget: RateLimitBudget) -> None:
    spend(budget, header(10, 30))
    slots = [budget.reserve(0) for _ in range(3)]  # 10 -> 7 left, 3 in flight
    slots[0].answered(header(9, 29))  # the API counted this one only: 9 - 2 in flight = 7
    slots[1].answered(header(3, 29))  # another process spent 5 meanwhile: 3 - 1 in flight = 2
    slots[2].answered(header(7, 29))  # an older count never raises the estimate
    spend(budget, None)
    spend(budget, None)
    with pytest.raises(RateLimitExhausted):
        budget.reserve(0)


def test_a_429_block_outlasting_the_window_is_waited_out(budget: RateLimitBudget, clock: FakeClock) -> None:
    spend(budget, header(5, 10))
    spend(budget, header(0, 120))  # a 429: blocked for 120 s, longer than the window
    with pytest.raises(RateLimitExhausted) as err:
        budget.reserve(max_wait=60)
    assert err.value.wait == 120


def test_a_late_answer_from_before_a_block_does_not_shorten_it(budget: RateLimitBudget) -> None:
    spend(budget, header(5, 30))
    early = budget.reserve(0)
    spend(budget, header(0, 120))  # another request got the 429: blocked for 120 s
    early.answered(header(3, 29))  # counted before the block, answered after it
    with pytest.raises(RateLimitExhausted) as err:
        budget.reserve(max_wait=60)
    assert err.value.wait == 120


def test_an_answer_from_an_earlier_window_does_not_set_the_new_budget(
    budget: RateLimitBudget, clock: FakeClock
) -> None:
    spend(budget, header(2, 10))
    late = budget.reserve(0)
    clock.now = 11  # the window resets while `late` is in flight
    probe = budget.reserve(0)
    assert probe.probe
    probe.answered(header(99, 30))  # `late` is still in flight: it may land in this window
    late.answered(header(1, 1))  # counted in the old window: says nothing about the new one
    for _ in range(98):
        spend(budget, None)
    with pytest.raises(RateLimitExhausted):
        budget.reserve(0)


def test_a_failed_probe_lets_the_next_request_probe(budget: RateLimitBudget) -> None:
    spend(budget, None)  # the probe failed without an answer (network error)
    with budget.reserve(0) as slot:
        assert slot.probe


def test_an_api_without_the_header_is_not_throttled(budget: RateLimitBudget, clock: FakeClock) -> None:
    spend(budget, {"Content-Type": "application/json"})
    slots = [budget.reserve(0) for _ in range(50)]  # no probe serialising them
    assert not any(slot.probe for slot in slots)
    assert clock.waits == []


def test_others_wait_for_the_probe_answer() -> None:
    budget = RateLimitBudget()
    probe = budget.reserve(0)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(budget.reserve(max_wait=5).probe))
    waiter.start()
    time.sleep(0.2)
    assert got == []  # still waiting for the probe's answer
    probe.answered(header(10, 30))
    waiter.join(2)
    assert got == [False]


# -- many threads against a fixed-window server, real clock ---------------------------------------


def test_threads_never_exceed_a_fixed_window_limit() -> None:
    quota, window = 15, 0.25
    lock = threading.Lock()
    state: dict[str, float] = {"start": time.monotonic(), "count": 0, "over": 0}

    def server() -> dict[str, str]:
        with lock:
            now = time.monotonic()
            if now - state["start"] >= window:
                state["start"], state["count"] = now, 0
            state["count"] += 1
            if state["count"] > quota:
                state["over"] += 1
            left = window - (now - state["start"])
            return {"Ratelimit": f'"default";r={max(0, quota - int(state["count"]))};t={math.ceil(left * 1000) / 1000}'}

    budget = RateLimitBudget()

    def call(_: int) -> None:
        with budget.reserve(max_wait=5) as slot:
            time.sleep(0.002)
            slot.answered(server())

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(75)))
    elapsed = time.monotonic() - started
    assert state["over"] == 0
    assert elapsed >= 4 * window  # five windows' worth: at least four resets waited for
