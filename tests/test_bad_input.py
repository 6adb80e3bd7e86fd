"""Bad input: each mistake a DAG author can make is refused before any request, with a message that says what
to fix.

Every case builds the operator (or the sensor) as a DAG author would, runs it against the simulator, and
checks three things: the exception type, the words of the message (what was wrong and what to pass instead),
and that the simulator saw no request at all. Templates are rendered by Airflow's own machinery, in process
(``render_template_fields``) and once through a real ``dag.test()`` run.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.exceptions import AirflowException
from conftest import run_operator

from airflow_provider_cfbilling.exceptions import CloudflareBillingInputError
from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook
from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor
from airflow_provider_cfbilling.testing.simulator import SIM_TOKEN, STANDARD_ACCOUNT

DAGS = Path(__file__).parent / "dags"
FILE = "file://{tmp}/usage.jsonl"  # {tmp}: the test's own directory, filled in by run()
NAIVE = r"naive datetime \(no time zone\)\. It is refused, not read as UTC or as the worker's local time"


# A message about the connection opens with its name, capitalised.
CONN = r"^Connection 'cloudflare_default' "


def run(context: dict[str, Any] | None = None, tmp: Path | None = None, **kwargs: Any) -> Any:
    """Build the operator, render its templates against ``context`` (as the task runner does), execute it.

    ``{tmp}`` in a string argument becomes ``tmp``: should a check ever let a bad destination through, the
    file lands in the test's own directory.
    """
    if tmp is not None:
        kwargs = {k: v.replace("{tmp}", str(tmp)) if isinstance(v, str) else v for k, v in kwargs.items()}
    return run_operator(render_with=context, **kwargs)


# -- the operator's arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # the account id: 32 hex characters
        ({"account_id": "023e105f"}, r"Invalid Cloudflare account id '023e105f' .* 32 hexadecimal characters"),
        ({"account_id": "zz3e105f4ecef8ad9ca31a8372d0c353"}, r"must be 32 hexadecimal characters, e\.g\."),
        ({"account_id": "023e105f-4ece-f8ad-9ca3-1a8372d0c353"}, r"32 hexadecimal characters"),
        ({"account_id": 12345}, r"Invalid Cloudflare account id 12345"),
        # the window: both bounds or neither, from_ before to, real dates
        ({"from_": "2025-11-01", "to": "2025-10-01"}, r"\[from_=2025-11-01, to=2025-10-01\) is empty: to is exclusive"),
        ({"from_": "2025-10-01", "to": "2025-10-01"}, r"is empty: .*for one day D, pass from_=D and to=D \+ 1 day"),
        ({"from_": "2025-10-01"}, r"Only from_ was given: a window needs both .* Pass to too"),
        ({"to": "2025-10-01"}, r"Only to was given: .* Pass from_ too"),
        ({"from_": "2025-13-01", "to": "2025-12-01"}, r"from_='2025-13-01' is not an ISO 8601 date: pass 'YYYY-MM-DD'"),
        ({"from_": "2025-02-30", "to": "2025-03-05"}, r"from_='2025-02-30' is not an ISO 8601 date"),
        ({"from_": "2025-10-01", "to": "01/11/2025"}, r"to='01/11/2025' is not an ISO 8601 date"),
        ({"from_": "last monday", "to": "2025-11-01"}, r"'last monday' is not an ISO 8601 date"),
        ({"from_": 20251001, "to": "2025-11-01"}, r"from_ must be a date, an aware datetime or an ISO 8601 string"),
        ({"billing_period_of": "October"}, r"billing_period_of='October' is not an ISO 8601 date"),
        ({"billing_period_of": "2025-10-01", "from_": "2025-10-01", "to": "2025-11-01"}, r"not both"),
        # naive datetimes: refused, never guessed
        (
            {"from_": dt.datetime(2025, 10, 1), "to": dt.datetime(2025, 11, 1)},
            "from_='2025-10-01T00:00:00' is a " + NAIVE,
        ),
        ({"from_": "2025-10-01T00:00:00", "to": "2025-11-01"}, NAIVE + r".*offset in the string"),
        ({"billing_period_of": dt.datetime(2025, 10, 1, 12)}, "billing_period_of=.* is a " + NAIVE),
        # the output
        ({"destination": FILE, "file_format": "xlsx"}, r"file_format='xlsx' is not supported: use one of jsonl, json"),
        ({"destination": FILE, "file_format": "parquet"}, r"contradicts the destination's suffix"),
        ({"file_format": "csv"}, r"only applies to a destination; .* Set destination=\.\.\. or drop file_format"),
        ({"destination": "gs://finops/usage.parquet"}, r"scheme 'gs'.*install apache-airflow-providers-google"),
        (
            {"destination": "abfs://c@a.dfs.core.windows.net/u.csv"},
            r"scheme 'abfs'.*apache-airflow-providers-microsoft",
        ),
        (
            {"destination": "hdfsx://cluster/usage.jsonl"},
            r"cannot be opened: .*Use a scheme whose filesystem is install",
        ),
        ({"destination": "cloudflare/usage.jsonl"}, r"is a relative local path: .*Use an absolute URI"),
        ({"destination": "file://{tmp}/cloudflare/"}, r"ends with '/': it names a folder, not the object to write"),
        ({"destination": 42}, r"destination=42 is not a location"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(
    sim: Any, use_conn: Any, tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(CloudflareBillingInputError) as failure:
        run(tmp=tmp_path, **kwargs)
    assert re.search(message, str(failure.value)), str(failure.value)
    assert sim.requests == []


def test_a_destination_that_is_a_directory_is_refused_before_any_request(
    sim: Any, use_conn: Any, tmp_path: Path
) -> None:
    (tmp_path / "keep.txt").write_text("someone else's file")
    with pytest.raises(CloudflareBillingInputError, match=r"is a directory: the destination must name the file"):
        run(destination=tmp_path.as_uri())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert sim.requests == []
    # A directory that only exists once the placeholders are filled in is caught at write time, still whole.
    (tmp_path / f"account={STANDARD_ACCOUNT}").mkdir()
    with pytest.raises(CloudflareBillingInputError, match=r"is a directory"):
        run(destination=f"{tmp_path.as_uri()}/account={{account_id}}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"account={STANDARD_ACCOUNT}", "keep.txt"]
    assert list((tmp_path / f"account={STANDARD_ACCOUNT}").iterdir()) == []
    # A plain absolute path: the suggestion keeps it absolute.
    with pytest.raises(CloudflareBillingInputError) as failure:
        run(destination=str(tmp_path))
    assert str(failure.value) == (
        f"destination={str(tmp_path)!r} is a directory: the destination must name the file to write, e.g. "
        f"'{tmp_path}/usage.jsonl'."
    )


# -- templates that render to nothing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "params", "message"),
    [
        ({"account_id": "{{ params.account }}"}, {"account": ""}, r"No Cloudflare account id: .* is empty"),
        (
            {"from_": "{{ params.start }}", "to": "{{ params.end }}"},
            {"start": "", "end": ""},
            r"from_ is an empty string",
        ),
        ({"from_": "{{ params.start }}", "to": "2025-11-01"}, {"start": None}, r"from_='None' is not an ISO 8601 date"),
        (
            {"billing_period_of": "{{ params.day }}"},
            {"day": ""},
            r"billing_period_of is an empty string \(did a template",
        ),
        ({"destination": "{{ params.uri }}"}, {"uri": ""}, r"destination='' is not a location \(did a template render"),
        ({"destination": "file://{tmp}/{{ params.name }}"}, {"name": ""}, r"ends with '/'.*did part of a template"),
        ({"destination": FILE, "file_format": "{{ params.fmt }}"}, {"fmt": ""}, r"file_format='' is blank \(did a"),
        ({"subscription_id": "{{ params.sub }}"}, {"sub": ""}, r"subscription_id='' is blank .* leave it unset"),
        (
            {"destination": FILE, "destination_conn_id": "{{ params.conn }}"},
            {"conn": " "},
            r"destination_conn_id=' ' is",
        ),
    ],
)
def test_a_template_that_renders_to_nothing_is_refused(
    sim: Any, use_conn: Any, tmp_path: Path, kwargs: dict[str, Any], params: dict[str, Any], message: str
) -> None:
    with pytest.raises(CloudflareBillingInputError) as failure:
        run(context={"params": params}, tmp=tmp_path, **kwargs)
    assert re.search(message, str(failure.value)), str(failure.value)
    assert sim.requests == []


def test_templates_that_render_to_nothing_fail_a_real_dag_run_before_any_request(
    sim: Any,
    use_conn: Any,
    dag_runner: Any,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CFBILLING_TEST_OUT", tmp_path.as_uri())
    result = dag_runner(DAGS / "faults_bad_input.py", "faults_bad_input")
    assert result.task_states == dict.fromkeys(
        ("empty_window", "empty_destination", "folder_destination", "empty_account", "empty_target"), "failed"
    )
    assert sim.requests == []
    assert list(tmp_path.iterdir()) == []
    logged = capsys.readouterr().out
    for expected in (
        "from_ is an empty string (did a template render to nothing?)",
        "destination='' is not a location (did a template render to nothing?)",
        "ends with '/': it names a folder",
        "No Cloudflare account id: the operator's account_id is empty",
        "target is an empty string (did a template render to nothing?)",
    ):
        assert expected in logged


# -- the connection ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        ({"password": ""}, CONN + r"has no credentials: put a Cloudflare API token"),
        ({"password": "   "}, r"has no credentials"),
        ({"extra": {"account_id": "not-an-account"}}, r"from connection 'cloudflare_default' extra 'account_id'"),
        ({"extra": {}}, r"No Cloudflare account id: .* Pass account_id=\.\.\. or set the 'account_id' extra"),
        (
            {"host": "api.cloudflare.com"},
            CONN + r"host 'api.cloudflare.com' is not an API base URL: use a full URL",
        ),
        ({"host": "ftp://api.cloudflare.com/client/v4"}, r"is not an API base URL"),
        (
            {"host": "http://billing-proxy.internal/client/v4"},
            CONN + r"host .* uses plain http: the API token would travel unencrypted",
        ),
        (
            {"extra": {"account_id": STANDARD_ACCOUNT, "timeout": "soon"}},
            CONN + r"extra 'timeout' \(the form's 'Request timeout \(seconds\)' field\) is 'soon': it must be a",
        ),
        ({"extra": {"account_id": STANDARD_ACCOUNT, "timeout": 0}}, r"extra 'timeout' .* is 0: it must be a positive"),
        ({"extra": {"account_id": STANDARD_ACCOUNT, "max_retry_wait": -1}}, r"extra 'max_retry_wait' .* is -1"),
        (
            {"extra": {"account_id": STANDARD_ACCOUNT, "usage_path": "/billing"}},
            CONN + r"extra 'usage_path' is '/billing': it must be a path .*'\{account_id\}'",
        ),
        (
            {"extra": {"account_id": STANDARD_ACCOUNT, "allow_insecure_http": "maybe"}},
            CONN + r"extra 'allow_insecure_http' .* use true or false",
        ),
        (
            {"extra": {"account_id": STANDARD_ACCOUNT, "concurrent_tasks": 0}},
            CONN
            + r"extra 'concurrent_tasks' \(the form's 'Concurrent tasks' field\) is 0: it must be a whole number of "
            r"tasks, 1 or more: the slots of the Airflow pool",
        ),
        ({"extra": {"account_id": STANDARD_ACCOUNT, "concurrent_tasks": 2.5}}, r"'concurrent_tasks' .* is 2\.5"),
        ({"extra": {"account_id": STANDARD_ACCOUNT, "concurrent_tasks": True}}, r"'concurrent_tasks' .* is True"),
        (
            {"extra": {"account_id": STANDARD_ACCOUNT, "verify": "/no/such/ca-bundle.pem"}},
            CONN + r"extra 'verify' .* is '/no/such/ca-bundle.pem': use true \(the default\)",
        ),
    ],
)
def test_a_bad_connection_is_refused_before_any_request(
    sim: Any, monkeypatch: pytest.MonkeyPatch, connection: dict[str, Any], message: str
) -> None:
    base = {
        "conn_type": "cloudflare",
        "host": sim.url,
        "password": SIM_TOKEN,
        "extra": {"account_id": STANDARD_ACCOUNT},
    }
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_DEFAULT", json.dumps({**base, **connection}))
    with pytest.raises(CloudflareBillingInputError) as failure:
        run()
    assert re.search(message, str(failure.value)), str(failure.value)
    assert sim.requests == []


def test_a_bad_hook_argument_is_named_at_the_start_of_the_message(sim: Any, cloudflare_conn: Any) -> None:
    hook = CloudflareBillingHook(timeout=-1)
    with pytest.raises(CloudflareBillingInputError, match=r"^The hook's timeout argument is -1: it must be a positive"):
        hook.get_paygo_usage()
    assert sim.requests == []


def test_a_missing_connection_is_named(sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_CLOUDFLARE_DEFAULT", raising=False)
    with pytest.raises(AirflowException) as failure:
        run(cloudflare_conn_id="cloudflare_finops")
    assert re.search(r"cloudflare_finops' is not defined: create a connection of type 'cloudflare'", str(failure.value))
    assert sim.requests == []


# -- the sensor ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": ""}, r"target is an empty string \(did a template render to nothing\?\)"),
        ({"target": "2025-11-20T10:00:00"}, r"target='2025-11-20T10:00:00' is a " + NAIVE),
        ({"target": dt.datetime(2025, 11, 20)}, NAIVE),
        ({"target": "20 November"}, r"target='20 November' is not an ISO 8601 date"),
        ({"account_id": "ABC"}, r"Invalid Cloudflare account id 'ABC' .* 32 hexadecimal characters"),
        ({"subscription_id": ""}, r"subscription_id='' of task 'wait' is blank"),
    ],
)
def test_the_sensor_refuses_bad_input_before_any_request(
    sim: Any, use_conn: Any, kwargs: dict[str, Any], message: str
) -> None:
    sensor = CloudflareBillingPeriodSensor(task_id="wait", **{"target": "2025-11-20", **kwargs})
    with pytest.raises(CloudflareBillingInputError) as failure:
        sensor.execute({})  # type: ignore[arg-type]
    assert re.search(message, str(failure.value)), str(failure.value)
    assert sim.requests == []


def test_aware_values_and_plain_dates_are_read_as_their_utc_days(sim: Any, use_conn: Any) -> None:
    """The other side of refusing naive values: what is accepted, and how it is read."""
    by_dates = run(from_="2025-10-14", to="2025-11-14")
    new_york = pendulum.datetime(2025, 10, 13, 20, tz="America/New_York")  # already the 14th in UTC
    assert run(from_=new_york, to="2025-11-14T00:00:00Z") == by_dates
    assert run(from_=dt.date(2025, 10, 14), to="2025-11-14T03:00:00+02:00") == by_dates
    assert {r["query"]["from"] for r in sim.requests} == {"2025-10-14"}
