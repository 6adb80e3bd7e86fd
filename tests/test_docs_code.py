"""Every Python block shown in README.md and docs/ runs for real, against the simulator and moto's S3 server.

Code in the docs is either included from a tested file (``--8<-- "example_dags/..."``: the example DAGs, run by
``test_example_dags.py``) or written inline; each inline block is registered here with the test that runs it,
and ``test_every_python_block_in_the_docs_is_tested`` fails on a block that is not. A block is identified by
its file and its first line, so editing a block keeps its test, and a new block needs one.

How each kind of block runs:

- a complete DAG file (README's quick start) is written to a DAG file and run with ``dag.test()``;
- a DAG fragment (tasks without a DAG) is placed in a ``with DAG(...)`` block, with the imports the page's
  text names, and run the same way;
- plain Python (hook calls, the simulator, an import) is executed as it stands.

``cloudflare_default`` points at the simulator (clock 2025-11-20); ``aws_default`` at moto's S3 server, with
the buckets the blocks name created. What each block says it does is then checked against what the
simulator serves.
"""

from __future__ import annotations

import ast
import datetime as dt
import io
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT, moto_connection
from test_formats import assert_parquet_matches, in_window, served

from airflow_provider_cfbilling.testing.simulator import FOCUS_ACCOUNT, STANDARD_ACCOUNT

FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.M | re.S)
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$')


def doc_files() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


def python_blocks() -> list[tuple[str, str]]:
    """(file relative to the repository, block text) for every fenced Python block."""
    return [
        (str(path.relative_to(REPO_ROOT)), match.group(1))
        for path in doc_files()
        for match in FENCE.finditer(path.read_text())
    ]


def block(doc: str, first_line: str) -> str:
    """The one block of ``doc`` that starts with ``first_line``."""
    found = [text for name, text in python_blocks() if name == doc and text.splitlines()[0] == first_line]
    assert len(found) == 1, f"{doc}: {len(found)} Python blocks start with {first_line!r}"
    return found[0]


# (file, first line) of every inline block, and the test that runs it.
TESTED_BLOCKS = {
    ("README.md", "import pendulum"): "test_readme_quick_start_lands_the_current_period_in_s3",
    ("docs/hook.md", "from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook"): (
        "test_hook_calls_return_what_the_page_says"
    ),
    ("docs/sensor.md", "from datetime import timedelta"): "test_sensor_then_operator_books_the_closed_period",
    ("docs/focus.md", "CloudflarePaygoUsageOperator("): "test_focus_operator_lands_focus_columns",
    ("docs/simulator.md", "import datetime as dt"): "test_simulator_block_starts_and_stops_a_simulator",
    ("docs/operator.md", "from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator"): (
        "test_operator_import_line"
    ),
}


def test_every_python_block_in_the_docs_is_tested() -> None:
    inline = set()
    for doc, text in python_blocks():
        lines = [line for line in text.splitlines() if line.strip()]
        included = [SNIPPET.match(line) for line in lines]
        if lines and all(included):
            for match in included:
                assert match is not None
                path = match.group(1)
                # Included code must be a file the tests run: the example DAGs (test_example_dags.py).
                assert path.startswith("example_dags/"), f"{doc} includes {path}, which no test runs"
                assert (REPO_ROOT / path).is_file(), f"{doc} includes {path}, which does not exist"
            continue
        assert not any(included), f"{doc}: a block mixes included and inline code"
        inline.add((doc, text.splitlines()[0]))
    assert inline == set(TESTED_BLOCKS), (
        "every inline Python block in the docs needs a test in tests/test_docs_code.py (TESTED_BLOCKS); "
        f"untested: {sorted(inline - set(TESTED_BLOCKS))}, registered but gone: {sorted(set(TESTED_BLOCKS) - inline)}"
    )
    for name in TESTED_BLOCKS.values():
        assert callable(globals().get(name)), name


# -- fixtures ---------------------------------------------------------------------------------------------

DOC_BUCKETS = ("finops-raw", "finops")  # the buckets the README's and docs/focus.md's destinations name


@pytest.fixture
def aws_default(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``aws_default`` pointing at moto's S3 server, with the buckets the docs name; yields a boto3 client."""
    client = moto_connection("aws_default", s3_endpoint, monkeypatch)
    for bucket in DOC_BUCKETS:
        client.create_bucket(Bucket=bucket)
    yield client
    for bucket in DOC_BUCKETS:
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)


def bucket_keys(client: Any, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def read_parquet(client: Any, bucket: str, key: str) -> Any:
    return pq.read_table(io.BytesIO(client.get_object(Bucket=bucket, Key=key)["Body"].read()))


def utc(year: int, month: int, day: int) -> dt.datetime:
    return dt.datetime(year, month, day, tzinfo=dt.timezone.utc)


def fragment_dag(tmp_path: Path, dag_id: str, code: str, imports: str = "") -> Path:
    """A DAG file holding a docs fragment (tasks written without their DAG) inside ``with DAG(...)``."""
    source = (
        "import pendulum\n"
        "from airflow.sdk import DAG\n"
        f"{imports}\n"
        f"with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz='UTC'), catchup=False):\n"
        f"{textwrap.indent(code, '    ')}"
    )
    path = tmp_path / f"{dag_id}.py"
    path.write_text(source)
    return path


# -- the blocks -------------------------------------------------------------------------------------------


def test_readme_quick_start_lands_the_current_period_in_s3(
    sim: Any, cloudflare_conn: str, aws_default: Any, dag_runner: Any, tmp_path: Path
) -> None:
    """The quick start as shown (README.md, and docs/index.md through the snippet), a DAG file of its own."""
    path = tmp_path / "docs_readme_quick_start.py"
    path.write_text(block("README.md", "import pendulum"))

    result = dag_runner(path, "cloudflare_month_to_date", logical_date=utc(2025, 11, 20))
    assert result.state == "success", result.task_states

    # The current billing period of the connection's account (anchor the 14th, clock 2025-11-20).
    key = f"cloudflare/account={STANDARD_ACCOUNT}/billing_period=2025-11-14/usage.parquet"
    assert bucket_keys(aws_default, "finops-raw") == [key]
    _, exact = served(sim, STANDARD_ACCOUNT)
    assert exact
    assert_parquet_matches(read_parquet(aws_default, "finops-raw", key), exact)
    assert result.xcom("land_usage")["uri"] == f"s3://finops-raw/{key}"


def test_hook_calls_return_what_the_page_says(sim: Any, use_conn: Any) -> None:
    """docs/hook.md's calls, executed as written against ``cloudflare_default`` (the simulator)."""
    code = block("docs/hook.md", "from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook")
    # The block rebinds ``records`` line after line: run it one statement at a time and keep each value.
    namespace: dict[str, Any] = {}
    records = []
    for statement in ast.parse(code).body:
        exec(compile(ast.Module([statement], type_ignores=[]), "docs/hook.md", "exec"), namespace)
        if isinstance(statement, ast.Assign) and ast.unparse(statement.targets[0]) == "records":
            records.append(namespace["records"])

    _, current = served(sim, STANDARD_ACCOUNT)  # the connection's account, current period
    _, window = served(sim, STANDARD_ACCOUNT, **{"from": "2025-10-14", "to": "2025-11-13"})
    _, other = served(sim, FOCUS_ACCOUNT)  # the account named in the call
    assert current and window and other
    assert records == [current, window, other]
    assert namespace["info"]["covered"] is True
    assert "billing_cycle_anchor_timestamp" in namespace["info"]["subscriptions"][0]
    period = namespace["period"]  # the connection's account, anchored on the 14th
    assert (period.start, period.end) == (utc(2025, 10, 14), utc(2025, 11, 14))
    assert namespace["ok"] is True, namespace["message"]
    # The streamed window ends with the same record as the window asked with get_paygo_usage.
    assert namespace["record"] == window[-1]


def test_sensor_then_operator_books_the_closed_period(
    sim: Any, cloudflare_conn: str, dag_runner: Any, tmp_path: Path
) -> None:
    """docs/sensor.md's fragment in a DAG: the run of 2025-11-10 waits for the period of the 9th, then books it."""
    path = fragment_dag(tmp_path, "docs_sensor", block("docs/sensor.md", "from datetime import timedelta"))

    result = dag_runner(path, "docs_sensor", logical_date=utc(2025, 11, 10))
    assert result.state == "success", result.task_states
    period = result.xcom("wait")
    assert (period["start"], period["end"]) == ("2025-10-14T00:00:00Z", "2025-11-14T00:00:00Z")
    served_json, _ = served(sim, STANDARD_ACCOUNT, **{"from": "2025-10-14", "to": "2025-11-14"})
    expected = in_window(served_json, "2025-10-14", "2025-11-14")
    assert expected
    assert result.xcom("book") == expected


def test_focus_operator_lands_focus_columns(
    sim: Any, cloudflare_conn: str, aws_default: Any, dag_runner: Any, tmp_path: Path
) -> None:
    """docs/focus.md's operator in a DAG, with the operator's import the page's text names."""
    path = fragment_dag(
        tmp_path,
        "docs_focus",
        block("docs/focus.md", "CloudflarePaygoUsageOperator("),
        imports="from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator",
    )

    result = dag_runner(path, "docs_focus", logical_date=utc(2025, 10, 20))
    assert result.state == "success", result.task_states
    key = "cloudflare/billing_period=2025-10-14/usage.parquet"
    assert bucket_keys(aws_default, "finops") == [key]
    table = read_parquet(aws_default, "finops", key)
    _, exact = served(sim, STANDARD_ACCOUNT, **{"from": "2025-10-14", "to": "2025-11-14"})
    rows = in_window(exact, "2025-10-14", "2025-11-14")
    assert rows
    assert table.num_rows == len(rows)
    assert {"BilledCost", "BillingPeriodStart", "BillingPeriodEnd", "ChargeFrequency"} <= set(table.column_names)
    assert sum(table.column("BilledCost").to_pylist()) == sum(row["ContractedCost"] for row in rows)


def test_simulator_block_starts_and_stops_a_simulator() -> None:
    """docs/simulator.md's block starts a simulator of its own; its body (``...``) is the reader's code, so the
    test checks what the block promises it: a server at ``sim.url`` while the block runs, none after."""
    import requests

    code = block("docs/simulator.md", "import datetime as dt")
    seen: dict[str, Any] = {}

    def probe(namespace: dict[str, Any]) -> None:
        sim = namespace["sim"]
        answer = requests.get(
            f"{sim.url}/accounts/{namespace['STANDARD_ACCOUNT']}/billable-usage",
            headers={"Authorization": f"Bearer {namespace['SIM_TOKEN']}"},
            timeout=30,
        )
        seen["status"], seen["url"] = answer.status_code, sim.url

    # The reader's code goes where the block's ``...`` is.
    assert code.count("    ...") == 1
    namespace: dict[str, Any] = {"_probe": probe}
    exec(compile(code.replace("    ...", "    _probe(globals())"), "docs/simulator.md", "exec"), namespace)
    assert seen["status"] == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(seen["url"], timeout=30)


def test_operator_import_line() -> None:
    """docs/operator.md opens with the import a DAG needs; it must name the operator."""
    from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator

    namespace: dict[str, Any] = {}
    line = "from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator"
    code = block("docs/operator.md", line)
    assert code == line + "\n"
    exec(compile(code, "docs/operator.md", "exec"), namespace)
    assert namespace["CloudflarePaygoUsageOperator"] is CloudflarePaygoUsageOperator
