"""2. Per-call cost on loopback: ``get_paygo_usage`` against raw requests and the official SDK.

The simulator runs in its own process (like the real API, it does not share the client's interpreter)
and serves LARGE_ACCOUNT's January 2025 billing period: a typical answer (8 zones, 992 records) and a
large one (807 zones, 100,068 records, zone-level). Three clients fetch the same records:

* ``CloudflareBillingHook(conn_id).get_paygo_usage(account, from_, to)``, and the same hook as it was
  before the changes made for these benchmarks (``bench.common.hook_class(before=True)``);
* ``requests.get(url, params=..., headers=...).json()["result"]``, the least code could do;
* the official SDK, ``cloudflare.Cloudflare(api_token=..., base_url=sim).billing.usage.get_account_usage_v1(...)``
  (SDK 5.9's name for the call; ``paygo()`` is its deprecated alias for the same request).

"One call per task" builds the client for every call, as a task does; "client reused" keeps one (the
hook, a ``requests.Session``, the SDK client) across calls. Runs interleave the clients.
"""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bench.common import (
    SIM_TODAY,
    Section,
    Target,
    hook_class,
    median,
    ms,
    ratio,
    secs,
    simulator,
    spread,
    times,
    use_connection,
)

TITLE = "2. Per-call cost"
TARGET_VS_REQUESTS = 1.25
FROM, TO = "2025-01-01", "2025-01-31"  # LARGE_ACCOUNT's first billing period (the simulator's `to` is inclusive)
assert SIM_TODAY.isoformat() > TO
Fetch = Callable[[], Any]
HOOK = "cfbilling hook"
BEFORE = "cfbilling hook before the fixes"


def clients(url: str, conn_id: str, *, reuse: bool) -> dict[str, Fetch]:
    """name -> a zero-argument fetch returning the records (the SDK: its models, as its users get them)."""
    import cloudflare
    import requests

    from airflow_provider_cfbilling.testing.simulator import LARGE_ACCOUNT, SIM_TOKEN

    hook, before = hook_class(), hook_class(before=True)

    raw_url = f"{url}/accounts/{LARGE_ACCOUNT}/billable-usage"
    params = {"from": FROM, "to": TO}
    headers = {"Authorization": f"Bearer {SIM_TOKEN}"}

    def sdk_call(client: cloudflare.Cloudflare) -> Any:
        return client.billing.usage.get_account_usage_v1(account_id=LARGE_ACCOUNT, from_=FROM, to=TO)

    if not reuse:
        return {
            HOOK: lambda: hook(conn_id).get_paygo_usage(LARGE_ACCOUNT, FROM, TO),
            BEFORE: lambda: before(conn_id).get_paygo_usage(LARGE_ACCOUNT, FROM, TO),
            "requests.get().json()": lambda: requests.get(raw_url, params=params, headers=headers, timeout=60).json()[
                "result"
            ],
            "cloudflare SDK": lambda: sdk_call(cloudflare.Cloudflare(api_token=SIM_TOKEN, base_url=url)),
        }
    one_hook, one_before = hook(conn_id), before(conn_id)
    session = requests.Session()
    session.headers.update(headers)
    client = cloudflare.Cloudflare(api_token=SIM_TOKEN, base_url=url)
    return {
        HOOK: lambda: one_hook.get_paygo_usage(LARGE_ACCOUNT, FROM, TO),
        BEFORE: lambda: one_before.get_paygo_usage(LARGE_ACCOUNT, FROM, TO),
        "requests.get().json()": lambda: session.get(raw_url, params=params, timeout=60).json()["result"],
        "cloudflare SDK": lambda: sdk_call(client),
    }


def check_same_records(fetches: dict[str, Fetch], expected_rows: int) -> None:
    from airflow_provider_cfbilling.utils.formats import xcom_records

    # Compared as plain JSON values: a plain parse and the SDK read costs as floats, the hook as exact Decimals.
    answers = {name: fetch() for name, fetch in fetches.items()}
    answers["cloudflare SDK"] = [item.to_dict() for item in answers["cloudflare SDK"]]
    answers = {name: xcom_records(records) for name, records in answers.items()}
    reference = answers["requests.get().json()"]
    assert len(reference) == expected_rows, f"expected {expected_rows} records, the API sent {len(reference)}"
    for name, records in answers.items():
        assert records == reference, f"{name} returned different records than the raw request"


def measure(fetches: dict[str, Fetch], runs: int, calls: int) -> dict[str, list[float]]:
    """Seconds per call, one value per run; clients interleaved within each run."""
    per_call: dict[str, list[float]] = defaultdict(list)
    for fetch in fetches.values():
        fetch()  # warm-up: imports, connection pools, the SDK's model classes
    for _ in range(runs):
        for name, fetch in fetches.items():
            gc.collect()
            start = time.perf_counter()
            for _ in range(calls):
                fetch()
            per_call[name].append((time.perf_counter() - start) / calls)
    return per_call


def run(*, smoke: bool) -> Section:
    from airflow_provider_cfbilling.testing.simulator import SIM_TOKEN, large_zones_for

    # (case, zones, runs, calls per run); smoke: tiny answers, one run, answers checked only.
    cases = (
        [("typical", 1, 1, 1), ("large", 3, 1, 1)]
        if smoke
        else [("typical (992 records)", 8, 9, 20), ("large (100,068 records)", large_zones_for(100_000), 5, 1)]
    )
    section = Section(
        TITLE,
        intro=(
            "Seconds per call, median (min-max, n runs), simulator in its own process on loopback, rate limit "
            "lifted. Ratios are against `requests.get().json()` measured in the same run."
        ),
    )
    rows = []
    worst_vs_requests, worst_case = 0.0, ""
    sdk_slower = True
    limiter_cost = []
    with simulator() as sim:
        # Lift the limit: the simulator's nominal headers (1,200 per 5 minutes) are truthful, and the hook
        # obeys them; this benchmark is about the cost of a call, not the wait for a window.
        sim.configure(rate_limit=[10**9, 300, 0])
        conn_id = use_connection("cfbilling_bench_calls", sim.url, SIM_TOKEN)
        for case, zones, runs, calls in cases:
            sim.configure(large_zones=zones)
            expected = zones * 4 * 31  # LARGE_ACCOUNT: 4 services, 31 days
            for reuse in (False, True):
                fetches = clients(sim.url, conn_id, reuse=reuse)
                check_same_records(fetches, expected)
                per_call = measure(fetches, runs, calls)
                base = median(per_call["requests.get().json()"])
                unit = ms if median(per_call["cloudflare SDK"]) < 1 else secs
                mode = "client reused" if reuse else "one call per task"
                for name, values in per_call.items():
                    rows.append(
                        (
                            case,
                            mode,
                            name,
                            spread(values, unit),
                            times(ratio(median(values), base)),
                        )
                    )
                hook, sdk = median(per_call[HOOK]), median(per_call["cloudflare SDK"])
                if ratio(hook, base) > worst_vs_requests:
                    worst_vs_requests, worst_case = ratio(hook, base), f"{case}, {mode}"
                limiter_cost.append(f"{case.split(' ')[0]}, {mode}: {times(ratio(hook, median(per_call[BEFORE])))}")
                sdk_slower = sdk_slower and sdk > hook
    section.tables.append((("answer", "mode", "client", "per call", "vs requests"), rows))
    section.notes.append(
        "Every client returns the same records (checked before timing; the SDK's models via `to_dict()`, "
        "outside the timed calls: its timings exclude that conversion)."
    )
    section.notes.append(
        "Hook after vs before the fixes (rate limiting added; no reference cycle through tenacity), same run: "
        + "; ".join(limiter_cost)
        + "."
    )
    section.targets.append(
        Target(
            TITLE,
            f"within {TARGET_VS_REQUESTS}x of raw requests, in every case and mode",
            f"worst {times(worst_vs_requests)} ({worst_case})",
            None if smoke else worst_vs_requests <= TARGET_VS_REQUESTS,
            why=""
            if smoke or worst_vs_requests <= TARGET_VS_REQUESTS
            else f"over by {worst_vs_requests - TARGET_VS_REQUESTS:.2f}x in {worst_case}; see the table",
        )
    )
    section.targets.append(
        Target(
            TITLE,
            "faster than the official SDK, in every case and mode",
            "faster in every case" if sdk_slower else "slower in at least one case (see table)",
            None if smoke else sdk_slower,
        )
    )
    return section
