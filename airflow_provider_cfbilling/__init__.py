"""Apache Airflow provider for Cloudflare PayGo billable usage.

Importing this package must stay cheap: Airflow imports it to read the provider info on every CLI call
and DAG parse, so it holds nothing but the version and :func:`get_provider_info`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

DISTRIBUTION_NAME = "airflow-provider-cfbilling"

# The `cloudflare` connection form's extra fields (JSON Schema per field). Airflow saves every one of them,
# null when left empty, and the hook reads null as the default. Airflow 3.3's form enforces only some of
# each schema (a number's minimum, a string's length, the types); the hook checks all of it again before
# any request, so `airflow connections test` and the first task name what the form let through.
CONNECTION_FIELDS: dict[str, dict[str, Any]] = {
    "account_id": {
        "label": "Account ID",
        "description": "The Cloudflare account read by default: 32 hexadecimal characters, shown on the "
        "dashboard's account overview. A task may name another account.",
        "schema": {"type": ["string", "null"], "pattern": "^[0-9a-fA-F]{32}$", "minLength": 32, "maxLength": 32},
    },
    "timeout": {
        "label": "Request timeout (seconds)",
        "description": "Connect and read timeout of each HTTP request, above 0. Empty: 30.",
        # minimum: what the form can enforce; exclusiveMinimum: the rule (0 is refused at first use).
        "schema": {"type": ["number", "null"], "minimum": 0, "exclusiveMinimum": 0},
    },
    "max_retry_wait": {
        "label": "Maximum retry wait (seconds)",
        "description": "Total time one call may spend waiting between retries (0: do not retry). Empty: 60.",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
    "concurrent_tasks": {
        "label": "Concurrent tasks",
        "description": "How many tasks may call the API with these credentials at once, across all workers: "
        "the slots of the Airflow pool the tasks run in. That many requests of every rate-limit window are kept "
        "for tasks whose requests are still in flight, so together they never exceed it. Empty: 1.",
        "schema": {"type": ["integer", "null"], "minimum": 1},
    },
    "usage_path": {
        "label": "Usage path",
        "description": "Path of the usage endpoint under the base URL, containing {account_id}. Empty: "
        "Cloudflare's documented /accounts/{account_id}/billable-usage, then the older /paygo-usage and "
        "/billing/usage/paygo paths if it answers 'no route'. A path set here is used as given, without fallback.",
        "schema": {"type": ["string", "null"], "pattern": "^/.*\\{account_id\\}"},
    },
    "info_path": {
        "label": "Billing info path",
        "description": "Path of the billing-info endpoint under the base URL, containing {account_id}. Empty: "
        "Cloudflare's /accounts/{account_id}/billable-usage/info, then the older /paygo-usage-info.",
        "schema": {"type": ["string", "null"], "pattern": "^/.*\\{account_id\\}"},
    },
    "verify": {
        "label": "Verify TLS",
        "description": "TLS certificate check of the API: true, false (not recommended), or the path of a CA "
        "bundle file on the workers (e.g. behind a TLS-inspecting proxy). Empty: true.",
        "schema": {"type": ["string", "null"]},
    },
    "allow_insecure_http": {
        "label": "Allow plain http",
        "description": "Allow an http:// API base URL that is not on loopback: the token would travel "
        "unencrypted. Off by default.",
        "schema": {"type": ["boolean", "null"]},
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata Airflow reads through the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": DISTRIBUTION_NAME,
        "name": "Cloudflare Billing",
        "description": "Cloudflare PayGo billable usage (FOCUS columns): hook, operator, billing-period sensor.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "cloudflare",
                "hook-class-name": "airflow_provider_cfbilling.hooks.billing.CloudflareBillingHook",
                "hook-name": "Cloudflare",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "API base URL",
                        "login": "Email (only with a Global API key)",
                        "password": "API Token (or Global API key)",
                    },
                    "placeholders": {
                        "host": "https://api.cloudflare.com/client/v4",
                        "login": "leave empty when using an API token",
                        "password": "API token with the Billing Read permission",
                    },
                },
                "conn-fields": CONNECTION_FIELDS,
            }
        ],
        "hooks": [
            {
                "integration-name": "Cloudflare Billing",
                "python-modules": ["airflow_provider_cfbilling.hooks.billing"],
            }
        ],
        "operators": [
            {
                "integration-name": "Cloudflare Billing",
                "python-modules": ["airflow_provider_cfbilling.operators.billing"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Cloudflare Billing",
                "python-modules": ["airflow_provider_cfbilling.sensors.billing"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Cloudflare Billing",
                "python-modules": ["airflow_provider_cfbilling.triggers.billing"],
            }
        ],
        "integrations": [
            {
                "integration-name": "Cloudflare Billing",
                "external-doc-url": "https://developers.cloudflare.com/api/resources/billing/",
                "tags": ["service"],
            }
        ],
    }
