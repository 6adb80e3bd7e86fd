"""The example DAGs, each run for real (``dag.test()``, one through ``airflow dags test``) against the simulator.

Each example reads ``CFBILLING_EXAMPLE_BASE_URI`` at parse time (here: a ``file://`` tmp dir) and the
``cloudflare_default`` connection at run time (here: the simulator, clock 2025-11-20). Every landed file is
read back and compared field by field with what the simulator serves.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import EXAMPLE_DAGS, airflow_env
from test_formats import assert_jsonl_matches, assert_parquet_matches, in_window, served

from airflow_provider_cfbilling.testing.simulator import (
    ANCHOR31_ACCOUNT,
    EMPTY_ACCOUNT,
    FOCUS_ACCOUNT,
    STANDARD_ACCOUNT,
    billing_period_start,
)

OPERATOR_EXAMPLES = sorted(
    p for p in EXAMPLE_DAGS.glob("example_cloudflare_*.py") if p.name != "example_cloudflare_usage_demo.py"
)


@pytest.fixture
def base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CFBILLING_EXAMPLE_BASE_URI", f"file://{tmp_path}")
    return tmp_path


def utc(year: int, month: int, day: int) -> dt.datetime:
    return dt.datetime(year, month, day, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("path", OPERATOR_EXAMPLES, ids=lambda p: p.stem)
def test_examples_import_nothing_heavy_and_need_no_network(path: Path) -> None:
    """Parsing an example must not touch the network, the simulator or a heavy library.

    Only what the example's own imports load counts: what Airflow's SDK loads for any DAG (some versions load
    ``airflow.triggers.base`` with it) is recorded first.
    """
    code = (
        "import runpy, socket, sys\n"
        "import airflow.sdk\n"
        "from airflow.sdk import DAG, Asset, BaseOperator, BaseSensorOperator, dag, task\n"
        "loaded_by_airflow = set(sys.modules)\n"
        "def refuse(*a, **k): raise AssertionError('network at parse time')\n"
        "socket.socket.connect = refuse\n"
        f"runpy.run_path({str(path)!r})\n"
        "heavy = ('pyarrow', 's3fs', 'botocore', 'ijson', 'airflow.triggers.base')\n"
        "print(','.join(m for m in heavy if m in sys.modules and m not in loaded_by_airflow))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=airflow_env())
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1:] in ([], [""])
    assert ast.get_docstring(ast.parse(path.read_text())), "every example explains itself"


# -- 1. month to date, daily --------------------------------------------------------------------


def test_month_to_date_lands_and_overwrites_the_current_period(
    sim: Any, cloudflare_conn: str, dag_runner: Any, base_dir: Path
) -> None:
    path = EXAMPLE_DAGS / "example_cloudflare_month_to_date.py"
    target = base_dir / "month_to_date" / f"account={STANDARD_ACCOUNT}" / "billing_period=2025-11-14" / "usage.jsonl"

    result = dag_runner(path, "example_cloudflare_month_to_date", logical_date=utc(2025, 11, 20))
    assert result.state == "success", result.task_states
    assert_jsonl_matches(target.read_bytes(), served(sim, STANDARD_ACCOUNT)[0])
    assert result.xcom("land_month_to_date")["window"] == {"kind": "current_period", "from": None, "to": None}

    # The next day: one more day of usage and a restated figure, same object, overwritten.
    sim.set_today(dt.date(2025, 11, 21))
    sim.add_fault("extra_columns", columns={"x_Restated": True})
    result = dag_runner(path, "example_cloudflare_month_to_date", logical_date=utc(2025, 11, 21))
    assert result.state == "success", result.task_states
    records = served(sim, STANDARD_ACCOUNT)[0]
    assert_jsonl_matches(target.read_bytes(), records)
    assert result.xcom("land_month_to_date")["rows"] == len(records) == 7 * 4
    assert [p.name for p in target.parent.iterdir()] == ["usage.jsonl"]


def test_month_to_date_through_the_airflow_cli(
    sim: Any, cloudflare_conn: str, airflow_db: Path, base_dir: Path
) -> None:
    """``airflow dags test`` in a subprocess: the same path a user takes."""
    import shutil

    from conftest import _DAGS_FOLDER

    shutil.copy(EXAMPLE_DAGS / "example_cloudflare_month_to_date.py", _DAGS_FOLDER)
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "example_cloudflare_month_to_date", "2025-11-19"],
        capture_output=True,
        text=True,
        env=airflow_env(),
        timeout=240,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    target = base_dir / "month_to_date" / f"account={STANDARD_ACCOUNT}" / "billing_period=2025-11-14" / "usage.jsonl"
    assert_jsonl_matches(target.read_bytes(), served(sim, STANDARD_ACCOUNT)[0])


# -- 2. closed periods (sensor upstream, Parquet, Asset) ---------------------------------------------


def test_closed_periods_lands_exactly_the_closed_period_and_emits_an_asset(
    sim: Any, cloudflare_conn: str, dag_runner: Any, base_dir: Path
) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    path = EXAMPLE_DAGS / "example_cloudflare_closed_periods.py"
    result = dag_runner(path, "example_cloudflare_closed_periods", logical_date=utc(2025, 10, 1))
    assert result.state == "success", result.task_states
    period = result.xcom("wait_for_close")
    assert (period["start"], period["end"]) == ("2025-09-14T00:00:00Z", "2025-10-14T00:00:00Z")

    target = base_dir / "closed_periods" / f"account={STANDARD_ACCOUNT}" / "billing_period=2025-09-14" / "usage.parquet"
    _, exact = served(sim, STANDARD_ACCOUNT, **{"from": "2025-09-14", "to": "2025-10-14"})
    exact = in_window(exact, "2025-09-14", "2025-10-14")
    assert len(exact) == 30 * 4
    assert_parquet_matches(pq.read_table(target), exact)

    manifest = result.xcom("land_closed_period")
    assert manifest["uri"] == f"file://{target}"
    assert manifest["window"] == {"kind": "range", "from": "2025-09-14", "to": "2025-10-14"}
    assert manifest["reconciliation"]["ok"] is True
    with create_session() as session:
        extras = [
            event.extra
            for event, asset in session.query(AssetEvent, AssetModel)
            .filter(AssetEvent.asset_id == AssetModel.id, AssetEvent.source_run_id == result.run_id)
            .all()
            if asset.name == "cloudflare_usage_closed"
        ]
    assert extras == [manifest]
    # One test runs this example: its Asset's name must keep one URI (one base directory) in the session's DB.
    check_the_look_back_catches_a_restatement(sim, dag_runner, base_dir, path, result)


def check_the_look_back_catches_a_restatement(
    sim: Any, dag_runner: Any, base_dir: Path, path: Path, first: Any
) -> None:
    """The look-back: October's run re-landed August's period; Cloudflare then restates a day of September, and
    November's run, looking back two periods, replaces September's object and leaves August's alone."""
    import hashlib
    import os
    from decimal import Decimal

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    def object_of(start: str) -> Path:
        return base_dir / "closed_periods" / f"account={STANDARD_ACCOUNT}" / f"billing_period={start}" / "usage.parquet"

    def events(run_id: str) -> dict[str, list[dict[str, Any]]]:
        with create_session() as session:
            rows = (
                session.query(AssetEvent, AssetModel)
                .filter(AssetEvent.asset_id == AssetModel.id, AssetEvent.source_run_id == run_id)
                .all()
            )
            found: dict[str, list[dict[str, Any]]] = {}
            for event, asset in rows:
                found.setdefault(asset.name, []).append(dict(event.extra))
            return found

    assert first.task_states == {
        "wait_for_close": "success",
        "earlier_periods": "success",
        "land_closed_period": "success",
        "reland_earlier_periods[0]": "success",
    }
    september = first.xcom("land_closed_period")
    august = first.xcom("reland_earlier_periods", map_index=0)
    assert august["uri"] == f"file://{object_of('2025-08-14')}" and august["window"]["from"] == "2025-08-14"
    assert august["written"] and august["replaced"] is None  # landed for the first time
    assert [e["uri"] for e in events(first.run_id)[august["uri"]]] == [august["uri"]]  # the alias's event
    august_stat = os.stat(object_of("2025-08-14"))

    sim.add_fault("restated", day="2025-09-20", service="Workers Standard", delta="2.5")
    second = dag_runner(
        path, "example_cloudflare_closed_periods", logical_date=utc(2025, 11, 1), run_conf={"look_back_periods": 2}
    )
    assert second.state == "success", second.task_states
    restated = second.xcom("reland_earlier_periods", map_index=0)
    unchanged = second.xcom("reland_earlier_periods", map_index=1)
    assert restated["uri"] == september["uri"] and restated["restatement"] is True
    assert restated["replaced"] == {
        "sha256": september["sha256"],
        "bytes": september["bytes"],
        "totals": september["totals"],
    }
    before, after = september["totals"]["by_currency"]["USD"], restated["totals"]["by_currency"]["USD"]
    assert Decimal(after) - Decimal(before) == Decimal("2.5")
    assert hashlib.sha256(object_of("2025-09-14").read_bytes()).hexdigest() == restated["sha256"]
    assert unchanged["uri"] == august["uri"] and unchanged["unchanged"] is True and unchanged["written"] is False
    stat = os.stat(object_of("2025-08-14"))
    assert (stat.st_ino, stat.st_mtime_ns) == (august_stat.st_ino, august_stat.st_mtime_ns)

    # The alias got one event, for the restated object, carrying the restatement; none for the unchanged one.
    emitted = events(second.run_id)
    assert emitted[september["uri"]] == [restated]
    assert august["uri"] not in emitted
    assert emitted["cloudflare_usage_closed"] == [second.xcom("land_closed_period")]


# -- 3. backfill by logical date, many accounts through dynamic task mapping -----------------------------


ACCOUNTS_AND_PERIODS = {
    # logical date 2025-11-03 -> each account's period containing 2025-10-01
    STANDARD_ACCOUNT: ("2025-09-14", "2025-10-14"),
    ANCHOR31_ACCOUNT: ("2025-09-30", "2025-10-31"),
    FOCUS_ACCOUNT: ("2025-10-01", "2025-11-01"),
    EMPTY_ACCOUNT: ("2025-09-05", "2025-10-05"),
}


def test_backfill_maps_over_accounts_each_with_its_own_period(
    sim: Any, cloudflare_conn: str, dag_runner: Any, base_dir: Path
) -> None:
    path = EXAMPLE_DAGS / "example_cloudflare_backfill_accounts.py"
    accounts = list(ACCOUNTS_AND_PERIODS)
    result = dag_runner(
        path, "example_cloudflare_backfill_accounts", logical_date=utc(2025, 11, 3), run_conf={"account_ids": accounts}
    )
    assert result.state == "success", result.task_states
    assert {k: v for k, v in result.task_states.items() if k.startswith("land_period")} == {
        f"land_period[{i}]": "success" for i in range(len(accounts))
    }
    for index, (account, (start, end)) in enumerate(ACCOUNTS_AND_PERIODS.items()):
        target = base_dir / "periods" / f"account={account}" / f"billing_period={start}" / "usage.parquet"
        _, exact = served(sim, account, **{"from": start, "to": end})
        assert_parquet_matches(pq.read_table(target), in_window(exact, start, end))
        manifest = result.xcom("land_period", map_index=index)
        assert manifest["account_id"] == account and manifest["window"]["from"] == start
    assert len(list((base_dir / "periods").iterdir())) == len(accounts)


def test_backfill_of_consecutive_months_lands_consecutive_periods_once(
    sim: Any, cloudflare_conn: str, dag_runner: Any, base_dir: Path
) -> None:
    """Runs for Jan..Apr 2025 (a backfill): every period of an anchor-31 account, none twice or skipped."""
    path = EXAMPLE_DAGS / "example_cloudflare_backfill_accounts.py"
    for month in (2, 3, 4, 5):
        result = dag_runner(
            path,
            "example_cloudflare_backfill_accounts",
            logical_date=utc(2025, month, 3),
            run_conf={"account_ids": [ANCHOR31_ACCOUNT]},
        )
        assert result.state == "success", result.task_states
    landed = sorted(p.name for p in (base_dir / "periods" / f"account={ANCHOR31_ACCOUNT}").iterdir())
    assert landed == [
        "billing_period=2024-12-31",
        "billing_period=2025-01-31",
        "billing_period=2025-02-28",
        "billing_period=2025-03-31",
    ]
    days = 0
    for name in landed:
        table = pq.read_table(base_dir / "periods" / f"account={ANCHOR31_ACCOUNT}" / name / "usage.parquet")
        days += len(set(table["ChargePeriodStart"].to_pylist()))
    assert days == (dt.date(2025, 4, 30) - dt.date(2024, 12, 31)).days  # contiguous, no gap, no overlap


def test_backfill_defaults_to_the_connections_account(
    sim: Any, cloudflare_conn: str, dag_runner: Any, base_dir: Path
) -> None:
    path = EXAMPLE_DAGS / "example_cloudflare_backfill_accounts.py"
    result = dag_runner(path, "example_cloudflare_backfill_accounts", logical_date=utc(2025, 11, 3))
    assert result.state == "success", result.task_states
    assert json.loads(json.dumps(result.xcom("land_period", map_index=0)))["account_id"] == STANDARD_ACCOUNT


# -- 4. every account the token sees: discovery, dynamic task mapping, one pool for the token -----------


def test_all_accounts_discovers_the_tokens_accounts_and_lands_each_once(
    sim: Any, dag_runner: Any, base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token that sees 7 generated accounts and one of the catalogue's, under a tight rate limit."""
    from airflow.models.pool import Pool
    from conftest import connection_uri_json

    token = "cfsim-all-accounts-token"
    accounts = [STANDARD_ACCOUNT, *sim.add_generated_accounts(7)]
    sim.add_token(token, accounts=accounts)
    # 1 List Accounts call + 8 usage calls, at most 4 per 2 s: the tasks must wait for the window, not 429.
    sim.set_rate_limit((4, 2, 30))
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_DEFAULT", connection_uri_json(sim.url, token, concurrent_tasks=2))
    monkeypatch.setenv("CFBILLING_EXAMPLE_POOL", "cloudflare_billing_test")
    Pool.create_or_update_pool("cloudflare_billing_test", slots=2, description="test", include_deferred=True)

    path = EXAMPLE_DAGS / "example_cloudflare_all_accounts.py"
    result = dag_runner(path, "example_cloudflare_all_accounts", logical_date=utc(2025, 11, 20))
    assert result.state == "success", result.task_states
    assert result.xcom("discover_accounts") == accounts
    log = sim.requests
    assert [r["status"] for r in log].count(429) == 0
    assert sum(r["path"].endswith("/accounts") for r in log) == 1
    assert sorted(r["account_id"] for r in log if r["path"].endswith("/billable-usage")) == sorted(accounts)

    sim.set_rate_limit(None)  # reading back what the simulator serves is not part of the run
    for index, account in enumerate(accounts):
        records, exact = served(sim, account)
        # The simulator's own period arithmetic. An account with no usage yet in its period (today is its
        # anchor day) is placed by the operator at the wall clock's instant, not the simulator's.
        today = sim.today if records else dt.datetime.now(dt.timezone.utc).date()
        period = billing_period_start(sim.account(account).subscriptions[0].anchor, today).isoformat()
        assert all(r["BillingPeriodStart"].startswith(period) for r in records)
        target = base_dir / "all_accounts" / f"account={account}" / f"billing_period={period}" / "usage.jsonl"
        assert_jsonl_matches(target.read_bytes(), records)
        manifest = result.xcom("land_current_period", map_index=index)
        assert (manifest["account_id"], manifest["uri"], manifest["rows"]) == (account, f"file://{target}", len(exact))
    landed = sorted(p.relative_to(base_dir).as_posix() for p in (base_dir / "all_accounts").rglob("*") if p.is_file())
    assert len(landed) == len(accounts)  # each account once, nothing else


def test_all_accounts_discovery_leaves_the_window_safe_for_the_tasks_taking_the_pool_slots(
    sim: Any, airflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The discovery task holds a slot of the token's pool, like the operator. When its request leaves the
    rate-limit window spent down to the requests kept for the other slots, it waits for the reset before it
    ends: each task that takes a slot next sends its first request before it can read the budget."""
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from conftest import connection_uri_json

    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    slots = 4
    token = "cfsim-discovery-handover-token"
    sim.add_token(token, accounts=[STANDARD_ACCOUNT])
    sim.set_rate_limit((5, 8, 60))  # 5 per 8 s; the 4 slots keep 3 of them back
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_DEFAULT", connection_uri_json(sim.url, token, concurrent_tasks=slots))

    def first_request_of_a_task(_: int = 0) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return requests.get(f"{sim.url}/accounts", headers=headers, timeout=30).status_code

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS / "example_cloudflare_all_accounts.py"))
    discover = bag.dags["example_cloudflare_all_accounts"].get_task("discover_accounts").python_callable
    # Tasks in the other slots have spent 3 of this window's 5 requests.
    assert [first_request_of_a_task() for _ in range(3)] == [200, 200, 200]
    assert discover() == [STANDARD_ACCOUNT]  # its request leaves 1, fewer than the 3 kept back

    # The four tasks that take the pool's slots next each send a first request, together.
    with ThreadPoolExecutor(slots) as pool:
        assert list(pool.map(first_request_of_a_task, range(slots))) == [200] * slots
    assert [r["status"] for r in sim.requests].count(429) == 0
