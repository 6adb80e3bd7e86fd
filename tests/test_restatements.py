"""Restatements: Cloudflare changes a closed period's figures, and the next landing of that period says so.

The simulator's ``restated`` fault serves a closed period with one day's cost changed (and every running total
after it, so the answer still reconciles): the operator compares the new file with the object already at the
destination, writes only when the bytes differ, and records the replaced object (sha256, size, exact totals
read back from it) in the manifest, the Asset event's extra and one warning line. Through real parts: the
simulator over HTTP, local files, moto's S3 server.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import BUCKET, body, connection_uri_json, keys
from test_contract import strict_response_schema, validate

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.testing.simulator import SIM_TOKEN, STANDARD_ACCOUNT
from airflow_provider_cfbilling.utils import storage

PERIOD_OF = "2025-10-20"  # the standard account's period [2025-10-14, 2025-11-14): closed on 2025-11-20
RESTATED = {"day": "2025-10-20", "service": "Workers Standard", "delta": "1.25"}
OPERATOR_LOGGER = "airflow.task.operators.airflow_provider_cfbilling.operators.billing.CloudflarePaygoUsageOperator"


@pytest.fixture
def cloudflare(sim: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_DEFAULT", connection_uri_json(sim.url, SIM_TOKEN, STANDARD_ACCOUNT, max_retry_wait=0)
    )
    return sim


def run(**kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Execute the operator with an Asset outlet; return (manifest, the Asset event's extra)."""
    from airflow.sdk import Asset
    from airflow.sdk.execution_time.context import OutletEventAccessors

    asset = Asset(name="usage", uri="file:///tmp/cloudflare-usage/")
    events = OutletEventAccessors()
    kwargs.setdefault("billing_period_of", PERIOD_OF)
    manifest = CloudflarePaygoUsageOperator(task_id="land", outlets=[asset], **kwargs).execute(
        {"outlet_events": events}  # type: ignore[arg-type]
    )
    return manifest, dict(events[asset].extra)


def warnings_of(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The warning lines the operator logged since the last call (Airflow's structured log, on stdout).

    Airflow warns on every run that ``execute`` is called outside its task runner: that line is not ours.
    """
    lines = capsys.readouterr().out.splitlines()
    return [line for line in lines if "[warning" in line and "outside of the Task Runner" not in line]


def served_rows(sim: Any) -> list[dict[str, Any]]:
    response = requests.get(
        f"{sim.url}/accounts/{STANDARD_ACCOUNT}/billable-usage",
        headers={"Authorization": f"Bearer {SIM_TOKEN}"},
        params={"from": "2025-10-14", "to": "2025-11-13"},
        timeout=10,
    )
    response.raise_for_status()
    return json.loads(response.text, parse_float=Decimal)["result"]


# -- the simulator's restatement ------------------------------------------------------------------------------


def test_the_restated_fault_moves_one_day_and_the_running_totals_after_it(cloudflare: Any) -> None:
    before = served_rows(cloudflare)
    cloudflare.add_fault("restated", **RESTATED)
    after = served_rows(cloudflare)
    delta = Decimal(RESTATED["delta"])
    assert len(after) == len(before)
    changed = []
    for old, new in zip(before, after, strict=True):
        differs = {k for k in old if old[k] != new[k]}
        if differs:
            changed.append((new["ChargePeriodStart"][:10], new["ServiceName"], differs))
            assert new["CumulatedContractedCost"] - old["CumulatedContractedCost"] == delta
            if new["ChargePeriodStart"].startswith(RESTATED["day"]):
                assert new["ContractedCost"] - old["ContractedCost"] == delta
    # The restated day's row and every later day's running total of that service, nothing else.
    workers_days = sorted({d for d, s, _ in changed if s == RESTATED["service"]})
    assert {s for _, s, _ in changed} == {RESTATED["service"]}
    assert workers_days[0] == RESTATED["day"] and workers_days[-1] == "2025-11-13" and len(workers_days) == 25
    # Still a consistent answer: each day's cost is the movement of the running total.
    running = Decimal(0)
    for row in (r for r in after if r["ServiceName"] == RESTATED["service"]):
        assert row["CumulatedContractedCost"] - running == row["ContractedCost"]
        running = row["CumulatedContractedCost"]


def test_a_restated_answer_still_matches_the_published_schema(cloudflare: Any) -> None:
    for route, name in (("billable-usage", "billable_usage"), ("paygo-usage", "paygo_usage")):
        cloudflare.add_fault("restated", times=1, **RESTATED)
        response = requests.get(
            f"{cloudflare.url}/accounts/{STANDARD_ACCOUNT}/{route}",
            headers={"Authorization": f"Bearer {SIM_TOKEN}"},
            params={"from": "2025-10-14", "to": "2025-11-13"},
            timeout=10,
        )
        validate(json.loads(response.text), strict_response_schema(name))


@pytest.mark.parametrize("bad", [{"day": "20.10.2025"}, {"service": None}, {"delta": "a lot"}])
def test_the_restated_fault_refuses_bad_parameters(cloudflare: Any, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="restated"):
        cloudflare.add_fault("restated", **{**RESTATED, **bad})


# -- local files ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("focus_version", [None, "1.2"], ids=["as served", "FOCUS 1.2"])
@pytest.mark.parametrize("file_format", ["jsonl", "json", "csv", "parquet"])
def test_unchanged_is_not_written_and_a_restatement_is_recorded(
    cloudflare: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], file_format: str, focus_version: str | None
) -> None:
    destination = tmp_path / f"usage.{file_format}"
    kwargs = {"destination": destination.as_uri(), "focus_version": focus_version}
    first, _ = run(**kwargs)
    assert (first["written"], first["unchanged"], first["replaced"], first["restatement"]) == (True, False, None, False)
    stat = os.stat(destination)

    # The same figures again: nothing is written, the manifest says so.
    capsys.readouterr()
    second, extra = run(**kwargs)
    assert (second["written"], second["unchanged"], second["replaced"], second["restatement"]) == (
        False,
        True,
        None,
        False,
    )
    assert {k: v for k, v in second.items() if k not in ("written", "unchanged")} == {
        k: v for k, v in first.items() if k not in ("written", "unchanged")
    }
    after = os.stat(destination)
    assert (after.st_ino, after.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert warnings_of(capsys) == []
    assert extra["unchanged"] is True
    assert sorted(os.listdir(tmp_path)) == [destination.name]

    # Cloudflare restates a day of the closed period: the object is replaced, and the manifest says how.
    cloudflare.add_fault("restated", **RESTATED)
    capsys.readouterr()
    third, extra = run(**kwargs)
    data = destination.read_bytes()
    assert third["sha256"] == hashlib.sha256(data).hexdigest() != first["sha256"]
    assert (third["written"], third["unchanged"], third["restatement"]) == (True, False, True)
    assert third["replaced"] == {"sha256": first["sha256"], "bytes": first["bytes"], "totals": first["totals"]}
    delta = Decimal(RESTATED["delta"])
    service = RESTATED["service"]
    old, new = first["totals"], third["totals"]
    assert Decimal(new["by_currency"]["USD"]) - Decimal(old["by_currency"]["USD"]) == delta
    assert Decimal(new["by_service"]["USD"][service]) - Decimal(old["by_service"]["USD"][service]) == delta
    assert {s: v for s, v in new["by_service"]["USD"].items() if s != service} == {
        s: v for s, v in old["by_service"]["USD"].items() if s != service
    }
    warnings = warnings_of(capsys)
    assert len(warnings) == 1, warnings
    assert "Restatement" in warnings[0] and first["sha256"] in warnings[0] and third["sha256"] in warnings[0]
    assert extra["restatement"] is True and extra["replaced"]["sha256"] == first["sha256"]
    assert extra["sha256"] == third["sha256"] and extra["totals"] == new
    assert sorted(os.listdir(tmp_path)) == [destination.name]


def test_an_open_window_replaced_is_no_restatement(
    cloudflare: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The current period grows every day: replacing it is expected, recorded, and not warned about."""
    destination = tmp_path / "usage.jsonl"
    first = CloudflarePaygoUsageOperator(task_id="land", destination=destination.as_uri()).execute({})
    cloudflare.set_today(dt.date(2025, 11, 21))
    capsys.readouterr()
    second = CloudflarePaygoUsageOperator(task_id="land", destination=destination.as_uri()).execute({})
    assert second["written"] and not second["restatement"]
    assert second["replaced"]["sha256"] == first["sha256"] and second["replaced"]["totals"] == first["totals"]
    assert warnings_of(capsys) == []


def test_an_unreadable_previous_object_is_replaced_with_the_gap_recorded(cloudflare: Any, tmp_path: Path) -> None:
    destination = tmp_path / "usage.parquet"
    destination.write_bytes(b"not a parquet file")
    manifest, _ = run(destination=destination.as_uri())
    assert manifest["written"] and manifest["restatement"]
    replaced = manifest["replaced"]
    assert replaced["sha256"] == hashlib.sha256(b"not a parquet file").hexdigest() and replaced["totals"] is None
    assert "could not be read as parquet" in replaced["totals_error"]
    assert hashlib.sha256(destination.read_bytes()).hexdigest() == manifest["sha256"]


def parquet_with_one_column() -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pa.table({"BillingCurrency": ["USD"]}), out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("suffix", "content", "reason"),
    [
        ("jsonl", b'{"BillingCurrency": "USD", "ServiceName": "R2", "ContractedCost": 1.5}\n[1, 2]\n', "record 2 of "),
        ("json", b'["not a record"]', "record 1 of "),
        ("jsonl", b'{"BillingCurrency": "USD", "ContractedCost": 1.5}\n', "record 1 has no column ServiceName"),
        ("csv", b"BillingCurrency,ContractedCost\nUSD,1.5\n", "has no column ServiceName in its header"),
        ("parquet", parquet_with_one_column(), "has no column ServiceName, ContractedCost in its schema"),
    ],
    ids=["jsonl-not-an-object", "json-not-an-object", "jsonl-without-a-column", "csv-header", "parquet-schema"],
)
def test_a_previous_object_in_another_shape_is_replaced_with_what_was_wrong_recorded(
    cloudflare: Any, tmp_path: Path, suffix: str, content: bytes, reason: str
) -> None:
    """Someone else's file at the destination: it is replaced, and the manifest says exactly why its totals are
    missing. Reading it back raises no warning (ijson warns on a file opened as text, and will refuse it)."""
    import warnings

    destination = tmp_path / f"usage.{suffix}"
    destination.write_bytes(content)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest, _ = run(destination=destination.as_uri())
    assert [str(w.message) for w in caught if "binary mode" in str(w.message)] == []
    replaced = manifest["replaced"]
    assert replaced["totals"] is None
    assert replaced["totals_error"].startswith(f"the replaced object could not be read as {suffix}: ")
    assert reason in replaced["totals_error"]
    if reason.startswith("record 2 of ") or reason.startswith("record 1 of "):
        assert replaced["totals_error"].endswith(" is not a JSON object")
    assert hashlib.sha256(destination.read_bytes()).hexdigest() == manifest["sha256"]


def test_a_failure_during_the_restatement_write_keeps_the_old_object(
    cloudflare: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    destination = tmp_path / "usage.parquet"
    first, _ = run(destination=destination.as_uri())
    before = destination.read_bytes()
    cloudflare.add_fault("restated", **RESTATED)

    def killed(src: str, dst: str) -> None:
        raise KeyboardInterrupt  # the worker is killed at the commit of the restated file

    monkeypatch.setattr(storage.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        run(destination=destination.as_uri())
    assert destination.read_bytes() == before and sorted(os.listdir(tmp_path)) == [destination.name]

    # While reading the old object's totals back, too.
    def broken_read(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("worker out of memory")

    monkeypatch.undo()
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_DEFAULT",
        connection_uri_json(cloudflare.url, SIM_TOKEN, STANDARD_ACCOUNT, max_retry_wait=0),
    )
    monkeypatch.setattr("airflow_provider_cfbilling.operators.billing.read_records", broken_read)
    with pytest.raises(MemoryError):
        run(destination=destination.as_uri())
    assert destination.read_bytes() == before and sorted(os.listdir(tmp_path)) == [destination.name]

    # Once the worker is well again, the restatement lands.
    monkeypatch.undo()
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_DEFAULT",
        connection_uri_json(cloudflare.url, SIM_TOKEN, STANDARD_ACCOUNT, max_retry_wait=0),
    )
    manifest, _ = run(destination=destination.as_uri())
    assert manifest["restatement"] and manifest["replaced"]["sha256"] == first["sha256"]


# -- S3 (moto's server) ---------------------------------------------------------------------------------------


def test_s3_unchanged_is_not_uploaded_and_a_restatement_replaces_the_object(
    cloudflare: Any,
    s3: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, conn_id = s3
    kwargs = {"destination": f"s3://{BUCKET}/cloudflare/usage.parquet", "destination_conn_id": conn_id}
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    try:
        land_and_restate(cloudflare, client, kwargs, capsys)
    finally:  # the fixture deletes the bucket, which must hold no version then
        for version in client.list_object_versions(Bucket=BUCKET).get("Versions", []):
            client.delete_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])


def land_and_restate(cloudflare: Any, client: Any, kwargs: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    first, _ = run(**kwargs)

    def versions() -> list[str]:
        listed = client.list_object_versions(Bucket=BUCKET, Prefix="cloudflare/").get("Versions", [])
        return [v["VersionId"] for v in listed]

    assert len(versions()) == 1
    second, _ = run(**kwargs)
    assert second["unchanged"] and not second["written"] and len(versions()) == 1

    cloudflare.add_fault("restated", **RESTATED)
    capsys.readouterr()
    third, extra = run(**kwargs)
    assert len(versions()) == 2 and keys(client) == ["cloudflare/usage.parquet"]
    assert hashlib.sha256(body(client, "cloudflare/usage.parquet")).hexdigest() == third["sha256"]
    assert third["restatement"] and third["replaced"] == {
        "sha256": first["sha256"],
        "bytes": first["bytes"],
        "totals": first["totals"],
    }
    assert len(warnings_of(capsys)) == 1
    assert extra["replaced"]["sha256"] == first["sha256"]


def test_s3_a_failed_restatement_upload_keeps_the_old_object(
    cloudflare: Any,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, conn_id = s3
    kwargs = {"destination": f"s3://{BUCKET}/cloudflare/usage.csv", "destination_conn_id": conn_id}
    run(**kwargs)
    before = body(client, "cloudflare/usage.csv")
    cloudflare.add_fault("restated", **RESTATED)
    from airflow.sdk import ObjectStoragePath

    def dropped(*args: Any, **kwargs: Any) -> None:
        raise ConnectionResetError("connection to the object store dropped mid-upload")

    # The filesystem the operator uses: Airflow and fsspec keep one per connection.
    filesystem = ObjectStoragePath(kwargs["destination"], conn_id=conn_id).fs
    monkeypatch.setattr(filesystem, "put_file", dropped)
    with pytest.raises(ConnectionResetError):
        run(**kwargs)
    assert keys(client) == ["cloudflare/usage.csv"] and body(client, "cloudflare/usage.csv") == before
