#!/usr/bin/env bash
# Mutation testing (mutmut, configured in pyproject's [tool.mutmut]): mutates the provider's code (hook,
# operator, sensor, trigger, utils; never the simulator) and runs the fast tests that cover each mutant.
# Far too slow for every CI run on 2 cores: run it before resolving test-strength work.
#   bash scripts/mutation.sh                      # everything
#   bash scripts/mutation.sh "airflow_provider_cfbilling.utils.reconcile*"   # one module
# Results: `uv run --frozen mutmut results` (survivors), `uv run --frozen mutmut show <name>` (a diff).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check uv
export UV_PYTHON_PREFERENCE="${UV_PYTHON_PREFERENCE:-only-system}"
rm -rf mutants
start=$(date +%s)
uv run --frozen mutmut run --max-children "${MUTMUT_CHILDREN:-2}" "$@"
echo "mutmut took $(( $(date +%s) - start )) s"
uv run --frozen mutmut export-cicd-stats >/dev/null 2>&1 || true
uv run --frozen mutmut results
