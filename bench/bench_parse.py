"""1. DAG-parse cost: what importing this provider adds to a DAG file once ``airflow.sdk`` is loaded.

A DAG file imports the hook, the operator and the sensor; the trigger module is imported by the triggerer
only (the sensor loads it when it defers), so it is timed on its own, as a breakdown row.

Every sample is a fresh interpreter that imports ``airflow.sdk`` first (a DAG file always does), then
times the import under test with ``time.perf_counter``. Baselines, measured in the same run and
interleaved with ours: ``import requests`` alone (the least a DAG calling an HTTP API pays) and the HTTP
provider's ``HttpHook`` (what a user would otherwise pick).

The same is measured a second time inside Airflow's DAG processor (after importing
``airflow.dag_processing.processor``), the process that really parses DAG files: it has loaded more of
Airflow already (``airflow.triggers.base`` among it), so the figure there is what a DAG file pays.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from typing import Any

from bench.common import REPO, WORK_DIR, Section, Target, median, ms, spread, times

TITLE = "1. DAG-parse cost"
TARGET_MS = 15.0

#: What a DAG file imports: the hook, the operator and the sensor.
OURS = (
    "airflow_provider_cfbilling.hooks.billing",
    "airflow_provider_cfbilling.operators.billing",
    "airflow_provider_cfbilling.sensors.billing",
)
#: Imported only by the triggerer (the sensor loads it when it defers): a breakdown row, not a DAG file's cost.
TRIGGER = "airflow_provider_cfbilling.triggers.billing"
REQUESTS = "import requests"
HTTP_HOOK = "HttpHook (apache-airflow-providers-http)"
CFBILLING = "cfbilling: hook, operator, sensor"
VARIANTS = {
    REQUESTS: "import requests",
    HTTP_HOOK: "from airflow.providers.http.hooks.http import HttpHook",
    CFBILLING: "\n".join(f"import {module}" for module in OURS),
}
#: What each of our modules adds on top of ``airflow.sdk`` and ``requests`` (each alone, so shared
#: dependencies count in every row they appear in).
BREAKDOWN = {module.rsplit(".", 2)[-2]: f"import {module}" for module in (*OURS, TRIGGER)}
#: Packages our import must not be the first to load: they belong inside the methods that need them.
HEAVY = ("cloudflare", "httpx", "pydantic", "pyarrow", "pandas", "fsspec", "s3fs", "boto3")

# Byte-code cached, as in any deployment after the first parse (the warm-up writes the cache), in a
# private cache directory so that every package is on the same footing whatever the shell's settings.
_ENV = {
    **{name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"},
    "PYTHONPYCACHEPREFIX": str(WORK_DIR / "pycache"),
}
#: Where the import happens: what is loaded before it, not counted.
SDK_LOADED = "import airflow.sdk"
IN_DAG_PROCESSOR = "import airflow.sdk\nimport airflow.dag_processing.processor"

_SAMPLE = """
import json, sys, time
{context}
{preload}
before = set(sys.modules)
sys.stderr.write("@@ start\\n")
sys.stderr.flush()
start = time.perf_counter()
{statement}
elapsed = time.perf_counter() - start
added = sorted(set(sys.modules) - before)
print(json.dumps({{"seconds": elapsed, "added": added}}))
"""


def sample(statement: str, preload: str = "", importtime: bool = False, context: str = SDK_LOADED) -> dict[str, Any]:
    """One fresh interpreter: seconds the statement took and the modules it loaded."""
    flags = ["-X", "importtime"] if importtime else []
    code = _SAMPLE.format(statement=statement, preload=preload, context=context)
    done = subprocess.run(
        [sys.executable, *flags, "-c", code], cwd=REPO, env=_ENV, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"import sample failed:\n{statement}\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if importtime:
        result["importtime"] = done.stderr.split("@@ start", 1)[1]
    return result


def self_times(importtime_log: str) -> dict[str, float]:
    """Each module's self time (seconds) in a ``-X importtime`` log."""
    result: dict[str, float] = {}
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, _cumulative, name = line.removeprefix("import time:").split("|")
            result[name.strip()] = int(self_us) / 1e6
    return result


def measure(context: str, runs: int) -> tuple[dict[str, list[float]], dict[str, list[str]]]:
    """Seconds per variant (interleaved, so load from other processes hits every variant alike)."""
    seconds: dict[str, list[float]] = defaultdict(list)
    added: dict[str, list[str]] = {}
    for _ in range(runs):
        for name, statement in VARIANTS.items():
            result = sample(statement, context=context)
            seconds[name].append(result["seconds"])
            added[name] = result["added"]
    return seconds, added


def variants_table(context_label: str, seconds: dict[str, list[float]], added: dict[str, list[str]]) -> Any:
    base = median(seconds[REQUESTS])
    return (
        (context_label, "time", "vs `import requests`", "modules loaded"),
        [
            (name, spread(seconds[name], ms), f"{(median(seconds[name]) - base) * 1000:+.1f} ms", len(added[name]))
            for name in VARIANTS
        ],
    )


def run(*, smoke: bool) -> Section:
    runs = 1 if smoke else 9
    for statement in [] if smoke else VARIANTS.values():  # warm-up: byte-code caches written, disk cache hot
        sample(statement, context=IN_DAG_PROCESSOR)

    seconds, added = measure(SDK_LOADED, runs)
    loaded = added[CFBILLING]
    assert all(module in loaded for module in OURS), f"not all of our modules loaded: {loaded}"
    heavy = [module for module in loaded if module in HEAVY]
    assert not heavy, f"importing the provider loads heavy modules at parse time: {heavy}"

    ours, base, http = (median(seconds[name]) for name in (CFBILLING, REQUESTS, HTTP_HOOK))
    extra = ours - base
    section = Section(
        TITLE,
        intro=(
            "Fresh interpreter per sample; what is loaded before (the context) is not counted; the import under "
            "test timed with `time.perf_counter`; byte-code cached (warm-up run first). Median (min-max, n runs), "
            "variants interleaved."
        ),
    )
    section.tables.append(variants_table("import after `airflow.sdk` (the issue's measure)", seconds, added))
    if not smoke:
        in_processor, added_in_processor = measure(IN_DAG_PROCESSOR, 7)
        section.tables.append(
            variants_table(
                "import inside Airflow's DAG processor (after `airflow.dag_processing.processor`)",
                in_processor,
                added_in_processor,
            )
        )
        breakdown: dict[str, list[float]] = defaultdict(list)
        profiles: dict[str, list[float]] = defaultdict(list)
        for _ in range(5):
            for name, statement in BREAKDOWN.items():
                breakdown[name].append(sample(statement, preload="import requests")["seconds"])
            log = sample(VARIANTS[CFBILLING], preload="import requests", importtime=True)["importtime"]
            for module, value in self_times(log).items():
                profiles[module].append(value)
        section.tables.append(
            (
                ("each module alone, after `airflow.sdk` and `requests`", "time"),
                [(f"`{name}`", spread(breakdown[name], ms)) for name in BREAKDOWN],
            )
        )
        heaviest = sorted(profiles, key=lambda module: -median(profiles[module]))[:7]
        section.notes.append(
            "Largest self times when importing the three after `airflow.sdk` and `requests` (`-X importtime`, "
            "median of 5): " + ", ".join(f"`{module}` {ms(median(profiles[module]))}" for module in heaviest) + "."
        )
        extra_in_processor = median(in_processor[CFBILLING]) - median(in_processor[REQUESTS])
        section.notes.append(
            "Inside the DAG processor, where DAG files are actually parsed (more of Airflow already loaded), "
            f"the three modules add {extra_in_processor * 1000:+.1f} ms to `import requests`."
        )
    section.notes.append(
        f"Ours vs `HttpHook`: {times(ours / http)} the time ({ms(ours)} vs {ms(http)}). No heavy module "
        f"({', '.join(HEAVY)}) is loaded at parse time."
    )
    met = None if smoke else extra * 1000 <= TARGET_MS
    section.targets.append(
        Target(
            TITLE,
            f"at most {TARGET_MS:.0f} ms more than `import requests` alone",
            f"{extra * 1000:+.1f} ms ({ms(ours)} vs {ms(base)}; HttpHook {ms(http)})",
            met,
            why=""
            if met is not False
            else (
                f"over by {extra * 1000 - TARGET_MS:.1f} ms. In Airflow's DAG processor, where DAG files are "
                f"parsed, the three modules add {extra_in_processor * 1000:+.1f} ms."
            ),
        )
    )
    return section
