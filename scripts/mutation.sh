#!/usr/bin/env bash
# Mutation testing (mutmut, configured in pyproject's [tool.mutmut]): mutates the provider's code (hook,
# operator, sensor, trigger, utils; never the simulator) and runs, for each mutant, only the fast tests that
# call the mutated function (mutmut 3 records which tests reach which function in a first, full pass).
# Far too slow for every CI run on 2 cores: run it before resolving test-strength work, module by module.
#   bash scripts/mutation.sh                                                  # everything
#   bash scripts/mutation.sh "airflow_provider_cfbilling.utils.periods*"      # one module
# mutants/ is kept between runs: the first run pays for two full passes of the fast tests (line coverage,
# then which test reaches which function); later runs reuse them and only test what changed or was not
# yet tried. MUTMUT_FRESH=1 starts from nothing. It runs at nice 19 so that it never starves other work.
# Verdicts are kept in git (bench/mutation-results/, scripts/mutation_results.py): a fresh mutants/ starts from
# them, and they are saved back when mutmut ends or is stopped, so the run resumes in another clone.
# Results: `uv run --frozen mutmut results` (survivors), `uv run --frozen mutmut show <name>` (a diff),
# `uv run --frozen python scripts/mutation_summary.py` (killed / survived / timeouts per module).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v uv >/dev/null || python3 -m pip install --quiet --disable-pip-version-check uv
export UV_PYTHON_PREFERENCE="${UV_PYTHON_PREFERENCE:-only-system}"
if [ "${MUTMUT_FRESH:-0}" = 1 ]; then rm -rf mutants; else uv run --frozen python scripts/mutation_results.py restore; fi
trap 'uv run --frozen python scripts/mutation_results.py save' EXIT
start=$(date +%s)
nice -n "${MUTMUT_NICE:-19}" uv run --frozen mutmut run --max-children "${MUTMUT_CHILDREN:-2}" "$@"
echo "mutmut took $(( $(date +%s) - start )) s"
uv run --frozen mutmut export-cicd-stats >/dev/null 2>&1 || true
uv run --frozen mutmut results
