"""Apache Airflow provider for Cloudflare PayGo billable usage.

Importing this package must stay cheap: Airflow imports it to read the provider info on every CLI call
and DAG parse, so it holds nothing but the version and :func:`get_provider_info`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

DISTRIBUTION_NAME = "airflow-provider-cfbilling"


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
                "conn-fields": {
                    "account_id": {
                        "label": "Account ID",
                        "description": "Default Cloudflare account id (32 hex characters).",
                        "schema": {"type": ["string", "null"], "pattern": "^[0-9a-f]{32}$"},
                    },
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "description": "Connect and read timeout of each HTTP request. Default 30.",
                        "schema": {"type": ["number", "null"]},
                    },
                    "max_retry_wait": {
                        "label": "Maximum retry wait (seconds)",
                        "description": "Total time the hook may spend waiting between retries. Default 60.",
                        "schema": {"type": ["number", "null"]},
                    },
                    "usage_path": {
                        "label": "Usage path",
                        "description": "Path of the usage endpoint, with {account_id}. Default: the brief's "
                        "/accounts/{account_id}/billing/usage/paygo, falling back to its successors.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "info_path": {
                        "label": "Billing info path",
                        "description": "Path of the billing-info endpoint, with {account_id}. Default: "
                        "/accounts/{account_id}/billable-usage/info, falling back to /paygo-usage-info.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "allow_insecure_http": {
                        "label": "Allow plain http",
                        "description": "Allow a non-loopback http:// base URL (credentials travel unencrypted).",
                        "schema": {"type": ["boolean", "null"]},
                    },
                },
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
