"""Keep mutmut's verdicts in git, so that a mutation run resumes on another machine or in a fresh clone.

    uv run --frozen python scripts/mutation_results.py restore   # before `mutmut run` (scripts/mutation.sh does)
    uv run --frozen python scripts/mutation_results.py save      # after it (scripts/mutation.sh does, even if stopped)

mutmut writes its verdicts to ``mutants/<module>.py.meta`` (one JSON file per source file: each mutant's exit
code, each function's hash, each mutant's test time). ``mutants/`` is a throw-away working copy, and the whole
target takes longer than one sitting on two cores, so the verdicts are saved to ``bench/mutation-results/``.
Restoring puts them back in a fresh ``mutants/`` before mutmut generates the mutants; mutmut itself then keeps a
verdict only while its function's hash is unchanged (``create_mutants_for_file``), so an edited function's
mutants are run again. A verdict is also only as good as the tests it was run against: a stronger test can
kill a saved survivor (run that mutant again by name), and no test is ever weakened here.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"
SAVED = ROOT / "bench" / "mutation-results"
PATTERN = "airflow_provider_cfbilling/**/*.py.meta"


def restore() -> int:
    """Copy each saved verdict file into ``mutants/`` where mutmut has none yet; returns how many."""
    restored = 0
    for saved in sorted(SAVED.glob(PATTERN)):
        target = MUTANTS / saved.relative_to(SAVED)
        if target.exists():
            continue  # a working copy's own verdicts are newer than git's
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(saved, target)
        restored += 1
    return restored


def save() -> int:
    """Write ``mutants/``'s verdict files to ``bench/mutation-results/`` (sorted, indented: readable diffs)."""
    saved = 0
    for meta in sorted(MUTANTS.glob(PATTERN)):
        data = json.loads(meta.read_text())
        if not data.get("exit_code_by_key"):
            continue  # a module without mutants (an empty __init__)
        target = SAVED / meta.relative_to(MUTANTS)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        saved += 1
    return saved


def main() -> None:
    action = sys.argv[1] if len(sys.argv) == 2 else ""
    if action == "restore":
        print(f"restored {restore()} verdict files from {SAVED.relative_to(ROOT)}")
    elif action == "save":
        print(f"saved {save()} verdict files to {SAVED.relative_to(ROOT)}")
    else:
        sys.exit("usage: mutation_results.py restore|save")


if __name__ == "__main__":
    main()
