"""Serve the Cloudflare API simulator from its own process, so that its work does not share the
benchmarked client's interpreter (the real API is remote too).

``python -m bench.simulator_process --today 2025-03-20 --token T1 --token T2`` prints the base URL on one
line and serves until its stdin closes. Extra tokens (Billing Read) give each benchmark run a fresh
credential: a fresh rate-limit budget on both sides. Everything else is set through the simulator's
control API (``POST /__sim/config``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from airflow_provider_cfbilling.testing.simulator import CloudflareSimulator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--today", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--token", action="append", default=[])
    args = parser.parse_args()
    simulator = CloudflareSimulator(today=args.today)
    for token in args.token:
        simulator.add_token(token)
    with simulator:
        print(simulator.url, flush=True)
        sys.stdin.read()  # until the parent closes the pipe (or dies)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
