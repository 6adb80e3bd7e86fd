#!/usr/bin/env bash
# The README's test command: install what the suite needs and is not yet on the machine, then run pytest.
# Arguments are passed to pytest, e.g. `bash scripts/test.sh -m "not e2e"`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the suite drives, installed when missing:
# - the connection-form test (tests/test_connection_form_browser.py) drives Debian's Chromium: Playwright is
#   pointed at /usr/bin/chromium, since no browser build can be downloaded here (never `playwright install`);
# - the distributed e2e test and benchmark (tests/test_fleet_e2e.py, its celery case, and bench/bench_fleet.py) start a
#   private Redis server as the Celery broker: Debian's redis-server (PostgreSQL 15's binaries are on the machine).
packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium chromium-driver)
command -v redis-server >/dev/null || packages+=(redis-server)
if [ "${#packages[@]}" -gt 0 ]; then
    echo "Installing Debian packages the tests need: ${packages[*]}" >&2
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq "${packages[@]}" >/dev/null
fi

python3 -m pip install --quiet --disable-pip-version-check uv
export UV_PYTHON_PREFERENCE="${UV_PYTHON_PREFERENCE:-only-system}"
exec uv run --frozen pytest "$@"
