#!/usr/bin/env bash
# The README's test command: install what the suite needs and is not yet on the machine, then run pytest.
#
# The browser test drives Debian's Chromium (packages `chromium` and `chromium-driver`): no browser is
# downloaded by the Python tooling. They are installed here with apt-get when missing, which needs root.
# Arguments are passed to pytest, e.g. `bash scripts/test.sh -m browser`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for package in chromium chromium-driver; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "scripts/test.sh: the Debian packages ${missing[*]} are missing and installing them needs root:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "== installing ${missing[*]} (Debian packages, for the browser test)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python3 -m pip install --quiet --disable-pip-version-check uv
export UV_PYTHON_PREFERENCE="${UV_PYTHON_PREFERENCE:-only-system}"
exec uv run --frozen pytest "$@"
