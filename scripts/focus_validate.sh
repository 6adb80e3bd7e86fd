#!/usr/bin/env bash
# Check a landed file against FOCUS 1.2 with the FinOps Foundation's own validator (focus-validator).
#
#   bash scripts/focus_validate.sh FILE [focus-validator options, e.g. --applicability-criteria A,B]
#   bash scripts/focus_validate.sh --install      # only create the validator's venv (CI, test fixtures)
#
# The validator lives in its own venv, never the project's: it needs Python >= 3.12 (on 3.11 pip quietly
# installs the ancient 1.0.0), and it pins numpy < 2 while its resolver would pick a pyarrow that needs
# numpy >= 2, so pyarrow is pinned too. The venv is created on first use in .focus-validator/ (or
# $FOCUS_VALIDATOR_VENV) and reused while its pins match.
#
# Offline, the validator has one rule model, FOCUS 1.2 (model-1.2.0.1.json, shipped in the package): it is
# run with --validate-version 1.2 --block-download. It prints "Total: N | Pass: P | Fail: F | Skipped: S" and
# exits 0 even when rules fail, so this script reads that line: exit 0 when no rule fails, 1 when some do,
# 2 when there is no such line (the validator itself failed).
set -euo pipefail

VALIDATOR_VERSION=2.2.1
PYARROW_VERSION=22.0.0
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${FOCUS_VALIDATOR_VENV:-$ROOT/.focus-validator}"
PINS="focus-validator==$VALIDATOR_VERSION pyarrow==$PYARROW_VERSION"

find_python312() {
    # $FOCUS_VALIDATOR_PYTHON, then python3.12 on PATH, then the newest 3.12 under pyenv. Exactly 3.12: the
    # validator's numpy < 2 has no wheels for 3.13, where pip spends minutes building it from source.
    local candidates=() version
    [ -n "${FOCUS_VALIDATOR_PYTHON:-}" ] && candidates+=("$FOCUS_VALIDATOR_PYTHON")
    candidates+=(python3.12)
    if command -v pyenv >/dev/null 2>&1; then
        while read -r version; do
            candidates+=("$(pyenv prefix "$version")/bin/python3.12")
        done < <(pyenv versions --bare 2>/dev/null | grep -E '^3\.12\.[0-9]+$' | sort -rV)
    fi
    for python in "${candidates[@]}"; do
        if command -v "$python" >/dev/null 2>&1 &&
            "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
            echo "$python"
            return 0
        fi
    done
    echo "focus_validate.sh: focus-validator $VALIDATOR_VERSION needs Python 3.12 and none was found" \
        "(tried: ${candidates[*]}). Install one (e.g. 'pyenv install 3.12.1') or point FOCUS_VALIDATOR_PYTHON at it." >&2
    return 1
}

install_validator() {
    if [ "$(cat "$VENV/.pins" 2>/dev/null)" = "$PINS" ]; then
        return 0
    fi
    local python
    python="$(find_python312)"
    echo "focus_validate.sh: creating $VENV with $python ($PINS)" >&2
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PINS
    echo "$PINS" >"$VENV/.pins" # written last: a half-built venv is rebuilt next time
}

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock" # one installer at a time
flock 9
install_validator
flock -u 9

if [ "${1:-}" = "--install" ]; then
    exit 0
fi
if [ $# -lt 1 ] || [ ! -f "$1" ]; then
    echo "usage: bash scripts/focus_validate.sh FILE [focus-validator options] | --install" >&2
    exit 2
fi
data_file="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
shift

# The validator opens focus_validator/rules/currency_codes.csv relative to the working directory: run it
# from a scratch directory where that path leads to the installed package's rules.
rules="$("$VENV/bin/python" -c 'import focus_validator, os; print(os.path.join(os.path.dirname(focus_validator.__file__), "rules"))')"
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
mkdir -p "$workdir/focus_validator"
ln -s "$rules" "$workdir/focus_validator/rules"

output="$(cd "$workdir" && "$VENV/bin/focus-validator" --data-file "$data_file" --validate-version 1.2 \
    --block-download "$@" 2>&1)" || true
echo "$output"
totals="$(grep -E '^Total: [0-9]+ \| Pass: [0-9]+ \| Fail: [0-9]+ \| Skipped: [0-9]+' <<<"$output" | tail -n 1 || true)"
if [ -z "$totals" ]; then
    echo "focus_validate.sh: the validator printed no totals line for $data_file: it did not run its rules." >&2
    exit 2
fi
failed="$(sed -E 's/.*Fail: ([0-9]+).*/\1/' <<<"$totals")"
[ "$failed" -eq 0 ]
