"""What every benchmark shares: the Airflow environment, the simulator process, medians and ratios,
the machine/version/date header and the markdown writer.

A benchmark module exposes ``TITLE`` and ``run(*, smoke: bool) -> Section``. In smoke mode it runs at
tiny sizes and asserts that the answers are right (row counts, the same records from every client),
never that anything is fast.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WORK_DIR = REPO / "bench" / ".work"
#: The simulator's clock: every benchmark reads closed billing periods before it.
SIM_TODAY = dt.date(2025, 3, 20)


def prepare_airflow_env() -> None:
    """A throw-away Airflow home, quiet logs; call before anything imports airflow (subprocesses inherit it)."""
    home = WORK_DIR / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
        }
    )


# -- numbers ---------------------------------------------------------------------------------------


def run_child(module: str, url: str, run: str) -> dict[str, Any]:
    """Run ``python -m <module> --child <url> <run> <out_dir>`` in a fresh process (its own peak memory, no
    warm caches from the parent) with a temporary output directory; return the JSON its last line prints."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"cfbilling-{module.rsplit('.', 1)[-1]}-") as out_dir:
        done = subprocess.run(
            [sys.executable, "-m", module, "--child", url, run, out_dir],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{run} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else float("inf")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


def times(value: float) -> str:
    return f"{value:.2f}x"


def spread(values: Sequence[float], unit: Callable[[float], str]) -> str:
    """``median (min-max, n runs)``: the median is the figure, the range shows the noise."""
    return f"{unit(median(values))} ({unit(min(values))}-{unit(max(values))}, n={len(values)})"


# -- report ----------------------------------------------------------------------------------------


@dataclass
class Target:
    """One of the issue's targets, with the figure measured against it."""

    benchmark: str
    target: str
    measured: str
    met: bool | None  # None: not measured in this run (e.g. smoke mode)
    why: str = ""  # for a miss: by how much, and why


@dataclass
class Section:
    """A benchmark's part of RESULTS.md."""

    title: str
    intro: str = ""
    tables: list[tuple[Sequence[str], Sequence[Sequence[Any]]]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        parts = [f"## {self.title}"]
        if self.intro:
            parts.append(self.intro)
        parts += [markdown_table(headers, rows) for headers, rows in self.tables]
        if self.notes:
            parts.append("\n".join(f"- {note}" for note in self.notes))
        return "\n\n".join(parts)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


_VERSIONS = (
    "airflow-provider-cfbilling",
    "apache-airflow",
    "apache-airflow-task-sdk",
    "apache-airflow-providers-http",
    "requests",
    "urllib3",
    "tenacity",
    "cloudflare",
    "httpx",
    "pydantic",
)


def environment() -> list[tuple[str, str]]:
    """Machine, versions and date: what a reader needs to compare a rerun with these figures."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory = next((line.split()[1] for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal")), "")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    rows = [
        ("date", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores"),
        ("memory", f"{int(memory) // 1024} MiB" if memory else "n/a"),
        ("load average (1, 5, 15 min) at start", load),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("commit", _git_commit()),
    ]
    for name in _VERSIONS:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    return rows


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _git_commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" + uncommitted changes" if git("status", "--porcelain") else "")


# -- the simulator, in its own process -------------------------------------------------------------


class SimulatorProcess:
    """The simulator served by ``bench.simulator_process``; control API over HTTP."""

    def __init__(self, url: str, process: subprocess.Popen[str]) -> None:
        self.url = url
        self.process = process

    def _control(self, method: str, endpoint: str, payload: Any = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(f"{self.url}/__sim/{endpoint}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"null")

    def configure(self, **settings: Any) -> None:
        """``large_zones``, ``enforce_window_rules`` or ``rate_limit`` (which also resets the counters)."""
        self._control("POST", "config", settings)

    def reset(self) -> None:
        self._control("POST", "reset", {})

    def requests(self) -> list[dict[str, Any]]:
        return list(self._control("GET", "requests"))

    def generate_accounts(self, count: int) -> list[str]:
        """Add ``count`` generated accounts with usage; returns their ids."""
        return list(self._control("POST", "accounts", {"generate": count})["accounts"])

    def add_token(self, token: str, accounts: Sequence[str] | None = None) -> None:
        """A Billing Read token that sees only ``accounts`` (None: every account)."""
        self._control("POST", "tokens", {"token": token, "accounts": None if accounts is None else list(accounts)})


@contextmanager
def simulator(tokens: Iterable[str] = ()) -> Iterator[SimulatorProcess]:
    command = [sys.executable, "-m", "bench.simulator_process", "--today", SIM_TODAY.isoformat()]
    for token in tokens:
        command += ["--token", token]
    process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the simulator process did not start (printed {url!r})")
        yield SimulatorProcess(url, process)
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=10)


def use_connection(conn_id: str, url: str, token: str, **extra: Any) -> str:
    """Define an Airflow connection (type ``cloudflare``) in the environment; returns its id."""
    conn = {"conn_type": "cloudflare", "host": url, "password": token, "extra": extra}
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    return conn_id


# -- the hook as it was before the changes these benchmarks led to -----------------------------------


class _NeverWaits:
    """A rate-limit budget that sends every request at once."""

    def reserve(self, max_wait: float) -> _NeverWaits:
        return self

    def answered(self, headers: Any) -> None:
        return None

    def __enter__(self) -> _NeverWaits:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


def hook_class(*, before: bool = False) -> Any:
    """``CloudflareBillingHook``; with ``before=True``, the same hook as it was before the changes made to
    meet the targets, so that "before" and "after" are measured in the same run:

    * no proactive rate limiting: only 429s slow it down (benchmark 5);
    * ``tenacity.Retrying`` called with the hook's bound methods: a used ``Retrying`` is a reference cycle,
      so it kept the hook and its session's socket alive until the next full garbage collection
      (benchmark 2, one call per task).
    """
    import tenacity

    from airflow_provider_cfbilling.hooks import billing

    if not before:
        return billing.CloudflareBillingHook

    class HookBefore(billing.CloudflareBillingHook):
        @cached_property
        def _rate_limit(self) -> Any:
            return _NeverWaits()

        def _request(self, path: str, account_id: str, params: Any, spool_dir: str | None = None) -> Any:
            budget = self.settings.max_retry_wait
            retrying = tenacity.Retrying(
                retry=tenacity.retry_if_exception(lambda exc: billing._is_transient(exc, budget)),
                wait=billing._wait_for(budget),
                stop=tenacity.stop_before_delay(budget),
                before_sleep=self._log_retry,
                reraise=True,
            )
            return retrying(self._request_once, path, account_id, params, float("inf"), spool_dir)

        def _log_retry(self, state: tenacity.RetryCallState) -> None:
            billing._log_retry(self.log, state)

    return HookBefore
