"""FOCUS output (``focus_version``): the operator against the simulator, then the transform's rules.

The FinOps Foundation's validator judges the same files in tests/test_focus_validator.py (slow, marker
``focus``); here the columns, values and types are checked against the simulator's own answer.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_operator as run
from test_formats import in_window, served

from airflow_provider_cfbilling.exceptions import CloudflareBillingInputError, CloudflareResponseError
from airflow_provider_cfbilling.testing.simulator import (
    ANCHOR31_ACCOUNT,
    EMPTY_ACCOUNT,
    LARGE_ACCOUNT,
    SIM_TOKEN,
    STANDARD_ACCOUNT,
)
from airflow_provider_cfbilling.utils.focus import FOCUS_COLUMNS, FocusRecords, focus_unit, unit_price
from airflow_provider_cfbilling.utils.focus_services import SERVICE_CATEGORIES, service_category

# The FOCUS 1.2 columns every FOCUS file carries, written out by hand (not read from the module under test).
FOCUS_1_2 = [
    "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency", "BillingPeriodEnd",
    "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency",
    "ChargePeriodEnd", "ChargePeriodStart", "ConsumedQuantity", "ConsumedUnit", "ContractedCost",
    "ContractedUnitPrice", "EffectiveCost", "InvoiceId", "InvoiceIssuerName", "ListCost", "ListUnitPrice",
    "PricingCategory", "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName", "ResourceId",
    "ResourceName", "ServiceCategory", "ServiceName", "ServiceSubcategory",
]  # fmt: skip
# Cloudflare's columns beyond FOCUS 1.2 in a /billable-usage record, as they land.
CUSTOM_1_2 = [
    "x_CumulatedContractedCost", "x_CumulatedPricingQuantity", "x_HostProviderName", "x_ServiceFamilyName",
    "x_SubscriptionId",
]  # fmt: skip
PERIOD = {"from": "2025-09-14", "to": "2025-10-14"}  # STANDARD_ACCOUNT's period containing 2025-10-01
HALF_ULP = Decimal("0.5e-18")


def february_focus(record: dict[str, Any], version: str) -> dict[str, Any]:
    """The FOCUS record of one February 2025 usage record of the standard account."""
    ends = {dt.datetime(2025, 2, 1, tzinfo=dt.timezone.utc): dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)}
    (focus,) = FocusRecords([record], version=version, account_id=STANDARD_ACCOUNT, billing_period_ends=ends)
    return focus


def served_period(sim: Any, account: str = STANDARD_ACCOUNT) -> list[dict[str, Any]]:
    """The API's records of the period, numbers as exact decimals (the oracle)."""
    return in_window(served(sim, account, **PERIOD)[1], PERIOD["from"], PERIOD["to"])


# -- the operator ------------------------------------------------------------------------------------


def test_focus_records_keep_every_served_value_and_add_the_focus_columns(
    sim: Any, use_conn: Any, tmp_path: Path
) -> None:
    run(billing_period_of="2025-10-01", focus_version="1.2", destination=(tmp_path / "u.jsonl").as_uri())
    lines = (tmp_path / "u.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line, parse_float=Decimal) for line in lines]  # the file's digits, exactly
    exact = served_period(sim)
    assert len(records) == len(exact) > 0
    for got, want in zip(records, exact, strict=True):
        assert list(got) == FOCUS_1_2 + CUSTOM_1_2
        # The API's values, unchanged (numbers as exact decimals).
        for column in ("BillingCurrency", "BillingPeriodStart", "ChargePeriodStart", "ChargePeriodEnd", "ServiceName"):
            assert got[column] == want[column]
        for column in ("ContractedCost", "BilledCost", "EffectiveCost", "ListCost", "ConsumedQuantity"):
            assert isinstance(got[column], Decimal) and got[column] == want[column]
        assert got["PricingQuantity"] == want["PricingQuantity"] and isinstance(got["PricingQuantity"], Decimal)
        assert got["x_CumulatedContractedCost"] == want["CumulatedContractedCost"]
        assert got["x_CumulatedPricingQuantity"] == want["CumulatedPricingQuantity"]
        assert got["x_ServiceFamilyName"] == want["ServiceFamilyName"]
        assert got["BillingAccountName"] == want["BillingAccountName"] == "Standard PayGo account"
        # Derived.
        assert got["BillingPeriodEnd"] == "2025-10-14T00:00:00Z"
        assert got["BillingAccountId"] == STANDARD_ACCOUNT
        assert (got["ProviderName"], got["PublisherName"], got["InvoiceIssuerName"]) == ("Cloudflare, Inc.",) * 3
        assert (got["ChargeCategory"], got["ChargeFrequency"], got["PricingCategory"]) == (
            "Usage",
            "Usage-Based",
            "Standard",
        )
        assert got["ChargeClass"] is None and got["InvoiceId"] is None
        assert got["ChargeDescription"] == (want["ChargeDescription"] or want["ServiceName"])
        assert got["ResourceId"] is None and got["ResourceName"] is None  # account-level usage
        quantity = want["PricingQuantity"]
        if quantity > 0:
            assert abs(got["ContractedUnitPrice"] * quantity - want["ContractedCost"]) <= HALF_ULP * quantity
            assert got["ListUnitPrice"] == got["ContractedUnitPrice"]  # ListCost == ContractedCost here
        else:
            assert got["ContractedUnitPrice"] is None and got["ListUnitPrice"] is None
    by_service = {r["ServiceName"]: (r["ServiceCategory"], r["ServiceSubcategory"], r["PricingUnit"]) for r in records}
    assert by_service == {
        "Argo Smart Routing": ("Networking", "Network Routing", "GB"),
        "Load Balancing": ("Networking", "Application Networking", "Count"),
        "R2 Storage": ("Storage", "Object Storage", "GB-Months"),
        "Workers Standard": ("Compute", "Serverless Compute", "Requests"),
    }


def test_the_older_paths_eleven_columns_get_every_focus_column_derived(sim: Any, use_conn: Any) -> None:
    use_conn(usage_path="/accounts/{account_id}/paygo-usage")
    records = run(billing_period_of="2025-10-01", focus_version="1.2")  # XCom: numbers as floats
    assert sim.request_count("/paygo-usage", status=200) == 1
    exact = served_period(sim)
    assert [r["ChargePeriodStart"] for r in records] == [r["ChargePeriodStart"] for r in exact]
    for got, want in zip(records, exact, strict=True):
        assert list(got) == [*FOCUS_1_2, *CUSTOM_1_2[:2], *CUSTOM_1_2[3:]]
        # Not sent on this path: the cost columns equal ContractedCost, the names are Cloudflare's documented ones.
        assert got["BilledCost"] == got["EffectiveCost"] == got["ListCost"] == float(want["ContractedCost"])
        assert got["BillingAccountId"] == STANDARD_ACCOUNT and got["BillingAccountName"] is None
        assert got["InvoiceIssuerName"] == "Cloudflare, Inc."
        assert got["ConsumedUnit"] == got["PricingUnit"] == focus_unit(want["ConsumedUnit"])


def test_zones_become_resources(sim: Any, use_conn: Any) -> None:
    records = run(account_id=LARGE_ACCOUNT, billing_period_of="2025-10-01", focus_version="1.2", max_xcom_bytes=None)
    exact = in_window(
        served(sim, LARGE_ACCOUNT, **{"from": "2025-10-01", "to": "2025-11-01"})[1], "2025-10-01", "2025-11-01"
    )
    assert len(records) == len(exact) > 0
    for got, want in zip(records, exact, strict=True):
        assert (got["ResourceId"], got["ResourceName"]) == (want["ZoneId"], want["ZoneName"]) != (None, None)
        assert "x_ZoneId" not in got and "ZoneId" not in got
        assert got["BillingPeriodEnd"] == "2025-11-01T00:00:00Z"


def test_billing_period_end_follows_the_anchor_across_two_periods(sim: Any, use_conn: Any) -> None:
    """Anchor on the 31st: the period starting 28 Feb 2025 ends on 31 March (not 28 March, the calendar month)."""
    records = run(account_id=ANCHOR31_ACCOUNT, from_="2025-02-27", to="2025-03-03", focus_version="1.2")
    ends = {(r["BillingPeriodStart"], r["BillingPeriodEnd"]) for r in records}
    assert ends == {
        ("2025-01-31T00:00:00Z", "2025-02-28T00:00:00Z"),
        ("2025-02-28T00:00:00Z", "2025-03-31T00:00:00Z"),
    }


def test_focus_1_3_adds_service_and_host_provider(sim: Any, use_conn: Any, tmp_path: Path) -> None:
    manifest = run(billing_period_of="2025-10-01", focus_version="1.3", destination=(tmp_path / "u.jsonl").as_uri())
    lines = [json.loads(line, parse_float=Decimal) for line in (tmp_path / "u.jsonl").read_text().splitlines()]
    assert len(lines) == manifest["rows"] == len(served_period(sim))
    expected = sorted([*FOCUS_1_2, "HostProviderName", "ServiceProviderName"])
    for line in lines:
        assert list(line) == [*expected, *CUSTOM_1_2[:2], *CUSTOM_1_2[3:]]
        assert line["ServiceProviderName"] == line["HostProviderName"] == line["ProviderName"] == "Cloudflare, Inc."


def test_parquet_types_the_focus_columns_and_sums_to_the_manifest_totals(
    sim: Any, use_conn: Any, tmp_path: Path
) -> None:
    manifest = run(billing_period_of="2025-10-01", focus_version="1.2", destination=(tmp_path / "u.parquet").as_uri())
    table = pq.read_table(tmp_path / "u.parquet")
    decimal = pa.decimal128(38, 18)
    utc_ms = pa.timestamp("ms", tz="UTC")
    types = {field.name: field.type for field in table.schema}
    assert list(types) == FOCUS_1_2 + CUSTOM_1_2
    for column in ("BilledCost", "ContractedCost", "ContractedUnitPrice", "EffectiveCost", "ListCost", "ListUnitPrice"):
        assert types[column] == decimal
    assert types["PricingQuantity"] == types["ConsumedQuantity"] == types["x_CumulatedContractedCost"] == decimal
    assert types["x_CumulatedPricingQuantity"] == pa.int64()
    for column in ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"):
        assert types[column] == utc_ms
    assert types["ServiceCategory"] == types["InvoiceId"] == pa.string()
    total = sum(table.column("BilledCost").to_pylist(), Decimal(0))
    assert (
        total
        == Decimal(manifest["totals"]["by_currency"]["USD"])
        == sum(r["ContractedCost"] for r in served_period(sim))
    )
    assert table.column("BillingPeriodEnd").to_pylist()[0] == dt.datetime(2025, 10, 14, tzinfo=dt.timezone.utc)


def test_csv_writes_decimal_columns_as_decimals(sim: Any, use_conn: Any, tmp_path: Path) -> None:
    run(billing_period_of="2025-10-01", focus_version="1.2", destination=(tmp_path / "u.csv").as_uri())
    rows = list(csv.DictReader(io.StringIO((tmp_path / "u.csv").read_text(encoding="utf-8"))))
    exact = served_period(sim)
    assert list(rows[0]) == FOCUS_1_2 + CUSTOM_1_2
    for row, want in zip(rows, exact, strict=True):
        # A whole quantity is written as a decimal literal: FOCUS types PricingQuantity as Decimal, and a CSV
        # reader infers "226" as an integer.
        assert "." in row["PricingQuantity"] and Decimal(row["PricingQuantity"]) == want["PricingQuantity"]
        assert Decimal(row["ContractedCost"]) == want["ContractedCost"]
        assert row["InvoiceId"] == "" and row["BillingPeriodEnd"] == "2025-10-14T00:00:00Z"


def test_an_empty_period_lands_the_focus_header(sim: Any, use_conn: Any, tmp_path: Path) -> None:
    run(
        account_id=EMPTY_ACCOUNT,
        billing_period_of="2025-10-01",
        focus_version="1.2",
        destination=(tmp_path / "u.csv").as_uri(),
    )
    header = (tmp_path / "u.csv").read_text(encoding="utf-8").splitlines()
    assert header == [",".join([*FOCUS_1_2, *CUSTOM_1_2[:2]])]
    run(
        account_id=EMPTY_ACCOUNT,
        billing_period_of="2025-10-01",
        focus_version="1.2",
        destination=(tmp_path / "u.parquet").as_uri(),
    )
    assert pq.read_table(tmp_path / "u.parquet").column_names == [*FOCUS_1_2, *CUSTOM_1_2[:2]]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1.4", r"focus_version='1.4' is not a FOCUS version.*'1\.2'.*'1\.3'.*None"),
        ("  ", r"focus_version='  ' is blank"),
        (True, r"focus_version=True is not a FOCUS version"),
    ],
)
def test_a_bad_focus_version_fails_before_any_request(sim: Any, use_conn: Any, value: Any, message: str) -> None:
    with pytest.raises(CloudflareBillingInputError, match=message):
        run(billing_period_of="2025-10-01", focus_version=value)
    assert sim.request_count() == 0


def test_focus_version_is_templated(sim: Any, use_conn: Any) -> None:
    from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator

    assert "focus_version" in CloudflarePaygoUsageOperator.template_fields


def test_focus_output_carries_no_credential(sim: Any, use_conn: Any, tmp_path: Path) -> None:
    for suffix in ("jsonl", "csv", "parquet"):
        run(billing_period_of="2025-10-01", focus_version="1.2", destination=(tmp_path / f"u.{suffix}").as_uri())
        assert SIM_TOKEN.encode() not in (tmp_path / f"u.{suffix}").read_bytes()


# -- the transform's rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        ("GB-months", "GB-Months"),
        ("GB-Month", "GB-Months"),
        ("requests/hour", "requests/Hour"),
        ("GB/Days", "GB/Day"),
        ("minutes", "Minutes"),
        ("Minutes", "Minutes"),
        ("Requests", "Requests"),
        ("GB", "GB"),
        ("", "Count"),
        (None, "Count"),
        ("Transformations", "Transformations"),
        ("vCPU-GB-hours", "vCPU-GB-Hours"),  # the unit after the last separator
        ("/hour", "/hour"),  # nothing before the separator: not a rate, left as sent
        ("GB-month.", "GB-month."),  # only a plural s is dropped to find a time unit
    ],
)
def test_units_are_put_in_the_focus_unit_format(unit: Any, expected: str) -> None:
    assert focus_unit(unit) == expected


def test_unit_prices_are_exact_quotients_rounded_once() -> None:
    assert unit_price(Decimal("0.75"), Decimal(150000)) == Decimal("0.000005")
    assert unit_price(Decimal("1"), Decimal(3)) == Decimal("0.333333333333333333")  # 18 places, half even
    assert unit_price(Decimal("2"), Decimal(3)) == Decimal("0.666666666666666667")
    assert unit_price(Decimal("0"), Decimal(0)) is None  # no price can be read off a zero quantity
    assert unit_price(Decimal("5"), None) is None
    # A cost with more digits than a double keeps: the quotient is computed in decimal, not binary.
    assert unit_price(Decimal("0.123456789012345678"), Decimal(1)) == Decimal("0.123456789012345678")
    # The largest cost Parquet's decimal(38, 18) holds: 38 digits, more than the default context's 28.
    largest = Decimal("99999999999999999999.999999999999999999")
    assert unit_price(largest, Decimal(1)) == largest


def test_unit_prices_are_written_without_trailing_zeros_and_a_free_one_at_full_scale() -> None:
    """The digits as the files write them (a zero price keeps its 18 places: landed files' bytes stay as they are)."""
    assert f"{unit_price(Decimal('0.75'), Decimal(150000)):f}" == "0.000005"
    assert f"{unit_price(Decimal('120'), Decimal(4)):f}" == "30"
    assert f"{unit_price(Decimal('0'), Decimal(5)):f}" == "0.000000000000000000"


@pytest.mark.parametrize(
    ("name", "family", "expected"),
    [
        ("Workers Standard", "Compute", ("Compute", "Serverless Compute")),
        ("Workers KV Reads", None, ("Databases", "NoSQL Databases")),  # the longest product name wins
        ("R2 Storage", "Storage", ("Storage", "Object Storage")),
        ("Quantum Widgets", "Storage", ("Storage", "Other (Storage)")),  # unknown: Cloudflare's family
        ("Quantum Widgets", "Gadgets", ("Other", "Other (Other)")),  # neither: Other
        ("Quantum Widgets", None, ("Other", "Other (Other)")),
        ("Workersfoo", None, ("Other", "Other (Other)")),  # whole words only
    ],
)
def test_service_categories(name: str, family: str | None, expected: tuple[str, str]) -> None:
    assert service_category(name, family) == expected


def test_a_billing_period_start_the_rule_does_not_know_is_refused_by_name() -> None:
    record = {"BillingPeriodStart": "2025-02-03T00:00:00Z", "ContractedCost": 1, "PricingQuantity": 1}
    ends = {dt.datetime(2025, 2, 1, tzinfo=dt.timezone.utc): dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)}
    view = FocusRecords([record], version="1.2", account_id=STANDARD_ACCOUNT, billing_period_ends=ends)
    with pytest.raises(
        CloudflareResponseError, match=r"BillingPeriodStart '2025-02-03T00:00:00Z'.*2025-02-01T00:00:00Z"
    ):
        list(view)


_UTC = dt.timezone.utc
_TWO_PERIODS = {
    dt.datetime(2025, 1, 1, tzinfo=_UTC): dt.datetime(2025, 2, 1, tzinfo=_UTC),
    dt.datetime(2025, 2, 1, tzinfo=_UTC): dt.datetime(2025, 3, 1, tzinfo=_UTC),
}


@pytest.mark.parametrize(
    ("start", "ends", "known"),
    [
        ("2025-02-03T00:00:00Z", _TWO_PERIODS, "2025-01-01T00:00:00Z, 2025-02-01T00:00:00Z"),
        ("2025-02-01T00:00:00Z", {}, "none"),
        # A period that ends where it starts is no period.
        (
            "2025-02-01T00:00:00Z",
            {dt.datetime(2025, 2, 1, tzinfo=_UTC): dt.datetime(2025, 2, 1, tzinfo=_UTC)},
            "2025-02-01T00:00:00Z",
        ),
    ],
    ids=["unknown start", "no periods", "empty period"],
)
def test_a_billing_period_end_that_cannot_be_derived_is_refused_with_the_known_periods(
    start: str, ends: dict[dt.datetime, dt.datetime], known: str
) -> None:
    record = {"BillingPeriodStart": start, "ContractedCost": 1}
    view = FocusRecords([record], version="1.2", account_id="acc-1", billing_period_ends=ends)
    with pytest.raises(CloudflareResponseError) as failure:
        list(view)
    assert str(failure.value) == (
        f"A usage record of account acc-1 has BillingPeriodStart {start!r}, which does not start a billing period "
        "of the account's cycle as computed from its billing-cycle anchor (periods known: "
        f"{known}), so its BillingPeriodEnd cannot be derived and no FOCUS file was written. For an account with "
        "several subscriptions, pass the subscription_id whose cycle bills this usage; otherwise land it without "
        "focus_version and report it."
    )


@pytest.mark.parametrize(
    ("start", "message"),
    [
        ("yesterday", "Column BillingPeriodStart holds 'yesterday', which is not an ISO 8601 date-time."),
        (["2025-02-01"], "Column BillingPeriodStart holds ['2025-02-01'], which is not an ISO 8601 date-time."),
    ],
)
def test_a_billing_period_start_that_is_no_date_time_is_refused_by_its_column(start: Any, message: str) -> None:
    record = {"BillingPeriodStart": start, "ContractedCost": 1}
    view = FocusRecords([record], version="1.2", account_id="acc-1", billing_period_ends=_TWO_PERIODS)
    with pytest.raises(CloudflareResponseError) as failure:
        list(view)
    assert str(failure.value) == message


@pytest.fixture
def new_york_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is America/New_York for the test (a worker not set to UTC)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("new_york_host")
def test_billing_period_end_is_written_in_utc_whatever_the_hosts_time_zone() -> None:
    assert dt.datetime(2025, 3, 1, tzinfo=_UTC).astimezone().utcoffset() == dt.timedelta(hours=-5)  # the zone took
    plus_two = dt.timezone(dt.timedelta(hours=2))
    ends = {dt.datetime(2025, 2, 1, tzinfo=_UTC): dt.datetime(2025, 3, 1, 2, tzinfo=plus_two)}  # 1 March 00:00 UTC
    record = {"BillingPeriodStart": "2025-02-01T00:00:00Z", "ContractedCost": 1}
    (focus,) = list(FocusRecords([record], version="1.2", account_id="acc-1", billing_period_ends=ends))
    assert focus["BillingPeriodEnd"] == "2025-03-01T00:00:00Z"


def test_every_source_column_lands_once() -> None:
    """Nothing dropped: each of Cloudflare's columns is a FOCUS column, feeds a renamed one, or is kept as x_."""
    record = {
        "BillingPeriodStart": "2025-02-01T00:00:00Z",
        "ContractedCost": 1.5,
        "PricingQuantity": 3,
        "CumulatedContractedCost": 1.5,
        "CumulatedPricingQuantity": 3,
        "ServiceName": "Workers Standard",
        "ZoneId": "z",
        "ZoneName": "example.com",
        "ServiceProviderName": "Cloudflare, Inc.",
        "SomethingNew": {"a": 1},
    }
    ends = {dt.datetime(2025, 2, 1, tzinfo=dt.timezone.utc): dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)}
    view = FocusRecords([record], version="1.2", account_id=STANDARD_ACCOUNT, billing_period_ends=ends)
    (focus,) = list(view)
    assert list(focus) == list(view.column_types)
    assert focus["x_SomethingNew"] == {"a": 1} and view.column_types["x_SomethingNew"] == "string"
    assert (focus["ResourceId"], focus["ResourceName"], focus["ProviderName"]) == (
        "z",
        "example.com",
        "Cloudflare, Inc.",
    )
    assert focus["ContractedUnitPrice"] == Decimal("0.5") and focus["ContractedCost"] == Decimal("1.5")
    assert not any(c.startswith("x_") and c[2:] in FOCUS_COLUMNS["1.2"] for c in focus)


def test_values_cloudflare_sends_win_over_the_derived_ones() -> None:
    """Sent costs, account id and family are kept, not replaced by ContractedCost, the account asked for or Other."""
    record = {
        "BillingPeriodStart": "2025-02-01T00:00:00Z",
        "ContractedCost": Decimal("3.00"),
        "ListCost": Decimal("4.50"),
        "BilledCost": Decimal("2.40"),
        "EffectiveCost": Decimal("2.70"),
        "PricingQuantity": 3,
        "BillingAccountId": "billing-parent-account",
        "ServiceName": "Quantum Widgets",  # not in the service table: the family decides the category
        "ServiceFamilyName": "Storage",
        "CumulatedContractedCost": 0.1,  # a float (a record built by hand): the decimal its repr shows
    }
    focus = february_focus(record, "1.2")
    costs = ("ContractedCost", "ListCost", "BilledCost", "EffectiveCost", "ContractedUnitPrice", "ListUnitPrice")
    assert [focus[column] for column in costs] == [
        Decimal("3.00"),
        Decimal("4.50"),
        Decimal("2.40"),
        Decimal("2.70"),
        Decimal("1"),
        Decimal("1.5"),  # the sent ListCost over the quantity, not ContractedCost's
    ]
    assert focus["BillingAccountId"] == "billing-parent-account"
    assert (focus["ServiceCategory"], focus["ServiceSubcategory"]) == ("Storage", "Other (Storage)")
    assert focus["x_ServiceFamilyName"] == "Storage"
    assert focus["x_CumulatedContractedCost"] == Decimal("0.1")
    assert focus["ConsumedQuantity"] is None and focus["ConsumedUnit"] is None  # no quantity, no unit


def test_focus_1_3_derives_every_name_the_older_paths_do_not_send() -> None:
    """No provider, host, issuer or charge columns sent: Cloudflare's documented values, the service's name."""
    record = {
        "BillingPeriodStart": "2025-02-01T00:00:00Z",
        "ContractedCost": Decimal("2"),
        "PricingQuantity": 4,
        "ConsumedQuantity": Decimal("4"),
        "ConsumedUnit": "GB-month",
        "ServiceName": "R2 Storage",
    }
    focus = february_focus(record, "1.3")
    columns = (
        "ProviderName", "ServiceProviderName", "HostProviderName", "PublisherName", "InvoiceIssuerName",
        "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency", "PricingCategory", "ConsumedUnit",
        "PricingUnit", "BillingAccountId", "BilledCost", "EffectiveCost", "ListCost",
    )  # fmt: skip
    assert [focus[column] for column in columns] == [
        *["Cloudflare, Inc."] * 5,
        "Usage",
        None,
        "R2 Storage",
        "Usage-Based",
        "Standard",
        "GB-Months",
        "GB-Months",
        STANDARD_ACCOUNT,
        *[Decimal("2")] * 3,
    ]


def test_names_and_charge_columns_cloudflare_sends_are_kept_in_focus_1_3() -> None:
    """Sent charge, issuer, provider, host and pricing-unit values win over Cloudflare's documented defaults."""
    record = {
        "BillingPeriodStart": "2025-02-01T00:00:00Z",
        "ContractedCost": Decimal("2"),
        "PricingQuantity": 4,
        "ConsumedQuantity": Decimal("4000000"),
        "ConsumedUnit": "requests",
        "PricingUnit": "million requests",
        "ServiceName": "Workers Standard",
        "ChargeCategory": "Adjustment",
        "ChargeClass": "Correction",
        "ChargeDescription": "Workers requests above the included ten million",
        "InvoiceIssuerName": "Cloudflare Ltd",
        "ServiceProviderName": "Example Reseller",
        "HostProviderName": "Example Host",
    }
    focus = february_focus(record, "1.3")
    columns = (
        "ChargeCategory", "ChargeClass", "ChargeDescription", "InvoiceIssuerName", "ProviderName",
        "ServiceProviderName", "HostProviderName", "PublisherName", "ConsumedUnit", "PricingUnit",
    )  # fmt: skip
    assert [focus[column] for column in columns] == [
        "Adjustment",
        "Correction",
        "Workers requests above the included ten million",
        "Cloudflare Ltd",
        "Example Reseller",
        "Example Reseller",
        "Example Host",
        "Cloudflare, Inc.",  # never sent: Cloudflare publishes its own services
        "requests",
        "million requests",
    ]


def test_a_focus_cost_that_is_not_a_number_is_refused_by_its_column() -> None:
    record = {"BillingPeriodStart": "2025-02-01T00:00:00Z", "ContractedCost": 1, "ListCost": "n/a"}
    ends = {dt.datetime(2025, 2, 1, tzinfo=dt.timezone.utc): dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)}
    view = FocusRecords([record], version="1.2", account_id=STANDARD_ACCOUNT, billing_period_ends=ends)
    with pytest.raises(CloudflareResponseError) as failure:
        list(view)
    assert str(failure.value) == "Column ListCost holds 'n/a', which is not a number."


def test_the_service_table_names_real_products() -> None:
    assert all(name == name.strip() and "  " not in name for name in SERVICE_CATEGORIES)


def test_focus_records_through_a_real_dag_run_and_xcom(sim: Any, use_conn: Any, dag_runner: Any) -> None:
    """The version comes from a template; the records cross Airflow's XCom store and read back exactly."""
    from airflow.sdk.bases.xcom import BaseXCom

    result = dag_runner(Path(__file__).parent / "dags" / "operator_focus.py", "operator_focus")
    assert result.task_states == {"land": "success"}
    # Read back as a downstream task's xcom_pull would (deserialize_value takes the stored row).
    records = BaseXCom.deserialize_value(type("StoredXCom", (), {"value": result.xcom("land")})())
    exact = served_period(sim)
    assert [list(r) for r in records] == [FOCUS_1_2 + CUSTOM_1_2] * len(exact)
    for got, want in zip(records, exact, strict=True):
        # XCom carries numbers as floats (Airflow's serialisation): exact to the digits Cloudflare sends.
        assert Decimal(str(got["ContractedCost"])) == want["ContractedCost"]
        assert got["ServiceCategory"] and got["BillingPeriodEnd"] == "2025-10-14T00:00:00Z"
