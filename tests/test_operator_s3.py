"""The operator writing to S3 through a real S3-protocol server on loopback (moto's server mode).

The amazon provider's ``aws`` connection carries the endpoint (``endpoint_url`` in its extra); the operator
only sees ``s3://`` URIs and ``destination_conn_id``, exactly as in production. Every object is read back
with boto3 and compared field by field with what the Cloudflare simulator served.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import BUCKET, EXAMPLE_DAGS, body, connection_uri_json, keys
from test_formats import assert_csv_matches, assert_parquet_matches, in_window, served

from airflow_provider_cfbilling.exceptions import CloudflareServerError
from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.testing.simulator import ANCHOR31_ACCOUNT, SIM_TOKEN, STANDARD_ACCOUNT
from airflow_provider_cfbilling.utils import storage


@pytest.fixture
def cloudflare(sim: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_DEFAULT", connection_uri_json(sim.url, SIM_TOKEN, STANDARD_ACCOUNT, max_retry_wait=0)
    )
    return sim


def land(conn_id: str, **kwargs: Any) -> Any:
    kwargs.setdefault("billing_period_of", "2025-10-01")
    kwargs.setdefault(
        "destination",
        f"s3://{BUCKET}/cloudflare/account={{account_id}}/billing_period={{billing_period}}/usage.parquet",
    )
    return CloudflarePaygoUsageOperator(task_id="land", destination_conn_id=conn_id, **kwargs).execute({})


def test_parquet_lands_in_s3_through_object_storage_path(cloudflare: Any, s3: Any) -> None:
    client, conn_id = s3
    manifest = land(conn_id)
    key = f"cloudflare/account={STANDARD_ACCOUNT}/billing_period=2025-09-14/usage.parquet"
    assert keys(client) == [key]  # one object, no temporary ones
    data = body(client, key)
    _, exact = served(cloudflare, STANDARD_ACCOUNT, **{"from": "2025-09-14", "to": "2025-10-14"})
    assert_parquet_matches(pq.read_table(io.BytesIO(data)), in_window(exact, "2025-09-14", "2025-10-14"))
    assert manifest["uri"] == f"s3://{BUCKET}/{key}"
    assert manifest["bytes"] == len(data) and manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert conn_id not in json.dumps(manifest)


def test_csv_lands_in_s3_with_the_connection_in_the_uri(cloudflare: Any, s3: Any) -> None:
    client, conn_id = s3
    manifest = CloudflarePaygoUsageOperator(
        task_id="land", account_id=ANCHOR31_ACCOUNT, destination=f"s3://{conn_id}@{BUCKET}/usage.csv"
    ).execute({})
    _, exact = served(cloudflare, ANCHOR31_ACCOUNT)
    assert_csv_matches(body(client, "usage.csv"), exact)
    assert manifest["uri"] == f"s3://{BUCKET}/usage.csv"


def test_rerun_overwrites_with_identical_bytes(cloudflare: Any, s3: Any) -> None:
    client, conn_id = s3
    first = land(conn_id)
    key = keys(client)[0]
    etag = client.head_object(Bucket=BUCKET, Key=key)["ETag"]
    second = land(conn_id)
    assert (second["written"], second["unchanged"]) == (False, True)  # the same bytes: not uploaded again
    assert {**second, "written": True, "unchanged": False} == first
    assert client.head_object(Bucket=BUCKET, Key=key)["ETag"] == etag
    assert keys(client) == [key]


def test_a_fault_mid_run_keeps_the_previous_object_in_s3(cloudflare: Any, s3: Any) -> None:
    client, conn_id = s3
    land(conn_id)
    key = keys(client)[0]
    before = body(client, key)
    cloudflare.add_fault("server_error", path="billable-usage")
    with pytest.raises(CloudflareServerError):
        land(conn_id)
    assert keys(client) == [key] and body(client, key) == before


def test_a_failed_write_never_reaches_s3(cloudflare: Any, s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, conn_id = s3
    land(conn_id)
    key = keys(client)[0]
    before = body(client, key)

    def half_then_fail(write: Any, local_path: str, file_format: str) -> None:
        with open(local_path, "wb") as fileobj:
            fileobj.write(b"PAR1 half")
        raise OSError("worker ran out of disk")

    monkeypatch.setattr(storage, "_stage", half_then_fail)
    with pytest.raises(OSError, match="out of disk"):
        land(conn_id)
    assert keys(client) == [key] and body(client, key) == before


def test_the_backfill_example_lands_in_s3(
    cloudflare: Any, s3: Any, dag_runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole example pipeline pointed at S3: only the base URI changes."""
    import datetime as dt

    client, conn_id = s3
    monkeypatch.setenv("CFBILLING_EXAMPLE_BASE_URI", f"s3://{conn_id}@{BUCKET}/cloudflare")
    result = dag_runner(
        EXAMPLE_DAGS / "example_cloudflare_backfill_accounts.py",
        "example_cloudflare_backfill_accounts",
        logical_date=dt.datetime(2025, 11, 3, tzinfo=dt.timezone.utc),
        run_conf={"account_ids": [STANDARD_ACCOUNT, ANCHOR31_ACCOUNT]},
    )
    assert result.state == "success", result.task_states
    assert keys(client) == sorted(
        [
            f"cloudflare/periods/account={STANDARD_ACCOUNT}/billing_period=2025-09-14/usage.parquet",
            f"cloudflare/periods/account={ANCHOR31_ACCOUNT}/billing_period=2025-09-30/usage.parquet",
        ]
    )
    _, exact = served(cloudflare, ANCHOR31_ACCOUNT, **{"from": "2025-09-30", "to": "2025-10-31"})
    data = body(client, f"cloudflare/periods/account={ANCHOR31_ACCOUNT}/billing_period=2025-09-30/usage.parquet")
    assert_parquet_matches(pq.read_table(io.BytesIO(data)), in_window(exact, "2025-09-30", "2025-10-31"))


def test_cloudflare_r2_recipe_an_aws_connection_with_r2s_endpoint_and_region_auto(
    cloudflare: Any, s3: Any, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R2 speaks the S3 API: the documented recipe is an ``aws`` connection whose extra holds R2's
    ``endpoint_url`` (``https://<account id>.r2.cloudflarestorage.com``) and ``region_name`` ``auto``. moto's
    server stands in for R2's endpoint."""
    client, _ = s3
    # A unique id, as the s3 fixture's: Airflow caches a filesystem per connection id for the whole process, so
    # a fixed id would reach another test module's (stopped) server when the tests share a process.
    conn_id = f"cloudflare_r2_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "<R2 access key id>",
                "password": "<R2 secret access key>",
                "extra": {"endpoint_url": s3_endpoint, "region_name": "auto"},
            }
        ),
    )
    manifest = land(conn_id, destination=f"s3://{BUCKET}/r2/billing_period={{billing_period}}/usage.jsonl")
    key = "r2/billing_period=2025-09-14/usage.jsonl"
    assert keys(client) == [key]
    assert manifest["uri"] == f"s3://{BUCKET}/{key}" and manifest["rows"] == len(body(client, key).splitlines()) > 0
