#!/usr/bin/env bash
# The end-to-end suite (-m e2e) run N times in a row while busy loops load every core, to show that its
# waits are waits for conditions, not for time (issue: "no races on a loaded machine").
#   bash scripts/e2e_under_load.sh        # 5 runs, one busy loop per core
#   N=1 LOOPS=2 bash scripts/e2e_under_load.sh
# Exits non-zero if any run failed; the report at the end lists each run's result and duration.
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${N:-5}"
loops="${LOOPS:-$(nproc)}"
export UV_PYTHON_PREFERENCE="${UV_PYTHON_PREFERENCE:-only-system}"

busy=()
stop_loops() {
    for pid in "${busy[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${busy[@]}"; do wait "$pid" 2>/dev/null; done
    busy=()
}
trap stop_loops EXIT INT TERM
for _ in $(seq "$loops"); do
    python3 -c 'while True: pass' &
    busy+=("$!")
done
echo "$(date -u +%FT%TZ) ${#busy[@]} busy loop(s) on $(nproc) core(s): ${busy[*]}; $runs run(s) of -m e2e"

report=()
failed=0
for run in $(seq "$runs"); do
    start=$(date +%s)
    uv run --frozen pytest -m e2e -p no:cacheprovider -q "$@" >"/tmp/e2e_under_load.$$.$run.log" 2>&1
    status=$?
    summary=$(tail -n 1 "/tmp/e2e_under_load.$$.$run.log")
    report+=("run $run: exit $status in $(( $(date +%s) - start )) s: $summary")
    echo "${report[-1]}"
    if [ "$status" -ne 0 ]; then
        failed=$((failed + 1))
        echo "  log: /tmp/e2e_under_load.$$.$run.log"
    fi
done
stop_loops

echo
echo "$(date -u +%FT%TZ) e2e under load: $((runs - failed)) of $runs run(s) passed with $loops busy loop(s)"
printf '%s\n' "${report[@]}"
[ "$failed" -eq 0 ]
