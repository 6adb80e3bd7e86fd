"""Per-module figures of the last mutation run (scripts/mutation.sh), read from mutmut's files in mutants/.

    uv run --frozen python scripts/mutation_summary.py [--survivors]

For each mutated module: mutants, killed, survived, timeouts, no tests, not yet run, the score (killed and
timed-out over those run), and the time its mutants took (the sum of each mutant's test run; with two workers
the wall-clock time is about half of it). With --survivors, the surviving mutants' names too.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

# mutmut 3's exit codes (mutmut/stats.py: status_by_exit_code).
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout"}
STATUS.update({-24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", 37: "type check", None: "not run"})


def main() -> None:
    root = Path(__file__).resolve().parent.parent / "mutants"
    show_survivors = "--survivors" in sys.argv
    rows = []
    survivors: list[str] = []
    for meta in sorted(root.glob("airflow_provider_cfbilling/**/*.py.meta")):
        data = json.loads(meta.read_text())
        codes = data["exit_code_by_key"]
        if not codes:
            continue
        counts = Counter(STATUS.get(code, "suspicious") for code in codes.values())
        seconds = sum(d for d in data["durations_by_key"].values() if d)
        module = str(meta.relative_to(root)).removesuffix(".py.meta").replace("/", ".")
        rows.append((module, len(codes), counts, seconds))
        survivors += sorted(key for key, code in codes.items() if code == 0)
    print(f"{'module':52} {'mutants':>7} {'killed':>6} {'surv.':>5} {'t/o':>4} {'no t.':>5} {'unrun':>5}", end="")
    print(f" {'score':>6} {'time':>7}")
    for module, n, counts, seconds in rows:
        run = counts["killed"] + counts["survived"] + counts["timeout"]
        score = f"{100 * (counts['killed'] + counts['timeout']) / run:.1f}%" if run else "-"
        print(
            f"{module:52} {n:7} {counts['killed']:6} {counts['survived']:5} {counts['timeout']:4} "
            f"{counts['no tests']:5} {counts['not run']:5} {score:>6} {seconds:6.0f}s"
        )
    if show_survivors:
        print()
        print("\n".join(survivors))


if __name__ == "__main__":
    main()
