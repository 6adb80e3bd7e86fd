#!/usr/bin/env bash
# The README's test command: install what the suite needs and is not yet on the machine, then run pytest.
# Arguments are passed to pytest, e.g. `bash scripts/test.sh -m "not e2e"`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The connection-form test (tests/test_connection_form_browser.py) drives Debian's Chromium: Playwright is
# pointed at /usr/bin/chromium, since no browser build can be downloaded here (never `playwright install`).
if [ ! -x /usr/bin/chromium ]; then
    echo "Installing Debian's chromium for the connection-form browser test" >&2
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
fi

python3 -m pip install --quiet --disable-pip-version-check uv
export UV_PYTHON_PREFERENCE="${UV_PYTHON_PREFERENCE:-only-system}"
exec uv run --frozen pytest "$@"
