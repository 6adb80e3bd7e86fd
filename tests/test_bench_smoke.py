"""The benchmarks run and get the right answers (CI runs them in smoke mode; speed is never checked here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT, airflow_env


def test_every_benchmark_runs_in_smoke_mode_and_checks_its_answers(tmp_path: Path) -> None:
    report = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--output", str(report)],
        cwd=REPO_ROOT,
        env=airflow_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = report.read_text()
    assert "smoke mode" in text
    assert "**Failed**" not in text
    for title in ("1. DAG-parse cost", "2. Per-call cost", "5. Rate limits"):
        assert f"## {title}" in text
    # Smoke mode measures nothing against the targets: it must not claim a verdict.
    assert "| met |" not in text and "**missed**" not in text
