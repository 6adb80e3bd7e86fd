"""OpenLineage: the operator's facets, emitted by the OpenLineage provider's listener in real DAG runs.

``airflow dags test`` runs ``tests/dags/operator_lineage.py`` in a subprocess with the provider's ``file``
transport configured (``[openlineage] transport``); the events it wrote are read back and their datasets and
facets checked against the objects landed. The S3 naming, FOCUS schema and unchanged-object cases call the
operator's ``get_openlineage_facets_on_complete`` after a real ``execute`` (simulator over HTTP, local files,
moto's S3 server).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import _DAGS_FOLDER, BUCKET, airflow_env, connection_uri_json

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.testing.simulator import SIM_TOKEN, STANDARD_ACCOUNT

DAGS = Path(__file__).parent / "dags"
USAGE_NAME = f"/client/v4/accounts/{STANDARD_ACCOUNT}/billable-usage"
RESTATED = {"day": "2025-10-20", "service": "Workers Standard", "delta": "1.25"}


@pytest.fixture
def cloudflare(sim: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDFLARE_DEFAULT", connection_uri_json(sim.url, SIM_TOKEN, STANDARD_ACCOUNT, max_retry_wait=0)
    )
    return sim


def sim_namespace(sim: Any) -> str:
    """The simulator's ``scheme://host:port``: the namespace of its usage endpoint."""
    return "/".join(sim.url.split("/")[:3])


@pytest.fixture
def lineage_enabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The OpenLineage provider configured with a file transport (read afresh: it caches nothing under pytest)."""
    events = tmp_path / "openlineage-events.jsonl"
    monkeypatch.setenv(
        "AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps({"type": "file", "log_file_path": str(events), "append": True})
    )
    return events


def dags_test(sim: Any, out: Path, events: Path, logical_date: str) -> None:
    """``airflow dags test operator_lineage`` in a subprocess, OpenLineage writing to ``events``."""
    shutil.copy(DAGS / "operator_lineage.py", _DAGS_FOLDER)
    env = airflow_env()
    env["AIRFLOW_CONN_CLOUDFLARE_DEFAULT"] = connection_uri_json(sim.url, SIM_TOKEN, STANDARD_ACCOUNT)
    env["CFBILLING_TEST_OUT"] = out.as_uri()
    env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps({"type": "file", "log_file_path": str(events), "append": True})
    env["AIRFLOW__OPENLINEAGE__NAMESPACE"] = "cfbilling-tests"
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "operator_lineage", logical_date],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def completes(events: Path, task_id: str) -> list[dict[str, Any]]:
    """The COMPLETE events of one task, in the order written."""
    lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    return [e for e in lines if e["eventType"] == "COMPLETE" and e["job"]["name"] == f"operator_lineage.{task_id}"]


def test_a_real_dag_run_emits_the_api_as_input_and_the_object_as_output(
    sim: Any, airflow_db: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    out = tmp_path / "lake"
    target = out / f"account={STANDARD_ACCOUNT}" / "billing_period=2025-10-14" / "usage.parquet"

    dags_test(sim, out, events, "2025-11-19")

    (land,) = completes(events, "land")
    assert [(d["namespace"], d["name"]) for d in land["inputs"]] == [(sim_namespace(sim), USAGE_NAME)]
    (output,) = land["outputs"]
    assert (output["namespace"], output["name"]) == ("file", str(target))
    facets = output["facets"]
    schema = pq.read_schema(target)
    assert [(f["name"], f["type"]) for f in facets["schema"]["fields"]] == [(f.name, str(f.type)) for f in schema]
    assert ("ContractedCost", "decimal128(38, 18)") in [(f["name"], f["type"]) for f in facets["schema"]["fields"]]
    first_sha = hashlib.sha256(target.read_bytes()).hexdigest()
    assert facets["version"]["datasetVersion"] == first_sha
    assert facets["lifecycleStateChange"]["lifecycleStateChange"] == "CREATE"
    statistics = output["outputFacets"]["outputStatistics"]
    assert (statistics["rowCount"], statistics["size"]) == (pq.read_metadata(target).num_rows, target.stat().st_size)

    # XCom mode: the API is read, no dataset is written.
    (to_xcom,) = completes(events, "to_xcom")
    assert [(d["namespace"], d["name"]) for d in to_xcom["inputs"]] == [(sim_namespace(sim), USAGE_NAME)]
    assert to_xcom["outputs"] == []

    # Cloudflare restates the period: the next run overwrites the object, and says so.
    sim.add_fault("restated", **RESTATED)
    dags_test(sim, out, events, "2025-11-20")
    _, restated = completes(events, "land")
    (output,) = restated["outputs"]
    assert (output["namespace"], output["name"]) == ("file", str(target))
    assert output["facets"]["lifecycleStateChange"]["lifecycleStateChange"] == "OVERWRITE"
    assert output["facets"]["version"]["datasetVersion"] == hashlib.sha256(target.read_bytes()).hexdigest() != first_sha


def test_focus_schema_and_an_unchanged_object(cloudflare: Any, lineage_enabled: Path, tmp_path: Path) -> None:
    destination = tmp_path / "usage.csv"

    def land() -> Any:
        operator = CloudflarePaygoUsageOperator(
            task_id="land", billing_period_of="2025-10-20", destination=destination.as_uri(), focus_version="1.2"
        )
        operator.execute({})
        return operator.get_openlineage_facets_on_complete(None)

    land()
    lineage = land()  # the same figures: nothing written
    (output,) = lineage.outputs
    assert (output.namespace, output.name) == ("file", str(destination))
    header = destination.read_text().splitlines()[0].split(",")
    fields = {f.name: f.type for f in output.facets["schema"].fields}
    assert list(fields) == header and fields["BillingPeriodEnd"] == "timestamp" and fields["BilledCost"] == "decimal"
    assert "x_CumulatedContractedCost" in fields
    assert "lifecycleStateChange" not in output.facets and output.outputFacets == {}  # unchanged: no change to report
    assert output.facets["version"].datasetVersion == hashlib.sha256(destination.read_bytes()).hexdigest()


def test_s3_object_named_by_bucket_and_key(
    cloudflare: Any,
    s3: Any,
    lineage_enabled: Path,
) -> None:
    _, conn_id = s3
    operator = CloudflarePaygoUsageOperator(
        task_id="land",
        billing_period_of="2025-10-20",
        destination=f"s3://{BUCKET}/cloudflare/billing_period={{billing_period}}/usage.jsonl",
        destination_conn_id=conn_id,
    )
    manifest = operator.execute({})
    lineage = operator.get_openlineage_facets_on_complete(None)
    (output,) = lineage.outputs
    assert (output.namespace, output.name) == (f"s3://{BUCKET}", "cloudflare/billing_period=2025-10-14/usage.jsonl")
    assert manifest["uri"] == f"{output.namespace}/{output.name}"
    fields = {f.name: f.type for f in output.facets["schema"].fields}
    assert fields["ChargePeriodStart"] == "timestamp" and fields["PricingQuantity"] == "integer"
    assert fields["ServiceName"] == "string" and len(fields) == 27
    assert [(d.namespace, d.name) for d in lineage.inputs] == [(sim_namespace(cloudflare), USAGE_NAME)]


def test_without_openlineage_configured_no_schema_is_read(cloudflare: Any, tmp_path: Path) -> None:
    """OpenLineage is installed here but not configured: the operator skips the schema read (its only cost)."""
    from airflow.providers.openlineage import conf

    assert conf.is_disabled()
    operator = CloudflarePaygoUsageOperator(
        task_id="land", billing_period_of="2025-10-20", destination=(tmp_path / "usage.jsonl").as_uri()
    )
    operator.execute({})
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert "schema" not in lineage.outputs[0].facets and "version" in lineage.outputs[0].facets


def test_the_operator_module_imports_no_openlineage() -> None:
    """OpenLineage is an optional extra: importing the operator (every DAG parse) must not load it.

    What Airflow's SDK loads for any DAG (its providers' metadata) is recorded first.
    """
    code = (
        "import sys\n"
        "import airflow.sdk\n"
        "from airflow.sdk import DAG, Asset, BaseOperator, dag, task\n"
        "loaded_by_airflow = set(sys.modules)\n"
        "import airflow_provider_cfbilling.operators.billing\n"
        "print(','.join(m for m in sys.modules if 'openlineage' in m and m not in loaded_by_airflow))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=airflow_env())
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1:] in ([], [""])


def test_the_input_is_named_after_the_path_that_answered(cloudflare: Any, tmp_path: Path) -> None:
    """Cloudflare moved the endpoint: the hook falls back to the older path, and the input dataset names it."""
    cloudflare.add_fault("path_moved", routes=["billable-usage"])
    operator = CloudflarePaygoUsageOperator(
        task_id="land", billing_period_of="2025-10-20", destination=(tmp_path / "usage.jsonl").as_uri()
    )
    operator.execute({})
    lineage = operator.get_openlineage_facets_on_complete(None)
    moved = f"/client/v4/accounts/{STANDARD_ACCOUNT}/paygo-usage"
    assert [(d.namespace, d.name) for d in lineage.inputs] == [(sim_namespace(cloudflare), moved)]
    assert any(r["path"].endswith("/paygo-usage") for r in cloudflare.requests)


def test_a_run_that_failed_reports_no_datasets(cloudflare: Any, tmp_path: Path) -> None:
    """Nothing landed in this process (the listener asks only after success; a fresh operator knows nothing)."""
    operator = CloudflarePaygoUsageOperator(task_id="land", destination=(tmp_path / "usage.jsonl").as_uri())
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert (lineage.inputs, lineage.outputs) == ([], [])


@pytest.mark.parametrize("focus_version", [None, "1.3"], ids=["as served", "FOCUS 1.3"])
def test_json_array_schema_is_the_records_keys(
    cloudflare: Any, lineage_enabled: Path, tmp_path: Path, focus_version: str | None
) -> None:
    destination = tmp_path / "usage.json"
    operator = CloudflarePaygoUsageOperator(
        task_id="land", billing_period_of="2025-10-20", destination=destination.as_uri(), focus_version=focus_version
    )
    operator.execute({})
    (output,) = operator.get_openlineage_facets_on_complete(None).outputs
    records = json.loads(destination.read_text())
    fields = [f.name for f in output.facets["schema"].fields]
    assert fields == list(records[0])  # the keys, in the order written
    assert all(list(record) == fields for record in records)
