"""Concurrency and crashes: two runs writing one destination at once, and a task process killed mid-write.

* Two runs (threads, then separate processes as two workers would be, then on S3) write different data to the
  same destination at the same moment: afterwards it holds one complete, valid object, byte for byte one of
  the two runs' outputs, and nothing else. Both runs are held at the commit until both have staged their
  file, so the race is certain, not left to timing.
* A task process running the operator (real fetch, real format writer) is killed with SIGKILL while the
  writer is half-way through the file, in every format and on S3: the destination keeps its previous object,
  byte for byte; no partial object appears; the retry then lands the complete object. (On a local disk the
  killed run's hidden ``.<name>.tmp-<uuid>`` sibling stays behind, since nothing runs after a SIGKILL; dataset
  readers skip hidden files, and it is safe to delete. On object stores nothing is uploaded before the file
  is complete.)

``tests/test_operator.py`` kills ``storage.land`` alone with a slow writer; here the whole operator runs.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import BUCKET, REPO_ROOT, airflow_env, body, keys
from conftest import run_operator as run

from airflow_provider_cfbilling.exceptions import CloudflareBillingError
from airflow_provider_cfbilling.testing.simulator import FOCUS_ACCOUNT, STANDARD_ACCOUNT
from airflow_provider_cfbilling.utils import storage
from airflow_provider_cfbilling.utils.formats import FILE_FORMATS, write_records


def expected_bytes(account: str, file_format: str) -> bytes:
    """What a clean run of ``account`` (current period) writes in ``file_format``."""
    buffer = io.BytesIO()
    write_records(run(account_id=account), buffer, file_format)
    return buffer.getvalue()


def assert_valid(data: bytes, file_format: str, rows: int) -> None:
    if file_format == "parquet":
        assert pq.read_table(io.BytesIO(data)).num_rows == rows
    elif file_format == "jsonl":
        assert len(data.splitlines()) == rows
    elif file_format == "csv":
        assert len(data.splitlines()) == rows + 1
    else:
        import json

        assert len(json.loads(data)) == rows


@pytest.fixture
def use_conn(use_conn: Any) -> None:
    """Conftest's connection, failing fast (no retries)."""
    use_conn(max_retry_wait=0)


# -- two writers, one destination ------------------------------------------------------------------------


@pytest.mark.parametrize("file_format", FILE_FORMATS)
def test_two_threads_writing_one_destination_leave_one_complete_object(
    sim: Any, use_conn: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, file_format: str
) -> None:
    outputs = {account: expected_bytes(account, file_format) for account in (STANDARD_ACCOUNT, FOCUS_ACCOUNT)}
    assert outputs[STANDARD_ACCOUNT] != outputs[FOCUS_ACCOUNT]
    destination = tmp_path / f"usage.{file_format}"
    destination.write_bytes(b"the previous object")
    both_staged = threading.Barrier(2, timeout=30)
    real_stage = storage._stage

    def write_then_wait(write: Any, local_path: str, fmt: str) -> tuple[int, str]:
        staged = real_stage(write, local_path, fmt)
        both_staged.wait()  # neither commits before both have written their whole file aside
        return staged

    monkeypatch.setattr(storage, "_stage", write_then_wait)
    manifests: dict[str, Any] = {}
    errors: list[BaseException] = []

    def land(account: str) -> None:
        try:
            manifests[account] = run(account_id=account, destination=destination.as_uri())
        except BaseException as exc:  # pragma: no cover (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=land, args=(account,)) for account in outputs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    landed = destination.read_bytes()
    assert landed in outputs.values()
    winner = next(account for account, data in outputs.items() if data == landed)
    assert_valid(landed, file_format, manifests[winner]["rows"])
    assert sorted(os.listdir(tmp_path)) == [destination.name]  # no temporary file left by either run


def test_two_worker_processes_writing_one_destination_leave_one_complete_object(
    sim: Any, use_conn: None, tmp_path: Path
) -> None:
    """Separate processes, as two Airflow workers: a file barrier holds both at the commit."""
    outputs = {account: expected_bytes(account, "parquet") for account in (STANDARD_ACCOUNT, FOCUS_ACCOUNT)}
    destination = tmp_path / "out" / "usage.parquet"
    gate = tmp_path / "gate"
    gate.mkdir()
    script = textwrap.dedent(
        """
        import os, sys, time
        from pathlib import Path
        from airflow_provider_cfbilling.operators import billing
        from airflow_provider_cfbilling.utils import storage

        account, destination, gate = sys.argv[1], sys.argv[2], Path(sys.argv[3])
        real = storage._stage

        def write_then_wait(write, local_path, file_format):
            staged = real(write, local_path, file_format)
            (gate / account).touch()
            deadline = time.monotonic() + 60
            while len(list(gate.iterdir())) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            return staged

        storage._stage = write_then_wait
        operator = billing.CloudflarePaygoUsageOperator(task_id="usage", account_id=account, destination=destination)
        print(operator.execute({})["sha256"])
        """
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, account, destination.as_uri(), str(gate)],
            env=airflow_env(),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for account in outputs
    ]
    results = [worker.communicate(timeout=120) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [err[-2000:] for _, err in results]
    assert sorted(p.name for p in gate.iterdir()) == sorted(outputs)  # both really staged before committing
    landed = destination.read_bytes()
    assert landed in outputs.values()
    assert pq.read_table(io.BytesIO(landed)).num_rows in (len(run(account_id=a)) for a in outputs)
    assert sorted(os.listdir(destination.parent)) == ["usage.parquet"]


def test_two_runs_writing_one_s3_key_leave_one_complete_object(
    sim: Any,
    use_conn: None,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, conn_id = s3
    outputs = {account: expected_bytes(account, "jsonl") for account in (STANDARD_ACCOUNT, FOCUS_ACCOUNT)}
    both_staged = threading.Barrier(2, timeout=30)
    real_stage = storage._stage

    def write_then_wait(write: Any, local_path: str, fmt: str) -> tuple[int, str]:
        staged = real_stage(write, local_path, fmt)
        both_staged.wait()
        return staged

    monkeypatch.setattr(storage, "_stage", write_then_wait)
    succeeded: list[str] = []
    raced: list[str] = []
    race_messages: list[str] = []

    def land(account: str) -> None:
        try:
            run(account_id=account, destination=f"s3://{BUCKET}/usage.jsonl", destination_conn_id=conn_id)
            succeeded.append(account)
        except CloudflareBillingError as exc:  # checked below: an assert in a thread only warns
            raced.append(account)
            race_messages.append(str(exc))

    threads = [threading.Thread(target=land, args=(account,)) for account in outputs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(succeeded + raced) == sorted(outputs)
    assert all("another writer raced this one" in message for message in race_messages), race_messages
    assert keys(client) == ["usage.jsonl"]
    # The last upload wins, whole; a run whose upload was replaced before its check fails and says so.
    assert body(client, "usage.jsonl") in [outputs[account] for account in succeeded]


# -- SIGKILL mid-write ----------------------------------------------------------------------------------------

KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from airflow_provider_cfbilling.operators import billing
    from airflow_provider_cfbilling.utils import storage

    destination, conn_id = sys.argv[1], sys.argv[2] or None
    real = storage._stage

    class Stalling:
        '''The staged file as the real writer sees it; after its first write the process stalls, to be killed.'''

        def __init__(self, raw):
            self.raw, self.writes = raw, 0

        def write(self, data):
            written = self.raw.write(data)
            self.raw.flush()
            self.writes += 1
            if self.writes == 1:
                print("writing", flush=True)
                time.sleep(120)
            return written

        def __getattr__(self, name):
            return getattr(self.raw, name)

    storage._stage = lambda write, path, fmt: real(lambda fileobj: write(Stalling(fileobj)), path, fmt)
    billing.CloudflarePaygoUsageOperator(
        task_id="usage", destination=destination, destination_conn_id=conn_id
    ).execute({})
    """
)


def start_killable_run(destination: str, conn_id: str | None = None, tmp: Path | None = None) -> subprocess.Popen[str]:
    """The operator in a process of its own; ``tmp`` is the worker's temporary directory (TMPDIR)."""
    return subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, destination, conn_id or ""],
        env={**airflow_env(), **({"TMPDIR": str(tmp)} if tmp else {})},
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when_writing(process: subprocess.Popen[str]) -> None:
    try:
        assert process.stdout is not None
        for line in process.stdout:  # the task's own log lines come first
            if line.strip() == "writing":
                break
        else:
            raise AssertionError(f"the run ended without writing:\n{process.stderr.read() if process.stderr else ''}")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL


def test_a_task_process_killed_mid_write_leaves_the_previous_object_in_every_format(
    sim: Any, use_conn: None, tmp_path: Path
) -> None:
    previous = {f: f"the previous {f} object".encode() for f in FILE_FORMATS}
    destinations = {f: tmp_path / f / f"usage.{f}" for f in FILE_FORMATS}
    for file_format, path in destinations.items():
        path.parent.mkdir()
        path.write_bytes(previous[file_format])
    # One process per format, side by side (each about three seconds to start), all killed mid-write.
    processes = {f: start_killable_run(path.as_uri()) for f, path in destinations.items()}
    for process in processes.values():
        kill_when_writing(process)

    for file_format, path in destinations.items():
        assert path.read_bytes() == previous[file_format]  # untouched
        (staged,) = [p for p in path.parent.iterdir() if p != path]  # the killed run's hidden temporary file
        assert staged.name.startswith(f".usage.{file_format}.tmp-")
        assert staged.stat().st_size > 0  # it really was killed half-way through a write

        manifest = run(destination=path.as_uri())  # the retry
        assert path.read_bytes() == expected_bytes(STANDARD_ACCOUNT, file_format)
        assert_valid(path.read_bytes(), file_format, manifest["rows"])


def test_a_task_process_killed_mid_write_never_reaches_s3(
    sim: Any,
    use_conn: None,
    s3: Any,
    tmp_path: Path,
) -> None:
    client, conn_id = s3
    client.put_object(Bucket=BUCKET, Key="usage.parquet", Body=b"the previous object")
    kill_when_writing(start_killable_run(f"s3://{BUCKET}/usage.parquet", conn_id, tmp=tmp_path))
    assert keys(client) == ["usage.parquet"]
    assert body(client, "usage.parquet") == b"the previous object"
    # The partial file stayed on the worker's local disk, in its temporary directory.
    (staged,) = tmp_path.glob("cfbilling-*/staged")
    assert staged.read_bytes().startswith(b"PAR1")
    run(destination=f"s3://{BUCKET}/usage.parquet", destination_conn_id=conn_id)  # the retry
    assert body(client, "usage.parquet") == expected_bytes(STANDARD_ACCOUNT, "parquet")
