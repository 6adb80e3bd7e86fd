"""Test DAG for the real engine: the token's paths through the task runner, on success and on failure.

The connection ``cloudflare_default`` holds a canary token; the test switches faults on per simulator account
before it triggers the run, so each task meets one failure (or none) and its error, with all its context,
lands in the task log the real task runner writes. ``CFBILLING_TEST_OUT`` (a ``file://`` URI) is set by the
test. Every task has ``retries=0``: a failure is final.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.testing.simulator import (
    ANCHOR31_ACCOUNT,
    EMPTY_ACCOUNT,
    FOCUS_ACCOUNT,
    LARGE_ACCOUNT,
    STANDARD_ACCOUNT,
)

OUT = os.environ.get("CFBILLING_TEST_OUT", "file:///tmp/cfbilling-test")

with DAG(
    "faults_secrets",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 0},
):
    # Success: a file, and XCom. The account comes from the connection through a template; the subscription
    # field is templated from the connection's password, as a careless DAG author might write it: the
    # rendered-fields table must show it masked.
    CloudflarePaygoUsageOperator(
        task_id="land_file",
        account_id="{{ conn.cloudflare_default.extra_dejson.account_id }}",
        subscription_id="{{ conn.cloudflare_default.password }}",
        destination=f"{OUT}/account={{account_id}}/billing_period={{billing_period}}/usage.jsonl",
    )
    CloudflarePaygoUsageOperator(task_id="land_xcom", account_id=STANDARD_ACCOUNT)
    # Failures, one per account (the test sets the faults): persistent 502s, retried then given up; a moved
    # path then success: false; a truncated body; a 429 that defers to the triggerer, then a record without
    # its cost; and a revoked token.
    CloudflarePaygoUsageOperator(task_id="server_error", account_id=FOCUS_ACCOUNT)
    CloudflarePaygoUsageOperator(task_id="success_false", account_id=ANCHOR31_ACCOUNT)
    CloudflarePaygoUsageOperator(task_id="truncated", account_id=EMPTY_ACCOUNT)
    CloudflarePaygoUsageOperator(task_id="deferred_then_bad_record", account_id=LARGE_ACCOUNT, deferrable=True)
    CloudflarePaygoUsageOperator(
        task_id="revoked_token", cloudflare_conn_id="cloudflare_revoked", account_id=STANDARD_ACCOUNT
    )
