"""The landed files' columns and types, against an oracle the code under test does not provide.

Types come from Cloudflare's published response schema (``tests/data/cloudflare-billing-schema.json``):
a JSON ``number`` is money or a measured quantity and lands as an exact ``decimal128(38, 18)``, an ``integer``
as ``int64``, a ``date-time`` string as a UTC timestamp, any other string as a string. The column order is
written out by hand. Nothing here reads ``utils.formats``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator
from airflow_provider_cfbilling.testing.simulator import EMPTY_ACCOUNT, STANDARD_ACCOUNT

SCHEMA = json.loads((Path(__file__).parent / "data" / "cloudflare-billing-schema.json").read_text())

# Cloudflare's 11 required columns in the documented order, then the other documented columns alphabetically.
EXPECTED_ORDER = [
    "BillingCurrency",
    "BillingPeriodStart",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "CumulatedContractedCost",
    "CumulatedPricingQuantity",
    "PricingQuantity",
    "ServiceName",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "EffectiveCost",
    "HostProviderName",
    "InvoiceIssuerName",
    "ListCost",
    "PricingUnit",
    "ServiceFamilyName",
    "ServiceProviderName",
    "SubscriptionId",
    "ZoneId",
    "ZoneName",
]


def arrow_type_from_published_schema(field: dict[str, Any]) -> pa.DataType:
    if field["type"] == "number":
        return pa.decimal128(38, 18)
    if field["type"] == "integer":
        return pa.int64()
    if field.get("format") == "date-time":
        return pa.timestamp("ms", tz="UTC")
    assert field["type"] == "string", field
    return pa.string()


def land(tmp_path: Path, account: str, suffix: str) -> Path:
    target = tmp_path / f"usage.{suffix}"
    CloudflarePaygoUsageOperator(
        task_id="land", account_id=account, from_="2025-10-14", to="2025-11-14", destination=target.as_uri()
    ).execute({})
    return target


def test_the_published_schema_covers_every_documented_column() -> None:
    assert sorted(SCHEMA["billable_usage_record"]["properties"]) == sorted(EXPECTED_ORDER)


def test_parquet_types_and_order_follow_the_published_schema(sim: Any, cloudflare_conn: str, tmp_path: Path) -> None:
    schema = pq.read_schema(land(tmp_path, STANDARD_ACCOUNT, "parquet"))
    published = SCHEMA["billable_usage_record"]["properties"]

    assert schema.names == EXPECTED_ORDER
    for name in EXPECTED_ORDER:
        assert schema.field(name).type == arrow_type_from_published_schema(published[name]), name


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_text_formats_keep_the_same_column_order(sim: Any, cloudflare_conn: str, tmp_path: Path, suffix: str) -> None:
    path = land(tmp_path, STANDARD_ACCOUNT, suffix)
    with path.open(newline="") as handle:
        first = next(csv.reader(handle)) if suffix == "csv" else list(json.loads(handle.readline()))
    assert first == EXPECTED_ORDER


def test_an_empty_period_still_has_the_required_columns_typed(sim: Any, cloudflare_conn: str, tmp_path: Path) -> None:
    schema = pq.read_schema(land(tmp_path, EMPTY_ACCOUNT, "parquet"))
    published = SCHEMA["billable_usage_record"]["properties"]

    assert schema.names == EXPECTED_ORDER[:11]
    for name in EXPECTED_ORDER[:11]:
        assert schema.field(name).type == arrow_type_from_published_schema(published[name]), name
