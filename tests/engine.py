"""The real Airflow engine for end-to-end tests: api-server, scheduler, dag-processor and triggerer.

:class:`Engine` runs each component as its own process (LocalExecutor, sqlite, loopback, a free port) in an
AIRFLOW_HOME of its own, so the real task runner writes real task logs there. Use it as::

    engine = Engine(home, {"AIRFLOW_CONN_CLOUDFLARE_DEFAULT": ...})
    engine.airflow("db", "migrate")
    try:
        engine.start()
        wait_until(engine, "the DAG to be parsed", lambda: engine.query("SELECT 1 FROM dag WHERE dag_id = ?", dag_id))
        engine.airflow("dags", "trigger", dag_id)
        ...
    finally:
        engine.stop()

Only the variables given to it (and the test process's non-Airflow environment) reach the components: no
``AIRFLOW__*`` or ``AIRFLOW_CONN_*`` variable leaks in from the tests' own Airflow home.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

AIRFLOW = [sys.executable, "-m", "airflow"]
STARTUP_TIMEOUT = 90
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
FINISHED = ("success", "failed", "upstream_failed", "skipped")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Engine:
    """Airflow's components in their own AIRFLOW_HOME, started and stopped by the test."""

    def __init__(self, home: Path, extra_env: dict[str, str]) -> None:
        self.home = home
        self.db_path = home / "airflow.db"
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                **extra_env,
            }
        )
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def airflow(self, *args: str) -> str:
        done = subprocess.run([*AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self, components: tuple[str, ...] = COMPONENTS) -> None:
        """Start the given components (all four by default; a UI test needs only the api-server)."""
        commands = {
            "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }
        for name in components:
            args = commands[name]
            log = open(self.home / f"{name}.out", "wb")  # noqa: SIM115 (closed with the process)
            self.processes[name] = subprocess.Popen(
                [*AIRFLOW, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopping it stops its children
            )
            log.close()
            if name == "api-server" and len(components) > 1:
                # Tasks report to the api-server: a scheduler that starts first may run one before the server
                # answers (seen on a loaded machine: the task failed after its client gave up retrying).
                self.wait_for_api_server()

    def wait_for_api_server(self) -> None:
        """Block until the api-server's execution API answers its health check."""
        url = f"http://127.0.0.1:{self.port}/execution/health"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:  # refused while it starts; URLError and HTTPError are OSErrors
                pass
            assert time.monotonic() < deadline, f"the api-server did not answer {url}\n{self.output('api-server')}"
            time.sleep(0.2)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for process in self.processes.values():  # any worker left in a component's group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} exited with {process.returncode}:\n{self.output(name)}"

    def output(self, name: str, tail: int = 4000) -> str:
        path = self.home / f"{name}.out"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def diagnostics(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.output(name)}" for name in self.processes)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        for _ in range(50):
            try:
                with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5) as db:
                    return db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:  # locked, or the table is not there yet
                last = exc
                time.sleep(0.1)
        raise last

    def task_states(self, dag_id: str) -> dict[str, str]:
        return dict(self.query("SELECT task_id, state FROM task_instance WHERE dag_id = ?", dag_id))

    def run_dag(self, dag_id: str, tasks: int, timeout: float) -> dict[str, str]:
        """Wait for the DAG to be parsed, trigger it, and wait for its ``tasks`` tasks to finish."""
        wait_until(self, f"{dag_id} to be parsed", lambda: self.query("SELECT 1 FROM dag WHERE dag_id = ?", dag_id))
        self.airflow("dags", "trigger", dag_id)

        def finished() -> bool:
            states = self.task_states(dag_id)
            return len(states) == tasks and all(state in FINISHED for state in states.values())

        wait_until(self, f"{dag_id} to finish", finished, timeout=timeout)
        return self.task_states(dag_id)


def wait_until(engine: Engine, what: str, condition: Callable[[], Any], timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        engine.check_alive()
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{engine.diagnostics()}"
        time.sleep(0.5)
