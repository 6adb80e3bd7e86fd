#!/usr/bin/env bash
# Build the wheel and prove it installs into a clean venv (runtime dependencies only, pinned by the
# lock) and that Airflow then lists the provider, its hook and its connection type.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

uv build --wheel --out-dir "$work/dist" >/dev/null
uv export --frozen --no-dev --no-emit-project --no-hashes --format requirements-txt -o "$work/constraints.txt" >/dev/null
uv venv --quiet --python python3.11 "$work/venv"
uv pip install --quiet --python "$work/venv/bin/python" -c "$work/constraints.txt" "$work"/dist/*.whl

export AIRFLOW_HOME="$work/home" AIRFLOW__CORE__LOAD_EXAMPLES=False
info=$("$work/venv/bin/airflow" providers get airflow-provider-cfbilling --full -o json)
# Outputs are captured before they are searched: with pipefail, `producer | grep -q` fails whenever grep exits
# before the producer has written everything (the producer then dies of a broken pipe).
for needle in '"package-name": "airflow-provider-cfbilling"' '"connection-type": "cloudflare"' 'hooks.billing.CloudflareBillingHook'; do
  [[ $info == *"$needle"* ]] || { echo "provider info lacks $needle: $info"; exit 1; }
done
hooks=$("$work/venv/bin/airflow" providers hooks -o json)
[[ $hooks == *CloudflareBillingHook* ]] || { echo "hook not listed"; exit 1; }
# The wheel must not pull heavy optional packages into a plain install.
if "$work/venv/bin/python" -c "import pyarrow" 2>/dev/null; then echo "pyarrow leaked into runtime deps"; exit 1; fi
"$work/venv/bin/python" -c "import airflow_provider_cfbilling.hooks.billing, airflow_provider_cfbilling.testing.simulator"
# One version, written once (the package's __version__), and the license inside the wheel.
wheel=$(ls "$work"/dist/*.whl)
version=$("$work/venv/bin/python" -c "import airflow_provider_cfbilling as p; print(p.__version__)")
case "$(basename "$wheel")" in *"-$version-"*) ;; *) echo "wheel $wheel is not version $version"; exit 1;; esac
"$work/venv/bin/python" -c "import importlib.metadata as m; assert m.version('airflow-provider-cfbilling') == '$version'"
listing=$("$work/venv/bin/python" -m zipfile -l "$wheel")
[[ $listing == *dist-info/licenses/LICENSE* ]] || { echo "LICENSE not in the wheel"; exit 1; }
echo "wheel OK: $(basename "$wheel")"
