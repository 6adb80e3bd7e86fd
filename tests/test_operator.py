"""CloudflarePaygoUsageOperator against the simulator: windows, XCom, object storage, safety, reconciliation.

Most tests call ``execute`` directly (the operator's logic); ``tests/dags/operator_*.py`` run through a
real ``dag.test()`` where Airflow itself matters: deferral on a long 429, and asset events.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pendulum
import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT
from conftest import run_operator as run  # also imported from here by other test modules
from test_formats import (
    assert_csv_matches,
    assert_jsonl_matches,
    assert_parquet_matches,
    in_window,
    served,
)

from airflow_provider_cfbilling.exceptions import (
    CloudflareBillingError,
    CloudflareBillingInputError,
    CloudflareConnectionError,
    CloudflareRateLimitError,
    CloudflareResponseError,
    CloudflareServerError,
)
from airflow_provider_cfbilling.hooks.billing import RATE_LIMIT_JITTER
from airflow_provider_cfbilling.operators.billing import MAX_RATE_LIMIT_DEFERRALS, CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.testing.simulator import (
    ANCHOR31_ACCOUNT,
    EMPTY_ACCOUNT,
    FOCUS_ACCOUNT,
    LARGE_ACCOUNT,
    SIM_TOKEN,
    STANDARD_ACCOUNT,
)
from airflow_provider_cfbilling.utils import storage
from airflow_provider_cfbilling.utils.reconcile import cost_totals, reconcile

DAGS = Path(__file__).parent / "dags"


def usage_requests(sim: Any) -> list[dict[str, Any]]:
    return [r for r in sim.requests if "info" not in r["path"]]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


# -- XCom mode and windows -------------------------------------------------------------------------


def test_no_window_returns_the_current_period_exactly_as_served(sim: Any, use_conn: Any) -> None:
    records = run()
    assert records == served(sim, STANDARD_ACCOUNT)[0]
    assert {r["BillingPeriodStart"] for r in records} == {"2025-11-14T00:00:00Z"}
    assert usage_requests(sim)[-1]["query"] == {}  # no window parameters: the API's current period
    json.dumps(records)  # JSON-serialisable as it is


def test_range_is_half_open_and_asks_for_the_end_day(sim: Any, use_conn: Any) -> None:
    records = run(from_="2025-10-14", to="2025-10-20")
    days = sorted({r["ChargePeriodStart"] for r in records})
    assert days[0] == "2025-10-14T00:00:00Z" and days[-1] == "2025-10-19T00:00:00Z"
    assert usage_requests(sim)[-1]["query"] == {"from": "2025-10-14", "to": "2025-10-20"}
    assert records == in_window(
        served(sim, STANDARD_ACCOUNT, **{"from": "2025-10-14", "to": "2025-10-20"})[0], "2025-10-14", "2025-10-20"
    )


def test_range_is_right_whether_the_api_reads_to_inclusively_or_not(sim: Any, use_conn: Any) -> None:
    window = {"from": "2025-10-14", "to": "2025-11-14"}
    inclusive = run(from_="2025-10-14", to="2025-11-14")
    sim.set_to_inclusive(False)  # the simulator's other reading of `to`: the answers really differ
    assert len(served(sim, STANDARD_ACCOUNT, **window)[0]) == 31 * 4
    assert run(from_="2025-10-14", to="2025-11-14") == inclusive
    sim.set_to_inclusive(True)
    assert len(served(sim, STANDARD_ACCOUNT, **window)[0]) == 32 * 4  # the end day too
    assert {r["BillingPeriodStart"] for r in inclusive} == {"2025-10-14T00:00:00Z"}
    assert len(inclusive) == 31 * 4


def test_datetime_bounds_from_the_sensor_mean_their_utc_days(sim: Any, use_conn: Any) -> None:
    by_dates = run(from_="2025-10-14", to="2025-11-14")
    assert run(from_="2025-10-14T00:00:00Z", to="2025-11-14T00:00:00Z") == by_dates
    assert run(from_=dt.date(2025, 10, 14), to=dt.datetime(2025, 11, 14, tzinfo=dt.timezone.utc)) == by_dates


@pytest.mark.parametrize(
    ("account", "date", "start", "end"),
    [
        (STANDARD_ACCOUNT, "2025-10-01", "2025-09-14", "2025-10-14"),
        (STANDARD_ACCOUNT, "2025-10-14", "2025-10-14", "2025-11-14"),  # the anchor day opens a period
        (STANDARD_ACCOUNT, "2025-10-13T23:59:59Z", "2025-09-14", "2025-10-14"),
        (ANCHOR31_ACCOUNT, "2025-10-01", "2025-09-30", "2025-10-31"),
        (ANCHOR31_ACCOUNT, "2025-03-15", "2025-02-28", "2025-03-31"),  # clamped, then back to the 31st
        (FOCUS_ACCOUNT, "2025-10-01", "2025-10-01", "2025-11-01"),  # two subscriptions: the usage's one
        (LARGE_ACCOUNT, "2025-07-31", "2025-07-01", "2025-08-01"),
    ],
)
def test_billing_period_of_fetches_the_accounts_own_period(
    sim: Any, use_conn: Any, account: str, date: str, start: str, end: str
) -> None:
    # A month of the zone-level account in the 27 documented columns is over the 1 MiB XCom default.
    records = run(account_id=account, billing_period_of=date, max_xcom_bytes=None)
    assert records, "a whole past period has usage"
    assert {r["BillingPeriodStart"] for r in records} == {f"{start}T00:00:00Z"}
    days = sorted({r["ChargePeriodStart"] for r in records})
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    assert days[0] == f"{start}T00:00:00Z"
    assert len(days) == (last - first).days  # every day of the period, nothing more
    assert usage_requests(sim)[-1]["query"] == {"from": start, "to": end}
    assert records == in_window(served(sim, account, **{"from": start, "to": end})[0], start, end)


def test_billing_period_of_an_empty_account_is_an_empty_list(sim: Any, use_conn: Any) -> None:
    assert run(account_id=EMPTY_ACCOUNT, billing_period_of="2025-10-01") == []


def test_subscription_id_picks_the_billing_cycle(sim: Any, use_conn: Any) -> None:
    from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook

    subscriptions = CloudflareBillingHook().get_billing_info(FOCUS_ACCOUNT)["subscriptions"]
    second = max(subscriptions, key=lambda s: s["billing_cycle_anchor_timestamp"])
    run(account_id=FOCUS_ACCOUNT, billing_period_of="2025-10-25", subscription_id=second["id"])
    assert usage_requests(sim)[-1]["query"] == {"from": "2025-10-20", "to": "2025-11-20"}


# The operator's bad inputs (refused before any request) are tested in test_bad_input.py, with every entry point's.


def test_a_result_too_large_for_xcom_points_to_destination(sim: Any, use_conn: Any) -> None:
    from airflow_provider_cfbilling.compat import AirflowFailException

    with pytest.raises(AirflowFailException) as failure:
        run(max_xcom_bytes=1_000)
    message = str(failure.value)
    assert "destination=" in message and "xcom_objectstorage_path" in message and "max_xcom_bytes" in message
    assert run(max_xcom_bytes=None) == served(sim, STANDARD_ACCOUNT)[0]  # no limit: the whole answer
    # The limit is inclusive: a result of exactly max_xcom_bytes is returned, one byte more is refused.
    size = int(re.search(r"\(([\d,]+) bytes as JSON\)", message).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert run(max_xcom_bytes=size) == served(sim, STANDARD_ACCOUNT)[0]
    with pytest.raises(AirflowFailException, match=rf"exceed max_xcom_bytes={size - 1:,}"):
        run(max_xcom_bytes=size - 1)


@pytest.mark.parametrize("threshold", ["1000", "0"])  # 0: every value goes to object storage
def test_the_object_storage_xcom_backend_lifts_the_limit(
    sim: Any, use_conn: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, threshold: str
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__XCOM_BACKEND", storage.XCOM_OBJECTSTORAGE_BACKEND)
    monkeypatch.setenv("AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH", tmp_path.as_uri())
    monkeypatch.setenv("AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD", threshold)
    expected = served(sim, STANDARD_ACCOUNT)[0]
    assert len(json.dumps(expected)) > 1_000  # the limit would refuse it without that backend
    assert run(max_xcom_bytes=1_000) == expected


@pytest.mark.parametrize("missing", ["backend", "path", "threshold"])
def test_a_partly_configured_object_storage_xcom_backend_keeps_the_limit(
    sim: Any, use_conn: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, missing: str
) -> None:
    """The backend offloads only with its path and a threshold set: without any one of them the limit holds."""
    from airflow_provider_cfbilling.compat import AirflowFailException

    settings = {
        "backend": ("AIRFLOW__CORE__XCOM_BACKEND", storage.XCOM_OBJECTSTORAGE_BACKEND),
        "path": ("AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH", tmp_path.as_uri()),
        "threshold": ("AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD", "1000"),
    }
    for name, (variable, value) in settings.items():
        if name != missing:
            monkeypatch.setenv(variable, value)
    with pytest.raises(AirflowFailException, match="max_xcom_bytes"):
        run(max_xcom_bytes=1_000)


def test_a_focus_landing_of_a_billing_period_takes_its_end_from_the_window(
    sim: Any, use_conn: Any, tmp_path: Path
) -> None:
    """BillingPeriodEnd of a billing_period_of landing is the window's end: the billing info is read once, to
    place the window, not again for the FOCUS columns."""
    manifest = run(billing_period_of="2025-10-20", focus_version="1.2", destination=(tmp_path / "f.jsonl").as_uri())
    assert manifest["rows"] > 0
    info_calls = [r["path"] for r in sim.requests if r["path"].endswith("/info")]
    assert info_calls == [f"/client/v4/accounts/{STANDARD_ACCOUNT}/billable-usage/info"]
    ends = {json.loads(line)["BillingPeriodEnd"] for line in (tmp_path / "f.jsonl").read_text().splitlines()}
    assert ends == {"2025-11-14T00:00:00Z"}


# -- object storage --------------------------------------------------------------------------------


@pytest.mark.parametrize("file_format", ["jsonl", "json", "csv", "parquet"])
def test_lands_a_file_and_returns_its_manifest(sim: Any, use_conn: Any, tmp_path: Path, file_format: str) -> None:
    destination = f"file://{tmp_path}/account={{account_id}}/billing_period={{billing_period}}/usage.{file_format}"
    manifest = run(billing_period_of="2025-10-01", destination=destination)

    path = tmp_path / f"account={STANDARD_ACCOUNT}" / "billing_period=2025-09-14" / f"usage.{file_format}"
    data = path.read_bytes()
    records, exact = served(sim, STANDARD_ACCOUNT, **{"from": "2025-09-14", "to": "2025-10-14"})
    records = in_window(records, "2025-09-14", "2025-10-14")
    exact = in_window(exact, "2025-09-14", "2025-10-14")
    if file_format == "jsonl":
        assert_jsonl_matches(data, records)
    elif file_format == "json":
        assert json.loads(data) == records
    elif file_format == "csv":
        assert_csv_matches(data, exact)
    else:
        import pyarrow.parquet as pq

        assert_parquet_matches(pq.read_table(io.BytesIO(data)), exact)

    assert manifest == {
        "uri": f"file://{path}",
        "format": file_format,
        "account_id": STANDARD_ACCOUNT,
        "window": {"kind": "billing_period", "from": "2025-09-14", "to": "2025-10-14"},
        "billing_periods": ["2025-09-14T00:00:00Z"],
        "rows": len(records),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "totals": manifest["totals"],
        "reconciliation": manifest["reconciliation"],
        "written": True,
        "unchanged": False,
        "replaced": None,
        "restatement": False,
    }
    by_service: dict[str, Decimal] = {}
    for row in exact:
        by_service[row["ServiceName"]] = by_service.get(row["ServiceName"], Decimal(0)) + row["ContractedCost"]
    assert {k: Decimal(v) for k, v in manifest["totals"]["by_service"]["USD"].items()} == by_service
    assert Decimal(manifest["totals"]["by_currency"]["USD"]) == sum(by_service.values())
    assert manifest["reconciliation"]["ok"] is True
    assert manifest["reconciliation"]["rows_checked"] == len(records)
    assert SIM_TOKEN not in json.dumps(manifest) and SIM_TOKEN.encode() not in data
    assert leftovers(path.parent) == []


def test_destination_as_object_storage_path_and_suffixless_format(sim: Any, use_conn: Any, tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    manifest = run(
        destination=ObjectStoragePath(f"file://{tmp_path}/account={{account_id}}/usage.txt"), file_format="csv"
    )
    assert manifest["format"] == "csv"
    assert manifest["uri"] == f"file://{tmp_path}/account={STANDARD_ACCOUNT}/usage.txt"
    landed = (tmp_path / f"account={STANDARD_ACCOUNT}" / "usage.txt").read_bytes()
    assert landed.startswith(b"BillingCurrency,BillingPeriodStart,")
    assert run(destination=(tmp_path / "usage.data").as_uri())["format"] == "jsonl"  # the default


def test_a_store_with_rename_gets_an_upload_aside_then_a_rename(sim: Any, use_conn: Any) -> None:
    """Neither a local disk nor an object store (fsspec's memory store): upload aside, then rename."""
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    attach("memory", fs=MemoryFileSystem())  # how a DAG author attaches a filesystem Airflow has no provider for
    target = ObjectStoragePath("memory://cfbilling-test/usage.jsonl")
    manifest = run(destination=target)
    assert manifest["uri"] == "memory:///cfbilling-test/usage.jsonl"  # the memory store roots paths at /
    data = target.read_bytes()
    assert_jsonl_matches(data, served(sim, STANDARD_ACCOUNT)[0])
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert [p.name for p in target.parent.iterdir()] == ["usage.jsonl"]
    target.unlink()


def test_an_empty_result_lands_a_valid_empty_file(sim: Any, use_conn: Any, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    manifest = run(
        account_id=EMPTY_ACCOUNT, billing_period_of="2025-10-01", destination=(tmp_path / "u.parquet").as_uri()
    )
    table = pq.read_table(tmp_path / "u.parquet")
    assert table.num_rows == 0 and table.column_names[0] == "BillingCurrency"
    assert manifest["rows"] == 0 and manifest["billing_periods"] == []
    assert manifest["totals"] == {"by_currency": {}, "by_service": {}}


def test_same_window_same_data_gives_the_same_bytes_at_the_same_uri(sim: Any, use_conn: Any, tmp_path: Path) -> None:
    uri = (tmp_path / "usage.parquet").as_uri()
    first = run(billing_period_of="2025-10-01", destination=uri)
    mtime_bytes = (tmp_path / "usage.parquet").read_bytes()
    second = run(billing_period_of="2025-10-01", destination=uri)
    assert {**second, "written": True, "unchanged": False} == first  # the same bytes: left as they were
    assert (tmp_path / "usage.parquet").read_bytes() == mtime_bytes
    assert leftovers(tmp_path) == []


def test_month_to_date_overwrites_one_object_per_period(sim: Any, use_conn: Any, tmp_path: Path) -> None:
    destination = f"file://{tmp_path}/mtd/account={{account_id}}/billing_period={{billing_period}}/usage.jsonl"
    first = run(destination=destination)
    sim.set_today(dt.date(2025, 11, 21))  # one more day of usage in the same period
    second = run(destination=destination)
    assert first["uri"] == second["uri"] and first["uri"].endswith("billing_period=2025-11-14/usage.jsonl")
    assert second["rows"] == first["rows"] + 4
    assert (
        len(
            (tmp_path / "mtd" / f"account={STANDARD_ACCOUNT}" / "billing_period=2025-11-14" / "usage.jsonl")
            .read_bytes()
            .splitlines()
        )
        == second["rows"]
    )
    sim.set_today(dt.date(2025, 12, 15))  # a new period: a new object, the old one stays
    third = run(destination=destination)
    assert third["uri"].endswith("billing_period=2025-12-14/usage.jsonl")
    assert sorted(p.name for p in (tmp_path / "mtd" / f"account={STANDARD_ACCOUNT}").iterdir()) == [
        "billing_period=2025-11-14",
        "billing_period=2025-12-14",
    ]


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_billing_period_placeholder_with_a_date_window_lands_exactly_the_windows_rows(
    sim: Any, use_conn: Any, tmp_path: Path, file_format: str
) -> None:
    """The period is learnt in a first pass over the answer; the second writes only the window's rows, with the
    columns of those rows."""
    manifest = run(
        from_="2025-10-14", to="2025-10-20", destination=tmp_path.as_uri() + "/{billing_period}." + file_format
    )
    landed = tmp_path / f"2025-10-14.{file_format}"
    assert manifest["uri"] == landed.as_uri()
    _, exact = served(sim, STANDARD_ACCOUNT, **{"from": "2025-10-14", "to": "2025-11-14"})
    expected = in_window(exact, "2025-10-14", "2025-10-20")  # the API also sends the end day: not kept
    assert manifest["rows"] == len(expected) > 0
    if file_format == "csv":
        assert_csv_matches(landed.read_bytes(), expected)
    else:
        assert_parquet_matches(pq.read_table(landed), expected)


def test_billing_period_placeholder_refuses_a_window_spanning_periods(sim: Any, use_conn: Any, tmp_path: Path) -> None:
    with pytest.raises(CloudflareBillingInputError) as refused:
        run(from_="2025-10-01", to="2025-11-01", destination=tmp_path.as_uri() + "/{billing_period}.jsonl")
    assert "spans 2 billing periods (2025-09-14, 2025-10-14). Fetch one period (billing_period_of, or the " in str(
        refused.value
    )
    assert list(tmp_path.iterdir()) == []


# -- failure safety ----------------------------------------------------------------------------------


@pytest.fixture
def landed(sim: Any, use_conn: Any, tmp_path: Path) -> tuple[str, Path, bytes]:
    """A good object from a first run (fast-failing retries from now on)."""
    use_conn(max_retry_wait=0)
    uri = (tmp_path / "usage.parquet").as_uri()
    run(billing_period_of="2025-10-01", destination=uri)
    path = tmp_path / "usage.parquet"
    return uri, path, path.read_bytes()


@pytest.mark.parametrize(
    ("fault", "params", "error"),
    [
        ("server_error", {}, CloudflareServerError),
        ("truncated", {}, CloudflareConnectionError),
        ("wrong_type_result", {}, CloudflareResponseError),
        ("null_result", {}, CloudflareResponseError),
        ("missing_column", {"column": "ChargePeriodStart"}, CloudflareResponseError),
    ],
)
def test_an_api_fault_mid_run_keeps_the_previous_object(
    sim: Any, landed: tuple[str, Path, bytes], fault: str, params: dict[str, Any], error: type[Exception]
) -> None:
    uri, path, before = landed
    sim.add_fault(fault, path="billable-usage", **params)
    with pytest.raises(error):
        run(billing_period_of="2025-10-01", destination=uri)
    assert path.read_bytes() == before
    assert leftovers(path.parent) == []


def test_a_full_disk_while_staging_keeps_the_previous_object(tmp_path: Path) -> None:
    """The kernel refuses the staged file's growth (a file-size limit, as a full disk would): EFBIG.

    In a child process, since the limit holds for the whole process; Python ignores SIGXFSZ, so the write
    fails with an OSError instead of killing the process.
    """
    target = tmp_path / "usage.jsonl"
    target.write_bytes(b'{"previous":"good"}\n' * 1000)  # larger than the limit: only new writes are refused
    before = target.read_bytes()
    script = textwrap.dedent(
        f"""
        import resource, sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from airflow.sdk import ObjectStoragePath
        from airflow_provider_cfbilling.utils.storage import land

        def writer(fileobj):
            for n in range(1000):
                fileobj.write(b'{{"row": %d, "padding": "%s"}}\\n' % (n, b"x" * 64))
            return 1000

        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            land(writer, ObjectStoragePath({target.as_uri()!r}), "jsonl")
        except OSError as exc:
            print(exc.errno)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == str(errno.EFBIG), done.stderr
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("lost", [1, 0], ids=["one-row-lost", "all-rows-there"])
def test_a_staged_parquet_file_missing_rows_is_not_committed(
    sim: Any, landed: tuple[str, Path, bytes], lost: int
) -> None:
    """The staged Parquet file's own row count (read from its footer) must be the rows the writer wrote.

    The writer is the provider's Parquet writer on the API's records; it drops the last ``lost`` of them yet
    reports them all, as a writer that lost a batch would. The staged file is real; nothing stands in for
    the verification. With nothing lost, the same write is committed: the row count is what refused it.
    """
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_cfbilling.utils.formats import column_order, open_writer

    uri, path, before = landed
    records = served(sim, STANDARD_ACCOUNT, **{"from": "2025-10-14", "to": "2025-11-14"})[1]
    assert len(records) > 1

    def writer(fileobj: Any) -> int:
        parquet = open_writer(fileobj, "parquet", column_order(records))
        for record in records[: len(records) - lost]:
            parquet.write(record)
        parquet.close()
        return len(records)  # what the writer claims it wrote

    if lost:
        with pytest.raises(CloudflareBillingError) as refused:
            storage.land(writer, ObjectStoragePath(uri), "parquet")
        assert str(refused.value) == (
            f"The staged Parquet file holds {len(records) - lost} rows, not {len(records)}; not committed."
        )
        assert path.read_bytes() == before  # the previous object is untouched
    else:
        storage.land(writer, ObjectStoragePath(uri), "parquet")
        assert pq.read_metadata(path).num_rows == len(records)
    assert leftovers(path.parent) == []  # the staged file is gone either way


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """The kernel's immutable attribute on ``path`` (root on a filesystem that has it, as in CI): renaming
    onto it fails with EPERM, so a commit really fails while the directory still takes the staged file."""
    chattr = shutil.which("chattr")
    if chattr is None or os.geteuid() != 0:
        pytest.skip("setting the immutable attribute needs chattr and root (scripts/test.sh runs as root in CI)")
    marked = subprocess.run([chattr, "+i", str(path)], capture_output=True, text=True)
    if marked.returncode != 0:
        pytest.skip(f"this filesystem has no immutable attribute: {marked.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def test_a_failure_at_commit_keeps_the_previous_object(sim: Any, landed: tuple[str, Path, bytes]) -> None:
    """The rename that commits the staged file is refused by the filesystem (no stand-in for os.replace)."""
    uri, path, before = landed
    sim.set_today(dt.date(2025, 11, 21))  # different data, so a commit would change the object
    with immutable(path), pytest.raises(PermissionError) as failure:
        run(destination=uri)
    assert failure.value.filename is not None and ".usage.parquet.tmp-" in failure.value.filename
    assert failure.value.filename2 == str(path)  # it was the commit that failed, after the file was staged
    assert path.read_bytes() == before
    assert leftovers(path.parent) == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["usage.parquet"]


def test_a_killed_writer_never_leaves_a_partial_object(tmp_path: Path) -> None:
    """SIGKILL mid-write: the destination still holds the previous object; only a hidden temp remains."""
    target = tmp_path / "usage.jsonl"
    target.write_bytes(b'{"previous":"good"}\n')
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from airflow.sdk import ObjectStoragePath
        from airflow_provider_cfbilling.utils.storage import land

        def slow_writer(fileobj):
            fileobj.write(b'{{"partial": ')
            fileobj.flush()
            print("writing", flush=True)
            time.sleep(60)

        land(slow_writer, ObjectStoragePath({target.as_uri()!r}), "jsonl")
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "writing"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert target.read_bytes() == b'{"previous":"good"}\n'
    hidden = [p.name for p in tmp_path.iterdir() if p != target]
    assert len(hidden) == 1 and hidden[0].startswith(".usage.jsonl.tmp-")  # ignored by dataset readers


# -- reconciliation --------------------------------------------------------------------------------


def test_a_reconciliation_mismatch_is_recorded_in_the_manifest(
    sim: Any, use_conn: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The API sends one row whose ContractedCost is 999.5 more than its CumulatedContractedCost moved.
    sim.add_fault("cost_mismatch", day="2025-09-20", service="Workers Standard", delta="999.5")
    served_cost = next(
        r["ContractedCost"]
        for r in served(sim, STANDARD_ACCOUNT, **{"from": "2025-09-14", "to": "2025-10-14"})[0]
        if r["ChargePeriodStart"] == "2025-09-20T00:00:00Z" and r["ServiceName"] == "Workers Standard"
    )
    manifest = run(billing_period_of="2025-10-01", destination=(tmp_path / "u.jsonl").as_uri())
    check = manifest["reconciliation"]
    assert check["ok"] is False and check["mismatch_count"] == 1
    mismatch = check["mismatches"][0]
    assert mismatch["ChargePeriodStart"] == "2025-09-20T00:00:00Z"
    assert mismatch["ServiceName"] == "Workers Standard"
    assert Decimal(mismatch["ContractedCost"]) == Decimal(str(served_cost))
    assert Decimal(mismatch["difference"]) == Decimal("999.5")
    logged = capsys.readouterr().out
    assert "Reconciliation: 1 row(s)" in logged and mismatch["ContractedCost"] in logged
    assert (tmp_path / "u.jsonl").exists()


def test_strict_reconciliation_fails_before_writing(sim: Any, use_conn: Any, tmp_path: Path) -> None:
    sim.add_fault("cost_mismatch", day="2025-09-20", service="Workers Standard", delta="999.5")
    with pytest.raises(CloudflareBillingError, match=r"Reconciliation failed .* 1 row"):
        run(billing_period_of="2025-10-01", destination=(tmp_path / "u.jsonl").as_uri(), strict=True)
    assert list(tmp_path.iterdir()) == []
    assert run(billing_period_of="2025-10-01", strict=True, reconcile=False)  # opt out entirely


def test_reconciliation_passes_on_every_simulated_account(sim: Any, use_conn: Any, tmp_path: Path) -> None:
    sim.set_large_zones(3)
    for account in (STANDARD_ACCOUNT, ANCHOR31_ACCOUNT, FOCUS_ACCOUNT, LARGE_ACCOUNT):
        for n, kwargs in enumerate(
            ({}, {"billing_period_of": "2025-10-01"}, {"from_": "2025-10-20", "to": "2025-11-20"})
        ):
            destination = (tmp_path / f"{account}-{n}.jsonl").as_uri()
            manifest = run(account_id=account, strict=True, destination=destination, **kwargs)
            check = manifest["reconciliation"]
            assert check["ok"] is True and check["mismatch_count"] == 0, (account, kwargs, check)
            # Every row is checked, except the first of each group in a period the window starts inside of:
            # that one only anchors the running total.
            rows = [json.loads(line) for line in Path(manifest["uri"].removeprefix("file://")).read_text().splitlines()]
            start = kwargs.get("from_", "0000")
            anchors = {
                (r["BillingPeriodStart"], r["ServiceName"], r.get("ZoneId"))
                for r in rows
                if r["BillingPeriodStart"] < start
            }
            assert check["rows_checked"] == len(rows) - len(anchors) > 0, (account, kwargs, check)


def _rows(*days: tuple[str, float, float], period: str = "2025-10-14", **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "BillingPeriodStart": f"{period}T00:00:00Z",
            "BillingCurrency": "USD",
            "ServiceName": "Workers Standard",
            "ChargePeriodStart": f"{day}T00:00:00Z",
            "ContractedCost": cost,
            "CumulatedContractedCost": cumulated,
            **extra,
        }
        for day, cost, cumulated in days
    ]


def test_reconcile_is_exact_where_floats_drift() -> None:
    rows = _rows(("2025-10-14", 0.1, 0.1), ("2025-10-15", 0.2, 0.3), ("2025-10-16", 0.1, 0.4))
    assert 0.3 - 0.1 != 0.2  # float arithmetic would report a false mismatch
    assert reconcile(rows)["ok"] is True
    assert reconcile(rows)["rows_checked"] == 3


def test_reconcile_anchors_on_the_first_row_seen_mid_period() -> None:
    mid = _rows(("2025-10-20", 0.5, 3.5), ("2025-10-21", 0.25, 3.75))
    assert reconcile(mid) == {"ok": True, "rows_checked": 1, "groups": 1, "mismatch_count": 0, "mismatches": []}
    # Known complete from the period's start: the first row must then start from zero.
    result = reconcile(mid, complete_from=dt.datetime(2025, 10, 14, tzinfo=dt.timezone.utc))
    assert result["ok"] is False and result["mismatches"][0]["previous_CumulatedContractedCost"] == "0"


def test_reconcile_checks_the_first_day_from_zero_and_keys_zones_apart() -> None:
    assert reconcile(_rows(("2025-10-14", 0.5, 0.75)))["ok"] is False
    zones = _rows(("2025-10-14", 1.0, 1.0), ("2025-10-15", 1.0, 2.0), ZoneId="a") + _rows(
        ("2025-10-14", 5.0, 5.0), ("2025-10-15", 5.0, 10.0), ZoneId="b"
    )
    result = reconcile(zones)
    assert result["ok"] is True and result["groups"] == 2 and result["rows_checked"] == 4


def test_reconcile_reports_null_costs() -> None:
    rows = _rows(("2025-10-14", 0.5, 0.5), ("2025-10-15", 0.5, 1.0))
    rows[1]["ContractedCost"] = None
    result = reconcile(rows)
    assert result["ok"] is False and result["mismatches"][0]["problem"] == "null cost value"


def test_cost_totals_are_exact_decimal_strings() -> None:
    euro = {"BillingCurrency": "EUR", "ServiceName": "Stream", "ContractedCost": 0.000001}
    rows = [*_rows(("2025-10-14", 0.1, 0.1), ("2025-10-15", 0.2, 0.3)), euro]
    assert cost_totals(rows) == {
        "by_currency": {"EUR": "0.000001", "USD": "0.3"},
        "by_service": {"EUR": {"Stream": "0.000001"}, "USD": {"Workers Standard": "0.3"}},
    }


# -- rate limits -------------------------------------------------------------------------------------


def test_a_long_rate_limit_fails_with_the_wait_when_not_deferrable(sim: Any, use_conn: Any) -> None:
    use_conn(max_retry_wait=0)
    sim.add_fault("block", times=1)
    with pytest.raises(CloudflareRateLimitError, match=r"300 s.*retry_delay >= 300 s") as failure:
        run(deferrable=False)
    assert failure.value.retry_after == 300


def test_a_long_rate_limit_defers_for_the_wait_when_deferrable(sim: Any, use_conn: Any) -> None:
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger

    from airflow_provider_cfbilling.compat import TaskDeferred

    use_conn(max_retry_wait=0)
    sim.add_fault("block", times=1)
    operator = CloudflarePaygoUsageOperator(task_id="usage", deferrable=True)
    before = pendulum.now("UTC")
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})
    after = pendulum.now("UTC")
    trigger = deferred.value.trigger
    assert isinstance(trigger, DateTimeTrigger)
    # The block's 300 s (plus at most the jitter) from the moment of the answer, bracketed by clock readings
    # taken before and after the call: no bound on how long the call itself took.
    assert (trigger.moment - before).total_seconds() >= 299
    assert (trigger.moment - after).total_seconds() <= 300 + RATE_LIMIT_JITTER + 1
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.kwargs == {"deferrals": 1}
    # Resumed by the triggerer: the fetch runs again and succeeds.
    assert operator.execute_complete({}, event=None, deferrals=1) == served(sim, STANDARD_ACCOUNT)[0]


def test_deferrals_are_bounded(sim: Any, use_conn: Any) -> None:
    use_conn(max_retry_wait=0)
    sim.add_fault("block")
    operator = CloudflarePaygoUsageOperator(task_id="usage", deferrable=True)
    with pytest.raises(CloudflareRateLimitError, match=f"Still rate-limited after {MAX_RATE_LIMIT_DEFERRALS} deferred"):
        operator.execute_complete({}, event=None, deferrals=MAX_RATE_LIMIT_DEFERRALS)


def test_rate_limit_while_resolving_the_period_defers_too(sim: Any, use_conn: Any) -> None:
    from airflow_provider_cfbilling.compat import TaskDeferred

    use_conn(max_retry_wait=0)
    sim.add_fault("block", times=1, path="info")
    with pytest.raises(TaskDeferred):
        run(billing_period_of="2025-10-01", deferrable=True)


def test_deferral_through_a_real_dag_run(
    sim: Any, use_conn: Any, dag_runner: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dag.test() runs the trigger inline: defer for Retry-After, resume, land the file."""
    use_conn(max_retry_wait=0)
    monkeypatch.setenv("CFBILLING_TEST_OUT", tmp_path.as_uri())
    sim.add_fault("rate_limit", times=1, retry_after=2)
    started = time.monotonic()
    result = dag_runner(DAGS / "operator_rate_limit.py", "operator_rate_limit")
    assert result.state == "success", result.task_states
    assert time.monotonic() - started >= 2
    assert [r["status"] for r in usage_requests(sim)] == [429, 200]
    manifest = result.xcom("land")
    assert manifest["rows"] > 0 and (tmp_path / "usage.jsonl").exists()


# -- assets ------------------------------------------------------------------------------------------


def test_outlet_assets_carry_the_manifest(
    sim: Any, use_conn: Any, dag_runner: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    monkeypatch.setenv("CFBILLING_TEST_OUT", tmp_path.as_uri())
    result = dag_runner(DAGS / "operator_assets.py", "operator_assets")
    assert result.state == "success", result.task_states
    manifest = result.xcom("land")
    assert manifest["uri"] == f"file://{tmp_path}/account={STANDARD_ACCOUNT}/usage.parquet"
    with create_session() as session:
        events = {
            asset.uri: event.extra
            for event, asset in session.query(AssetEvent, AssetModel)
            .filter(AssetEvent.asset_id == AssetModel.id, AssetEvent.source_run_id == result.run_id)
            .all()
        }
    assert events[tmp_path.as_uri()] == manifest  # the declared Asset (the dataset's root)
    assert events[manifest["uri"]] == manifest  # the AssetAlias resolved to the written object


# -- import cost ---------------------------------------------------------------------------------------


def test_importing_the_operator_loads_no_heavy_module() -> None:
    code = (
        "import sys; import airflow_provider_cfbilling.operators.billing; "
        "heavy = [m for m in ('pyarrow', 's3fs', 'botocore', 'aiobotocore') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == ""


def test_a_resumed_task_meeting_a_new_block_defers_again_instead_of_sleeping(sim: Any, use_conn: Any) -> None:
    """After a deferral the task resumes in a fresh process; if the token is blocked again, even for a wait
    the hook could sleep through (30 s of a 60 s retry budget), it defers rather than hold a worker."""
    from airflow_provider_cfbilling.compat import TaskDeferred

    use_conn(max_retry_wait=60)
    sim.add_fault("block", times=1, retry_after=30)
    operator = CloudflarePaygoUsageOperator(task_id="usage", deferrable=True)
    before = pendulum.now("UTC")
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute_complete({}, event=None, deferrals=1)
    after = pendulum.now("UTC")
    assert deferred.value.kwargs == {"deferrals": 2}
    moment = deferred.value.trigger.moment  # the wait, plus up to 1 s of jitter
    assert before.add(seconds=30) <= moment <= after.add(seconds=31)
    assert [r["status"] for r in sim.requests] == [429]  # deferred at once: no retry from the worker


def test_a_task_that_spent_the_window_down_to_the_reserve_waits_for_the_reset_before_ending(
    sim: Any, use_conn: Any
) -> None:
    """The next task in the pool slot sends its first request before it can read the budget: a task that
    left the window spent down to the requests kept for the other tasks waits for its reset first."""
    sim.set_rate_limit((3, 2, 30))
    use_conn(concurrent_tasks=3)  # 2 of every window kept for the other two tasks of the pool
    operator = CloudflarePaygoUsageOperator(task_id="usage")
    started = time.monotonic()
    assert operator.execute({}) == served(sim, STANDARD_ACCOUNT)[0]
    assert time.monotonic() - started >= 1.0  # the 2 s window (its reset as reported, rounded up)
    assert operator.hook._rate_limit.handover_wait() == 0
