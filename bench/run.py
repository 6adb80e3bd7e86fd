"""Run every benchmark against the local simulator and write ``bench/RESULTS.md``.

    uv run --frozen python bench/run.py            # full run (about 15 minutes), writes bench/RESULTS.md
    uv run --frozen python bench/run.py --smoke    # tiny sizes, checks the answers only (CI; < 1 minute)
    uv run --frozen python bench/run.py --only calls,fleet --output /tmp/partial.md

Benchmarks 3 (large answers through the operator) and 4 (waiting: deferrable vs poke) plug in as
``bench/bench_large.py`` and ``bench/bench_wait.py``: a module with ``TITLE`` and
``run(*, smoke: bool) -> Section`` (see ``bench/common.py``) is picked up here by name.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, Section, Target, environment, markdown_table, prepare_airflow_env, verdict

#: (key, module, title while the module does not exist yet), in the issue's order.
BENCHMARKS = (
    ("parse", "bench.bench_parse", "1. DAG-parse cost"),
    ("calls", "bench.bench_calls", "2. Per-call cost"),
    ("large", "bench.bench_large", "3. Large answers end to end (operator to Parquet/JSONL)"),
    ("wait", "bench.bench_wait", "4. Waiting for a period to close (deferrable vs poke)"),
    ("fleet", "bench.bench_fleet", "5. Rate limits across a fleet of tasks (Celery and LocalExecutor)"),
)
COMMAND = "uv run --frozen python bench/run.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; check answers, never speed")
    parser.add_argument("--only", help="comma-separated keys: " + ", ".join(key for key, _, _ in BENCHMARKS))
    parser.add_argument("--output", type=Path, help="markdown file to write (default: bench/RESULTS.md, not in smoke)")
    args = parser.parse_args(argv)
    selected = set(args.only.split(",")) if args.only else {key for key, _, _ in BENCHMARKS}
    unknown = selected - {key for key, _, _ in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    prepare_airflow_env()
    header = environment()
    sections: list[Section] = []
    failed: list[str] = []
    started = time.monotonic()
    for key, module_name, title in BENCHMARKS:
        if key not in selected:
            continue
        if importlib.util.find_spec(module_name) is None:
            sections.append(Section(title, intro=f"Not yet implemented: `{module_name}` lands with its feature."))
            continue
        module = importlib.import_module(module_name)
        print(f"== {module.TITLE} ({'smoke' if args.smoke else 'full'})", flush=True)
        began = time.monotonic()
        try:
            section = module.run(smoke=args.smoke)
        except Exception:  # one broken benchmark must not cost the others' figures
            failed.append(key)
            error = traceback.format_exc()
            print(error, file=sys.stderr, flush=True)
            section = Section(module.TITLE, intro=f"**Failed** (wrong answer or error):\n\n```\n{error.strip()}\n```")
        print(f"   done in {time.monotonic() - began:.0f} s", flush=True)
        sections.append(section)

    report = render(header, sections, smoke=args.smoke, elapsed=time.monotonic() - started)
    output = args.output or (None if args.smoke else REPO / "bench" / "RESULTS.md")
    if output is not None:
        output.write_text(report)
        print(f"wrote {output}")
    else:
        print(report)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def render(header: list[tuple[str, str]], sections: list[Section], *, smoke: bool, elapsed: float) -> str:
    targets: list[Target] = [target for section in sections for target in section.targets]
    mode = "smoke mode: tiny sizes, answers checked, timings meaningless" if smoke else "full run"
    parts = [
        "# Benchmark results",
        f"Written by `{COMMAND}{' --smoke' if smoke else ''}` ({mode}, {elapsed:.0f} s). Every figure is the "
        "median of several runs, next to its baseline measured in the same run, on a machine shared with other "
        "work: compare ratios, not absolute times.",
        markdown_table(("", ""), header),
        "## Targets",
        markdown_table(
            ("benchmark", "target", "measured", "verdict", "why"),
            [(t.benchmark, t.target, t.measured, verdict(t.met), t.why or "") for t in targets],
        ),
        *(section.markdown() for section in sections),
    ]
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
