"""The simulated accounts: their subscriptions, billed services and the documented record columns.

Plain data, no HTTP. ``ACCOUNTS`` is the fixed catalogue (see the package docstring); a simulator
may add deterministic generated accounts (:func:`generated_account`) for fan-out tests.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

STANDARD_ACCOUNT = "023e105f4ecef8ad9ca31a8372d0c353"
ANCHOR31_ACCOUNT = "31e5a2c0d4b34f1e9a7b6c5d4e3f2a31"
ANCHOR29_ACCOUNT = "29a1c0ffee29a1c0ffee29a1c0ffee29"
FOCUS_ACCOUNT = "f0c513a9b8c7d6e5f4a3b2c1d0e9f813"
CANCELLED_ACCOUNT = "cace11ed0cace11ed0cace11ed0cace1"
EMPTY_ACCOUNT = "e3b0c44298fc1c149afbf4c8996fb924"
LARGE_ACCOUNT = "b16b16b16b16b16b16b16b16b16b16b1"

#: The 11 fields every usage record carries on every path (required in Cloudflare's published
#: ``paygo_usage_record`` and ``billable_usage_record``), in alphabetical order.
PAYGO_REQUIRED_COLUMNS: tuple[str, ...] = (
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
)
_PAYGO_OPTIONAL_COLUMNS = ("ServiceFamilyName", "SubscriptionId", "ZoneId", "ZoneName")
#: The record of ``/paygo-usage`` and ``/billing/usage/paygo``: the 11 required fields, then the 4
#: optional ones of the published ``paygo_usage_record``.
PAYGO_USAGE_COLUMNS: tuple[str, ...] = PAYGO_REQUIRED_COLUMNS + _PAYGO_OPTIONAL_COLUMNS
#: The 27 fields of a ``/billable-usage`` record (``billable_usage_record``): the 11 required on
#: every path, the 12 newer FOCUS 1.3 columns (alphabetical), then the 4 optional ones.
BILLABLE_USAGE_COLUMNS: tuple[str, ...] = (
    *PAYGO_REQUIRED_COLUMNS,
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
    "ServiceProviderName",
    *_PAYGO_OPTIONAL_COLUMNS,
)
#: The ``/billable-usage`` columns beyond the 11 required on every path.
FOCUS_EXTRA_COLUMNS: tuple[str, ...] = tuple(c for c in BILLABLE_USAGE_COLUMNS if c not in PAYGO_REQUIRED_COLUMNS)
#: Columns that are null except on the zone-level LARGE_ACCOUNT.
ZONE_COLUMNS: tuple[str, ...] = ("ZoneId", "ZoneName")

#: Documented value of HostProviderName, ServiceProviderName and InvoiceIssuerName.
CLOUDFLARE_INC = "Cloudflare, Inc."


@dataclass(frozen=True)
class SimService:
    """One billed service. Daily ConsumedQuantity is drawn from [daily_min, daily_max].

    :param pricing_unit: FOCUS PricingUnit; never empty (``"Count"`` when the unit is implicit).
    :param included_daily: free allowance per day: PricingQuantity = max(0, consumed - included).
    :param description: ChargeDescription (None -> JSON null).
    """

    name: str
    unit: str
    unit_price: Decimal
    daily_min: int
    daily_max: int
    family: str
    pricing_unit: str
    included_daily: int = 0
    description: str | None = None


@dataclass(frozen=True)
class SimSubscription:
    """A subscription: its anchor (the moment of the first paid purchase) and, once cancelled, its end.

    Periods start on the anchor's UTC day (00:00Z), whatever its time of day.
    """

    id: str
    anchor: date
    anchor_time: time = time(0)
    end: datetime | None = None

    @property
    def anchor_timestamp(self) -> str:
        return f"{self.anchor.isoformat()}T{self.anchor_time.isoformat(timespec='seconds')}Z"

    @property
    def end_timestamp(self) -> str | None:
        return None if self.end is None else self.end.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SimAccount:
    """How the simulator fakes one account. Usage follows the first subscription (its periods and
    its anchor day for the window rule) and stops on the day that subscription ends.

    :param billing_name: BillingAccountName of the rows (documented as nullable).
    """

    account_id: str
    name: str
    billing_name: str | None
    subscriptions: tuple[SimSubscription, ...]
    services: tuple[SimService, ...]
    zone_breakdown: bool = False
    has_usage: bool = True

    @property
    def anchor(self) -> date:
        return self.subscriptions[0].anchor

    @property
    def usage_end(self) -> date | None:
        """First day without usage once the usage-bearing subscription was cancelled."""
        end = self.subscriptions[0].end
        if end is None:
            return None
        return end.date() if end.time() == time(0) else end.date() + timedelta(days=1)

    @property
    def service_names(self) -> tuple[str, ...]:
        return tuple(sorted(s.name for s in self.services))

    @property
    def created_on(self) -> str:
        """Account creation: a deterministic moment a few weeks before the first anchor."""
        created = datetime.combine(self.anchor, time(8, 0), timezone.utc) - timedelta(days=30)
        return created.strftime("%Y-%m-%dT%H:%M:%SZ")


def subscription_id(account_id: str, index: int) -> str:
    """A 26-character upper-case tag like Cloudflare's (``3F3CD4CQ6N7FXO7IK6NVFJBOYA``)."""
    digest = hashlib.blake2b(f"{account_id}|subscription|{index}".encode(), digest_size=16).digest()
    return base64.b32encode(digest).decode().rstrip("=")


def _account(
    account_id: str,
    name: str,
    billing_name: str | None,
    anchors: Sequence[datetime],
    services: Sequence[SimService],
    *,
    ended: datetime | None = None,
    **flags: bool,
) -> SimAccount:
    subscriptions = tuple(
        SimSubscription(subscription_id(account_id, i), a.date(), a.time(), ended if i == 0 else None)
        for i, a in enumerate(anchors)
    )
    return SimAccount(account_id, name, billing_name, subscriptions, tuple(services), **flags)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# Workers Standard at 150,000 requests -> 0.75 USD (the published schema's example).
_WORKERS = SimService(
    "Workers Standard", "Requests", Decimal("0.000005"), 50_000, 300_000, "Compute", "Requests",
    description="Workers Standard requests",
)  # fmt: skip
_R2 = SimService(
    "R2 Storage", "GB-months", Decimal("0.015"), 8, 60, "Storage", "GB-months", included_daily=10,
    description="R2 Storage, Standard class",
)  # fmt: skip
_ARGO = SimService("Argo Smart Routing", "GB", Decimal("0.1"), 5, 400, "Networking", "GB")
# Empty ConsumedUnit, as documented for Load Balancing (PricingUnit is never empty: "Count"); a
# 7-decimal price makes quantization to 6 places actually round.
_LOAD_BALANCING = SimService(
    "Load Balancing", "", Decimal("0.0001333"), 1_000, 20_000, "Networking", "Count",
    description="Load Balancing DNS queries",
)  # fmt: skip
_STREAM = SimService(
    "Stream Minutes Delivered", "Minutes", Decimal("0.001"), 100, 9_000, "Media", "Minutes",
    description="Stream minutes delivered",
)  # fmt: skip
_IMAGES = SimService("Images Transformations", "Transformations", Decimal("0.0005"), 0, 4_000, "Media", "Count")
_LARGE_SERVICES = (
    SimService("Argo Smart Routing", "GB", Decimal("0.1"), 0, 50, "Networking", "GB"),
    SimService("Image Resizing", "Requests", Decimal("0.00002"), 10, 20_000, "Media", "Requests"),
    _LOAD_BALANCING,
    SimService("Workers Standard", "Requests", Decimal("0.000005"), 100, 50_000, "Compute", "Requests"),
)
_ALL_SERVICES = (_WORKERS, _R2, _ARGO, _LOAD_BALANCING, _STREAM, _IMAGES)

ACCOUNTS: dict[str, SimAccount] = {
    a.account_id: a
    for a in (
        _account(
            STANDARD_ACCOUNT,
            "Standard PayGo account",
            "Standard PayGo account",
            [_at("2025-01-14T00:00:00")],
            [_WORKERS, _R2, _ARGO, _LOAD_BALANCING],
        ),
        _account(ANCHOR31_ACCOUNT, "Anchor-31 account", None, [_at("2024-01-31T00:00:00")], [_WORKERS, _R2, _STREAM]),
        _account(
            ANCHOR29_ACCOUNT,
            "Anchor-29 account",
            "Anchor-29 account",
            [_at("2024-01-29T21:07:33")],
            [_WORKERS, _LOAD_BALANCING],
        ),
        _account(
            FOCUS_ACCOUNT,
            "Two-subscription account",
            None,
            [_at("2025-06-01T00:00:00"), _at("2025-09-20T00:00:00")],
            [_WORKERS, _R2, _IMAGES],
        ),
        _account(
            CANCELLED_ACCOUNT,
            "Cancelled account",
            "Cancelled account",
            [_at("2024-03-17T13:45:12")],
            [_WORKERS, _STREAM],
            ended=_at("2025-02-20T10:00:00"),
        ),
        _account(EMPTY_ACCOUNT, "Empty account", None, [_at("2025-03-05T00:00:00")], [_WORKERS], has_usage=False),
        _account(
            LARGE_ACCOUNT,
            "Large zone-level account",
            "Large zone-level account",
            [_at("2025-01-01T00:00:00")],
            _LARGE_SERVICES,
            zone_breakdown=True,
        ),
    )
}


def generated_account(index: int) -> SimAccount:
    """The ``index``-th generated account: the same id, anchor and services in every simulator."""
    digest = hashlib.blake2b(f"generated-account|{index}".encode(), digest_size=16).digest()
    account_id = digest.hex()
    seed = int.from_bytes(digest[:8], "big")
    # Anchors spread over days 1..31 (so some clamp) and over the hours of a day.
    anchor = datetime(2024, 1 + index % 12, 1, seed % 24, (seed >> 8) % 60, (seed >> 16) % 60)
    day = 1 + (seed >> 24) % 31
    while True:
        try:
            anchor = anchor.replace(day=day)
            break
        except ValueError:  # a 31st in a 30-day month: the anchor moves to an existing day
            day -= 1
    first = (seed >> 32) % len(_ALL_SERVICES)
    services = [_ALL_SERVICES[(first + n) % len(_ALL_SERVICES)] for n in range(2 + index % 2)]
    name = f"Generated account {index:03d}"
    return _account(account_id, name, name if index % 2 == 0 else None, [anchor], services)


def large_zones_for(rows: int, days: int = 31) -> int:
    """Zones LARGE_ACCOUNT needs so that ``days`` days give at least ``rows`` rows."""
    per_zone = days * len(ACCOUNTS[LARGE_ACCOUNT].services)
    return max(1, math.ceil(rows / per_zone))
