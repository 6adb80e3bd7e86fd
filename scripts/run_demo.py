"""Run the demo DAG through real Airflow against the local Cloudflare API simulator.

Creates a throw-away Airflow home (sqlite) under ``.demo/``, starts the simulator on a free loopback
port, points ``cloudflare_default`` at it and runs ``airflow dags test example_cloudflare_usage_demo``.
A user with a real token changes the connection, nothing else.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from airflow_provider_cfbilling.testing.simulator import SIM_TOKEN, STANDARD_ACCOUNT, CloudflareSimulator

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "example_cloudflare_usage_demo"


def main() -> int:
    home = REPO / ".demo" / "airflow"
    shutil.rmtree(home, ignore_errors=True)
    (home / "dags").mkdir(parents=True)
    shutil.copy(REPO / "example_dags" / f"{DAG_ID}.py", home / "dags")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = [sys.executable, "-m", "airflow"]
    print(f"Airflow home: {home}", flush=True)
    subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True)

    today = dt.datetime.now(dt.timezone.utc).date()
    with CloudflareSimulator(today=today) as simulator:
        print(f"Cloudflare API simulator: {simulator.url} (clock {today})", flush=True)
        env["AIRFLOW_CONN_CLOUDFLARE_DEFAULT"] = json.dumps(
            {
                "conn_type": "cloudflare",
                "host": simulator.url,
                "password": SIM_TOKEN,
                "extra": {"account_id": STANDARD_ACCOUNT},
            }
        )
        run = subprocess.run(
            [*airflow, "dags", "test", DAG_ID, today.isoformat()],
            env=env,
            capture_output=True,
            text=True,
        )
    log = run.stdout + run.stderr
    (REPO / ".demo" / "dags-test.log").write_text(log)
    # The summary task prints a table; show it, then the run's verdict.
    table = re.search(r"^service .*?^TOTAL .*?$", log, flags=re.M | re.S)
    print(table.group(0) if table else "(no summary table found)")
    state = re.findall(r"DagRun Finished: .*?state=(\w+)", log)
    print(f"DAG run state: {state[-1] if state else 'unknown'}; full log: .demo/dags-test.log")
    return 0 if run.returncode == 0 and state and state[-1] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
