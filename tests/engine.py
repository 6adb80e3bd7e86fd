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

:class:`CeleryEngine` is the same abstraction as a distributed deployment on loopback: CeleryExecutor, a
private PostgreSQL 15 cluster as the metadata database (:class:`Postgres`, ``initdb``/``pg_ctl`` in a temp
dir on a free port), a private Redis server as the broker (:class:`Redis`, Debian's ``redis-server``,
installed by ``scripts/test.sh``), and Celery workers besides the four components. Each worker reports a
hostname of its own (``[core] hostname_callable``), as workers on different machines do, so
``task_instance.hostname`` tells which worker ran a task. The services start in the constructor (``airflow
db migrate`` needs them) and stop in :meth:`Engine.stop`; use it exactly as :class:`Engine`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
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
        self.components: tuple[str, ...] = COMPONENTS
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

    def commands(self) -> dict[str, list[str]]:
        """The ``airflow`` command line of each component."""
        return {
            "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            "scheduler": ["scheduler", "--skip-serve-logs"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer", "--skip-serve-logs"],
        }

    def component_env(self, name: str) -> dict[str, str]:
        return self.env

    def start(self, components: tuple[str, ...] | None = None) -> None:
        """Start the given components (all of them by default; a UI test needs only the api-server).

        The api-server goes first, and the others start once it answers: a task queued earlier would fail
        when its first call to the Execution API timed out (seen with Celery workers that start quickly).
        """
        names = components or self.components
        if "api-server" in names:
            self._spawn("api-server")
            wait_until(self, "the api-server to answer", self._api_server_answers)
        for name in names:
            if name != "api-server":
                self._spawn(name)

    def _api_server_answers(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/api/v2/monitor/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bool(response.status == 200)
        except OSError:  # refused while it starts, or not ready to answer yet
            return False

    def _spawn(self, name: str) -> None:
        log = open(self.home / f"{name}.out", "wb")  # noqa: SIM115 (closed with the process)
        self.processes[name] = subprocess.Popen(
            [*AIRFLOW, *self.commands()[name]],
            env=self.component_env(name),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops its children
        )
        log.close()

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


def _as_unprivileged() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as ``nobody``."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _wait_for_port(port: int, what: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.settimeout(1)
            sock.connect(("127.0.0.1", port))
            return
        assert process is None or process.poll() is None, f"{what} exited with {process.returncode}"
        assert time.monotonic() < deadline, f"timed out waiting for {what} on port {port}"
        time.sleep(0.1)


class Postgres:
    """A private PostgreSQL 15 cluster in a temp dir on a free loopback port, with a database ``airflow``.

    Durability is switched off (``fsync``, ``synchronous_commit``, ``full_page_writes``): the cluster lives
    as long as one test, and the tasks' state changes are what the test waits on.
    """

    BIN = Path("/usr/local/bin")

    def __init__(self) -> None:
        # Not under pytest's tmp_path: as root, that tree is private to root and ``nobody`` could not enter it.
        self.dir = Path(tempfile.mkdtemp(prefix="cfbilling-postgres-"))
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"
        self.started = False

    def _run(self, *args: str) -> None:
        done = subprocess.run([*_as_unprivileged(), *args], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"

    def start(self) -> None:
        self._run(str(self.BIN / "initdb"), "-D", str(self.data), "-U", "airflow", "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")  # fmt: skip
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=300 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(str(self.BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "postgres.log"), "-o", options,
                  "-w", "-t", str(STARTUP_TIMEOUT), "start")  # fmt: skip
        self.started = True
        import psycopg2

        db = psycopg2.connect(host="127.0.0.1", port=self.port, user="airflow", dbname="postgres")
        try:
            db.autocommit = True
            db.cursor().execute("CREATE DATABASE airflow")
        finally:
            db.close()

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg2

        db = psycopg2.connect(host="127.0.0.1", port=self.port, user="airflow", dbname="airflow")
        try:
            with db.cursor() as cursor:
                cursor.execute(sql.replace("?", "%s"), params)
                return cursor.fetchall()
        finally:
            db.close()

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(AssertionError):
                self._run(str(self.BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A private Redis server (Debian's ``redis-server``) on a free loopback port, without persistence."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        assert Path(server).exists(), "redis-server is missing: run the tests through scripts/test.sh (installs it)"
        log = open(self.dir / "redis.out", "wb")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        _wait_for_port(self.port, "redis-server", self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


#: Imported by each Celery worker's task processes as ``[core] hostname_callable``.
HOSTNAME_MODULE = '''"""The hostname this engine's Celery worker reports for its tasks, one per worker."""
import os


def hostname() -> str:
    return os.environ["CFBILLING_E2E_HOSTNAME"]
'''


class CeleryEngine(Engine):
    """A distributed Airflow on loopback: CeleryExecutor, Redis broker, PostgreSQL metadata database.

    Besides api-server, scheduler, dag-processor and triggerer it runs ``workers`` Celery workers
    (``worker-1``, ...), each with ``concurrency`` task slots, its own Celery node name (``w1@<host>``) and the
    hostname ``worker-1.cfbilling-e2e`` (...) in ``task_instance.hostname``.
    """

    def __init__(self, home: Path, extra_env: dict[str, str], *, workers: int = 2, concurrency: int = 2) -> None:
        self.postgres = Postgres()
        self.redis = Redis(home)
        (home / "cfbilling_e2e_hostname.py").write_text(HOSTNAME_MODULE)
        try:
            self.postgres.start()
            self.redis.start()
        except BaseException:
            self.redis.stop()
            self.postgres.stop()
            raise
        self.workers = tuple(f"worker-{n}" for n in range(1, workers + 1))
        self.concurrency = concurrency
        super().__init__(
            home,
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(workers * concurrency),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url,
                "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.postgres.url}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
                **extra_env,
            },
        )
        self.components = (*COMPONENTS, *self.workers)

    def commands(self) -> dict[str, list[str]]:
        commands = super().commands()
        for n, name in enumerate(self.workers, start=1):
            commands[name] = [
                "celery", "worker", "--celery-hostname", f"w{n}@%h", "--concurrency", str(self.concurrency),
                "--pid", str(self.home / f"{name}.pid"), "--skip-serve-logs",
            ]  # fmt: skip
        return commands

    def component_env(self, name: str) -> dict[str, str]:
        if name not in self.workers:
            return self.env
        path = os.pathsep.join(filter(None, [str(self.home), self.env.get("PYTHONPATH")]))
        return {
            **self.env,
            "PYTHONPATH": path,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "cfbilling_e2e_hostname.hostname",
            "CFBILLING_E2E_HOSTNAME": f"{name}.cfbilling-e2e",
        }

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.postgres.query(sql, *params)

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.redis.stop()
            self.postgres.stop()
