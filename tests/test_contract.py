"""Every answer the simulator gives, validated against Cloudflare's published response schemas.

The schemas are a vendored copy (``tests/data/cloudflare-billing-schema.json``, source in its
``$comment``), in OpenAPI 3.0 flavour; :func:`to_json_schema` turns ``nullable`` into JSON Schema.
"""

from __future__ import annotations

import copy
import decimal
import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from conftest import run_operator

from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook
from airflow_provider_cfbilling.sensors.billing import CloudflareBillingPeriodSensor
from airflow_provider_cfbilling.testing.simulator import (
    ACCOUNTS,
    CANCELLED_ACCOUNT,
    LARGE_ACCOUNT,
    SIM_TOKEN,
    STANDARD_ACCOUNT,
    CloudflareSimulator,
)
from airflow_provider_cfbilling.utils.formats import column_order

SCHEMAS = json.loads((Path(__file__).parent / "data" / "cloudflare-billing-schema.json").read_text())
BEARER = {"Authorization": f"Bearer {SIM_TOKEN}"}
USAGE_ROUTES = {"billable-usage": "billable_usage", "paygo-usage": "paygo_usage", "billing/usage/paygo": "paygo_usage"}
INFO_ROUTES = ("billable-usage/info", "paygo-usage-info")
WINDOWS = ({}, {"from": "2025-01-14", "to": "2025-02-20"}, {"from": "2024-02-01", "to": "2024-03-31"})


def to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` -> JSON Schema ``type: [t, "null"]`` (recursively)."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    converted = {k: to_json_schema(v) for k, v in node.items() if k not in ("nullable", "example")}
    if node.get("nullable"):
        converted["type"] = [node["type"], "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
    return converted


def strict_response_schema(name: str) -> dict[str, Any]:
    """``{name}_response`` whose records allow only the published properties (a misspelt or
    extra field fails)."""
    schema = to_json_schema(copy.deepcopy(SCHEMAS[f"{name}_response"]))
    schema["properties"]["result"]["items"]["additionalProperties"] = False
    return schema


def validate(instance: Any, schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(instance)


@pytest.fixture(scope="module")
def sim():
    with CloudflareSimulator(today=date(2025, 3, 20), large_zones=2) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _fresh(sim):
    sim.reset()


def get(sim: CloudflareSimulator, account: str, route: str, **params: str) -> requests.Response:
    return requests.get(f"{sim.url}/accounts/{account}/{route}", headers=BEARER, params=params, timeout=30)


def test_to_json_schema_helper():
    converted = to_json_schema({"type": "string", "nullable": True, "example": "x", "enum": ["a"]})
    assert converted == {"type": ["string", "null"], "enum": ["a", None]}
    assert to_json_schema({"type": "integer"}) == {"type": "integer"}


def test_the_validator_rejects_broken_answers(sim):
    """The contract tests can fail: each deliberately broken answer is refused."""
    good = json.loads(get(sim, STANDARD_ACCOUNT, "billable-usage").text)
    schema = strict_response_schema("billable_usage")
    validate(good, schema)
    breakages = [
        lambda b: b["result"][0].pop("InvoiceIssuerName"),  # required field missing
        lambda b: b["result"][0].update(ServiceFamilyName=None),  # not nullable
        lambda b: b["result"][0].update(BilledCosts=1.0),  # misspelt extra field
        lambda b: b["result"][0].update(CumulatedPricingQuantity=1.5),  # integer expected
        lambda b: b["result"][0].update(ChargeCategory="Purchase"),  # enum
        lambda b: b.update(success=False),
    ]
    for breakage in breakages:
        broken = copy.deepcopy(good)
        breakage(broken)
        with pytest.raises(jsonschema.ValidationError):
            validate(broken, schema)
    info = json.loads(get(sim, STANDARD_ACCOUNT, "billable-usage/info").text)
    info["result"]["subscriptions"][0]["end_timestamp"] = None  # never null
    with pytest.raises(jsonschema.ValidationError):
        validate(info, to_json_schema(SCHEMAS["info_response"]))


@pytest.mark.parametrize("account", sorted(ACCOUNTS))
def test_every_usage_answer_matches_its_routes_schema(sim, account):
    sim.set_window_rules(False)  # so every window has rows for every account with usage
    for route, name in USAGE_ROUTES.items():
        for window in WINDOWS:
            response = get(sim, account, route, **window)
            assert response.status_code == 200, (route, window, response.text)
            validate(json.loads(response.text), strict_response_schema(name))


@pytest.mark.parametrize("account", sorted(ACCOUNTS))
def test_every_info_answer_matches_the_schema(sim, account):
    for route in INFO_ROUTES:
        body = json.loads(get(sim, account, route).text)
        validate(body, to_json_schema(SCHEMAS["info_response"]))
        for subscription in body["result"]["subscriptions"]:
            assert ("end_timestamp" in subscription) == (account == CANCELLED_ACCOUNT)


def test_documented_values(sim):
    sim.set_window_rules(False)
    for account in ACCOUNTS:
        rows = json.loads(get(sim, account, "billable-usage", **{"from": "2025-01-01", "to": "2025-03-19"}).text)
        for row in rows["result"]:
            assert row["HostProviderName"] == row["ServiceProviderName"] == row["InvoiceIssuerName"]
            assert row["InvoiceIssuerName"] == "Cloudflare, Inc."
            assert row["BillingAccountId"] == account
            assert len(row["SubscriptionId"]) == 26 and row["SubscriptionId"].isupper()
            assert row["PricingUnit"] and isinstance(row["ServiceFamilyName"], str)
            assert row["BilledCost"] == row["EffectiveCost"] == row["ListCost"] == row["ContractedCost"]
            if row["ServiceName"] == "Load Balancing":
                assert row["ConsumedUnit"] == "" and row["PricingUnit"] == "Count"
            assert (row["ZoneId"] is None) == (account != LARGE_ACCOUNT)


def test_error_answers_match_failure_response(sim):
    schema = to_json_schema(SCHEMAS["failure_response"])
    answers = [
        requests.get(f"{sim.url}/accounts/{STANDARD_ACCOUNT}/billable-usage", timeout=10),  # 9106
        requests.get(f"{sim.url}/accounts/not-an-id/billable-usage", headers=BEARER, timeout=10),  # 7003
        requests.get(f"{sim.url}/nowhere", headers=BEARER, timeout=10),  # 7000
        get(sim, STANDARD_ACCOUNT, "billable-usage", **{"from": "2025-02-01"}),  # 1183
        get(sim, STANDARD_ACCOUNT, "billing/usage/paygo", **{"from": "2024-01-01", "to": "2024-06-01"}),  # 62 days
        get(sim, "0123456789abcdef0123456789abcdef", "billable-usage"),  # 9109
    ]
    sim.add_fault("path_moved", times=1, status=400)
    answers.append(get(sim, STANDARD_ACCOUNT, "billing/usage/paygo"))
    sim.add_fault("rate_limit", times=1)
    answers.append(get(sim, STANDARD_ACCOUNT, "billable-usage"))
    sim.add_fault("success_false", times=1)
    answers.append(get(sim, STANDARD_ACCOUNT, "billable-usage"))
    for response in answers:
        validate(json.loads(response.text), schema)
    assert [r.status_code for r in answers] == [400, 404, 404, 400, 400, 403, 400, 429, 200]


UNUSUAL = [
    ("envelope_variant", {"errors": None, "messages": None}),
    ("envelope_variant", {"messages": [{"code": 1, "message": "note"}], "result_info": {"count": 3}}),
    ("timestamp_style", {"style": "fractional"}),
    ("timestamp_style", {"style": "offset"}),
    ("long_decimals", {"digits": 38}),
    ("huge_integer", {}),
]


@pytest.mark.parametrize(("kind", "params"), UNUSUAL, ids=[f"{k}-{i}" for i, (k, _) in enumerate(UNUSUAL)])
def test_valid_but_unusual_answers_still_match_the_schema(sim, kind, params):
    for route, name in USAGE_ROUTES.items():
        sim.add_fault(kind, times=1, **params)
        validate(json.loads(get(sim, STANDARD_ACCOUNT, route).text), strict_response_schema(name))
    for route in INFO_ROUTES:
        sim.add_fault(kind, times=1, **params)
        validate(json.loads(get(sim, STANDARD_ACCOUNT, route).text), to_json_schema(SCHEMAS["info_response"]))


# -- the hook, the operator and the sensor fed the published examples and the unusual-but-valid answers -------


@pytest.fixture
def conn(sim, cloudflare_conn):
    """``cloudflare_default`` on this module's simulator; the hook's per-process memory of moved paths cleared."""
    from airflow_provider_cfbilling.hooks import billing

    with billing._learned_paths_lock:
        billing._learned_paths.clear()
    yield cloudflare_conn
    with billing._learned_paths_lock:
        billing._learned_paths.clear()


def schema_example(record: str) -> dict[str, Any]:
    """The published schema's own example record: each property's ``example``."""
    return {name: spec["example"] for name, spec in SCHEMAS[record]["properties"].items() if "example" in spec}


def exact(response: requests.Response) -> Any:
    return json.loads(response.content, parse_float=Decimal)["result"]


EXAMPLE_RECORD = schema_example("paygo_usage_record")
EXAMPLE_INFO = {
    "covered": True,
    "subscriptions": [
        {
            "id": EXAMPLE_RECORD["SubscriptionId"],
            "billing_cycle_anchor_timestamp": "2024-11-01T09:30:00Z",
            "start_timestamp": "2024-11-01T09:30:00Z",
        }
    ],
}


def test_the_published_example_feeds_the_hook_the_operator_and_the_sensor(sim, conn, tmp_path):
    """The schema's example record (on the older /paygo-usage, whose record it completes) as the whole answer:
    the documented path answers 'no route', so the hook falls back to it, as for an account not yet moved."""
    answer = {"success": True, "errors": [], "messages": [], "result": [EXAMPLE_RECORD]}
    validate(answer, strict_response_schema("paygo_usage"))  # the example is a valid answer
    validate({**answer, "result": EXAMPLE_INFO}, to_json_schema(SCHEMAS["info_response"]))
    sim.add_fault("path_moved", routes=["billable-usage"])
    sim.add_fault("canned_result", routes=["paygo-usage"], result=[EXAMPLE_RECORD])
    sim.add_fault("canned_result", routes=["billable-usage/info"], result=EXAMPLE_INFO)

    (record,) = CloudflareBillingHook().get_paygo_usage()
    assert record == {**EXAMPLE_RECORD, "ContractedCost": Decimal("0.75"), "CumulatedContractedCost": Decimal("2.25")}

    for suffix in ("jsonl", "parquet"):
        manifest = run_operator(billing_period_of="2025-02-10", destination=(tmp_path / f"usage.{suffix}").as_uri())
        assert manifest["window"] == {"kind": "billing_period", "from": "2025-02-01", "to": "2025-03-01"}
        assert (manifest["rows"], manifest["totals"]["by_currency"]) == (1, {"USD": "0.75"})
        # The example's running total (2.25) is not its day's cost (0.75) on the period's first day: reported
        # in exact figures, not hidden.
        (mismatch,) = manifest["reconciliation"]["mismatches"]
        assert (mismatch["movement"], mismatch["difference"]) == ("2.25", "-1.5")
    line = (tmp_path / "usage.jsonl").read_text()
    assert json.loads(line, parse_float=Decimal) == record and '"ContractedCost":0.75,' in line

    period = CloudflareBillingPeriodSensor(task_id="wait", target="2025-01-15").execute({})
    assert period == {
        "account_id": STANDARD_ACCOUNT,
        "subscription_id": EXAMPLE_RECORD["SubscriptionId"],
        "anchor": "2024-11-01T09:30:00Z",
        "start": "2025-01-01T00:00:00Z",
        "end": "2025-02-01T00:00:00Z",  # the example's BillingPeriodStart: the API has moved on
        "source": "info",
    }


@pytest.mark.parametrize(("kind", "params"), UNUSUAL, ids=[f"{k}-{i}" for i, (k, _) in enumerate(UNUSUAL)])
def test_valid_but_unusual_answers_feed_the_hook_the_operator_and_the_sensor(sim, conn, tmp_path, kind, params):
    """Each unusual answer gives the API's exact values through the hook, the same file the API's text
    implies, and the same billing period as the usual answer."""
    usual_period = CloudflareBillingPeriodSensor(task_id="wait", target="2025-02-20").execute({})
    sim.add_fault(kind, **params)
    served = exact(get(sim, STANDARD_ACCOUNT, "billable-usage"))

    assert CloudflareBillingHook().get_paygo_usage() == served
    with CloudflareBillingHook().download_paygo_usage(directory=str(tmp_path)) as spooled:
        assert list(spooled) == served

    target = tmp_path / "usage.jsonl"
    manifest = run_operator(destination=target.as_uri())
    landed = [json.loads(line, parse_float=Decimal) for line in target.read_text().splitlines()]
    assert landed == [{c: r[c] for c in column_order(served) if c in r} for r in served]
    with decimal.localcontext(prec=100):  # 38-digit costs: the default 28 digits would round the sum
        assert Decimal(manifest["totals"]["by_currency"]["USD"]) == sum(r["ContractedCost"] for r in served)
    assert manifest["reconciliation"]["ok"] is True
    as_xcom = run_operator()
    assert [r["ContractedCost"] for r in as_xcom] == [float(r["ContractedCost"]) for r in served]

    assert CloudflareBillingPeriodSensor(task_id="wait", target="2025-02-20").execute({}) == usual_period
    assert usual_period["start"] == "2025-02-14T00:00:00Z"
