"""5. Rate limits: 200 account fetches from 8 concurrent workers against a scaled-down Cloudflare limit.

The simulator enforces 120 requests per 30 s per token (Cloudflare's 1,200 per 5 minutes, ten times
shorter) and answers the request over the limit with 429 + ``Retry-After`` and a 120 s block of the
token. The block is deliberately longer than the hook's default retry budget (60 s), as Cloudflare's
real block (up to 5 minutes) is: a client that only reacts to 429s cannot wait it out, and while it
lasts every other user of the token (dashboards, Terraform, other DAGs) is refused too.

Workers are threads of one process (as in one task fanning out, or a triggerer); each fetch builds its
own hook, as a task does, and the hooks share the token's budget process-wide. Every run uses a fresh
token, so runs do not inherit each other's window or block. Clients:

* the hook (after): reserves a slot from the budget the API reports in its ``Ratelimit`` header;
* the hook before proactive throttling (``bench.common.hook_class(before=True)``): it only reacts to 429s
  (its retry honours ``Retry-After`` within the retry budget);
* the official SDK (one ``cloudflare.Cloudflare`` client shared by the workers), its default retries.

The minimum time the limit allows: the first window serves ``q`` fetches at once, every further window
starts ``w`` seconds after the previous one, and the last window's fetches take their share of the
unthrottled time (the same 200 fetches with the limit lifted, measured in the same run).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.common import (
    Section,
    SimulatorProcess,
    Target,
    hook_class,
    median,
    ratio,
    secs,
    simulator,
    spread,
    times,
    use_connection,
)

TITLE = "5. Rate limits"
TARGET_VS_MINIMUM = 1.15


@dataclass(frozen=True)
class Scenario:
    fetches: int
    workers: int
    limit: tuple[int, int, int]  # max requests, window seconds, block seconds
    runs: int

    def minimum(self, unthrottled: float) -> float:
        """Least seconds the limit allows for all fetches, given the unthrottled time of all of them."""
        quota, window, _ = self.limit
        resets = math.ceil(self.fetches / quota) - 1
        return resets * window + unthrottled * (self.fetches - resets * quota) / self.fetches


FULL = Scenario(fetches=200, workers=8, limit=(120, 30, 120), runs=3)
SMOKE = Scenario(fetches=24, workers=4, limit=(10, 1, 30), runs=1)


@dataclass
class Outcome:
    seconds: float
    failed: int
    too_many_requests: int  # 429 answers the API sent during the run
    errors: set[str]


def hook_fetch(conn_id: str, account: str, reference: list[dict[str, Any]], *, before: bool) -> Callable[[], None]:
    hook = hook_class(before=before)

    def fetch() -> None:
        from airflow_provider_cfbilling.utils.formats import xcom_records

        # As plain JSON values: the hook reads costs as exact Decimals, the plain request as floats.
        records = xcom_records(hook(conn_id).get_paygo_usage(account))
        assert records == reference, "the hook returned other records than a plain request"

    return fetch


def sdk_fetch(url: str, token: str, account: str, reference: list[dict[str, Any]]) -> Callable[[], None]:
    import cloudflare

    client = cloudflare.Cloudflare(api_token=token, base_url=url)

    def fetch() -> None:
        # The SDK calls /billable-usage: the same records on the current path.
        records = [item.to_dict() for item in client.billing.usage.get_account_usage_v1(account_id=account)]
        assert records == reference, "the SDK returned other records than a plain request"

    return fetch


def run_once(sim: SimulatorProcess, fetch: Callable[[], None], scenario: Scenario) -> Outcome:
    errors: set[str] = set()
    lock = threading.Lock()

    def one(_: int) -> bool:
        try:
            fetch()
            return True
        except Exception as exc:
            with lock:
                errors.add(type(exc).__name__)
            return False

    logged = len(sim.requests())
    start = time.perf_counter()
    with ThreadPoolExecutor(scenario.workers) as pool:
        succeeded = list(pool.map(one, range(scenario.fetches)))
    seconds = time.perf_counter() - start
    statuses = [entry["status"] for entry in sim.requests()[logged:]]
    return Outcome(seconds, succeeded.count(False), statuses.count(429), errors)


def run(*, smoke: bool) -> Section:
    import requests

    from airflow_provider_cfbilling.testing.simulator import STANDARD_ACCOUNT

    scenario = SMOKE if smoke else FULL
    quota, window, block = scenario.limit
    clients = ["unthrottled", "after"] if smoke else ["unthrottled", "after", "before", "sdk"]
    tokens = {(client, n): f"cfsim-bench-{client}-{n}" for client in clients for n in range(scenario.runs)}
    outcomes: dict[str, list[Outcome]] = {client: [] for client in clients}
    with simulator(tokens.values()) as sim:
        reference = requests.get(
            f"{sim.url}/accounts/{STANDARD_ACCOUNT}/billable-usage",
            headers={"Authorization": f"Bearer {tokens['unthrottled', 0]}"},
            timeout=30,
        ).json()["result"]
        assert reference, "the simulator served no usage for the standard account"

        def fetch_for(client: str, token: str) -> Callable[[], None]:
            if client == "sdk":
                return sdk_fetch(sim.url, token, STANDARD_ACCOUNT, reference)
            conn_id = use_connection(f"cfbilling_bench_{client}", sim.url, token)
            return hook_fetch(conn_id, STANDARD_ACCOUNT, reference, before=client == "before")

        sim.configure(rate_limit=[10**9, 300, 0])  # lifted: the unthrottled baseline
        for n in range(scenario.runs):
            outcomes["unthrottled"].append(run_once(sim, fetch_for("unthrottled", tokens["unthrottled", n]), scenario))
        sim.configure(rate_limit=list(scenario.limit))
        for n in range(scenario.runs):  # interleaved; each run its own token
            for client in clients[1:]:
                outcomes[client].append(run_once(sim, fetch_for(client, tokens[client, n]), scenario))

    unthrottled = median([o.seconds for o in outcomes["unthrottled"]])
    minimum = scenario.minimum(unthrottled)
    after = outcomes["after"]
    assert all(o.failed == 0 for o in after), f"the hook failed fetches under the limit: {after}"
    assert all(o.too_many_requests == 0 for o in after), f"the hook was answered 429: {after}"

    labels = {
        "unthrottled": "hook, limit lifted (baseline)",
        "after": "**hook (after: proactive, shared budget)**",
        "before": "hook before the fixes (429 retries only)",
        "sdk": "cloudflare SDK (default retries)",
    }
    rows = []
    for client in clients:
        runs = outcomes[client]
        per_run = ", ".join(str(o.failed) for o in runs)
        rows.append(
            (
                labels[client],
                spread([o.seconds for o in runs], secs),
                "—"
                if client == "unthrottled" or any(o.failed for o in runs)  # failing fast is not being fast
                else times(ratio(median([o.seconds for o in runs]), minimum)),
                per_run,
                ", ".join(str(o.too_many_requests) for o in runs),
                ", ".join(sorted(set().union(*(o.errors for o in runs)))) or "—",
            )
        )
    section = Section(
        TITLE,
        intro=(
            f"{scenario.fetches} fetches of the standard account's current period, {scenario.workers} worker "
            f"threads, limit {quota} requests per {window} s per token, {block} s block on excess. Minimum the "
            f"limit allows: {secs(minimum)} ({math.ceil(scenario.fetches / quota) - 1} window reset(s) plus the "
            f"last window's share of the unthrottled {secs(unthrottled)}). Time: median (min-max, n runs); "
            "failures and 429s: per run."
        ),
    )
    section.tables.append((("client", "total time", "vs minimum", "fetches failed", "429s received", "errors"), rows))
    after_ratio = ratio(median([o.seconds for o in after]), minimum)
    section.targets.append(
        Target(
            TITLE,
            f"no fetch fails; total time within {TARGET_VS_MINIMUM:.2f}x of the minimum the limit allows",
            f"{sum(o.failed for o in after)} failed, {sum(o.too_many_requests for o in after)} 429s, "
            f"{times(after_ratio)} the minimum ({secs(median([o.seconds for o in after]))} vs {secs(minimum)})",
            None if smoke else after_ratio <= TARGET_VS_MINIMUM and not any(o.failed for o in after),
            why=""
            if smoke or after_ratio <= TARGET_VS_MINIMUM
            else f"over by {(after_ratio - TARGET_VS_MINIMUM) * 100:.0f} points of the minimum",
        )
    )
    return section
