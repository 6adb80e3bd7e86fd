"""``cfbilling-simulator``: the simulator as a process, until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence

from airflow_provider_cfbilling.testing.simulator.server import CloudflareSimulator, is_loopback, to_date


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; prints the base URL on one line of stdout."""
    parser = argparse.ArgumentParser(
        prog="cfbilling-simulator", description="Local Cloudflare billable-usage API simulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=8787, help="port (0 = any free port)")
    parser.add_argument("--today", help="simulated today, YYYY-MM-DD (default: UTC today)")
    parser.add_argument("--no-window-rules", action="store_true", help="serve ranges without an anchor day")
    parser.add_argument("--to-exclusive", action="store_true", help="read the 'to' date exclusively")
    parser.add_argument("--large-zones", type=int, default=10, help="zones of the LARGE account")
    parser.add_argument("--generated-accounts", type=int, default=0, help="add N generated accounts with usage")
    parser.add_argument("--rate-limit", help="enforce MAX/WINDOW/BLOCK, e.g. 120/30/60")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr (never credentials)")
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"refusing to listen on non-loopback host {args.host!r}")
    try:
        simulator = CloudflareSimulator(
            to_date(args.today) if args.today else None,
            host=args.host,
            port=args.port,
            enforce_window_rules=not args.no_window_rules,
            to_inclusive=not args.to_exclusive,
            large_zones=args.large_zones,
            rate_limit=args.rate_limit,
            quiet=not args.verbose,
        )
        if args.generated_accounts:
            simulator.add_generated_accounts(args.generated_accounts)
    except ValueError as error:
        parser.error(str(error))
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    simulator.start()
    try:
        print(simulator.url, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0
