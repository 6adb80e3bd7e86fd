"""The test controls under ``/__sim/`` (no auth, never logged): the Python API over HTTP, for a
simulator running in another process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_cfbilling.testing.simulator.routes import parse_date

if TYPE_CHECKING:
    from airflow_provider_cfbilling.testing.simulator.server import CloudflareSimulator


def _boolean(payload: dict[str, Any], name: str) -> bool:
    if not isinstance(payload[name], bool):
        raise ValueError(f"{name} must be a boolean")
    return payload[name]


def handle_control(sim: CloudflareSimulator, method: str, endpoint: str, payload: dict[str, Any]) -> tuple[int, Any]:
    """Run one control request; returns (HTTP status, JSON payload). ValueError/TypeError -> 400."""
    if endpoint == "clock" and method == "POST":
        sim.set_today(parse_date(str(payload.get("today"))))
        return 200, {"today": sim.today.isoformat()}
    if endpoint == "clock" and method == "GET":
        return 200, {"today": sim.today.isoformat()}
    if endpoint == "clock/advance" and method == "POST":
        after = payload.get("after")
        if isinstance(after, bool) or not isinstance(after, int):
            raise ValueError("'after' (a number of API calls) is required")
        sim.advance_clock_after(after, parse_date(str(payload.get("today"))), path=payload.get("path"))
        return 200, sim.config
    if endpoint == "faults" and method == "POST":
        params = dict(payload)
        kind = params.pop("kind", None)
        if not isinstance(kind, str):
            raise ValueError("'kind' is required")
        fault = sim.add_fault(
            kind, account_id=params.pop("account_id", None), times=params.pop("times", None), **params
        )
        return 200, {"fault": fault.describe()}
    if endpoint == "faults" and method == "GET":
        return 200, {"faults": sim.faults}
    if endpoint == "faults" and method == "DELETE":
        sim.clear_faults()
        return 200, {"faults": []}
    if endpoint == "requests" and method == "GET":
        return 200, sim.requests
    if endpoint == "reset" and method == "POST":
        sim.reset()
        return 200, sim.config
    if endpoint == "config" and method == "GET":
        return 200, sim.config
    if endpoint == "config" and method == "POST":
        if "large_zones" in payload:
            sim.set_large_zones(payload["large_zones"])
        if "enforce_window_rules" in payload:
            sim.set_window_rules(_boolean(payload, "enforce_window_rules"))
        if "to_inclusive" in payload:
            sim.set_to_inclusive(_boolean(payload, "to_inclusive"))
        if "rate_limit" in payload:
            sim.set_rate_limit(payload["rate_limit"])
        return 200, sim.config
    if endpoint == "accounts" and method == "POST":
        count = payload.get("generate")
        if isinstance(count, bool) or not isinstance(count, int):
            raise ValueError("'generate' (a number of accounts) is required")
        return 200, {"accounts": sim.add_generated_accounts(count)}
    if endpoint == "accounts" and method == "GET":
        return 200, {"accounts": [a.account_id for a in sim.accounts()]}
    if endpoint == "tokens" and method == "POST":
        token = payload.get("token")
        if not isinstance(token, str):
            raise ValueError("'token' is required")
        accounts = payload.get("accounts")
        sim.add_token(token, billing_read=_boolean(payload, "billing_read") if "billing_read" in payload else True,
                      accounts=accounts)  # fmt: skip
        return 200, {"added": True}  # never echo the token
    return 404, {"error": f"no control endpoint {method} /__sim/{endpoint}"}
