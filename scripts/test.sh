#!/usr/bin/env bash
# The README's test command: install what the suite needs and is not yet on the machine, then run pytest.
# Arguments are passed to pytest, e.g. `bash scripts/test.sh -m "not e2e"`.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check uv
export UV_PYTHON_PREFERENCE="${UV_PYTHON_PREFERENCE:-only-system}"
exec uv run --frozen pytest "$@"
