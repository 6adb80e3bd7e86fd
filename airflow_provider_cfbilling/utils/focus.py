"""Cloudflare's usage records as a FOCUS cost-and-usage dataset (FOCUS 1.2, or 1.3): a pure transform, no I/O.

Cloudflare names its columns after FOCUS, but its answer is not a FOCUS dataset: mandatory columns are
missing (BillingPeriodEnd, ProviderName, PublisherName, ServiceCategory, and on the older paths every cost
column but ContractedCost), units are not in FOCUS's unit format, and Cloudflare-specific columns carry no
``x_`` prefix. :class:`FocusRecords` turns the records into one, deriving only what the API's data and
Cloudflare's documentation determine (docs/focus.md has the column-by-column mapping):

* Values Cloudflare sends are kept (a served ``BilledCost`` or ``InvoiceIssuerName`` wins over a derived one).
* Derived: BillingPeriodEnd (given by the caller, from the billing-cycle anchor); provider, publisher and
  issuer names (``Cloudflare, Inc.``, as Cloudflare documents); BillingAccountId (the account asked for);
  ChargeCategory ``Usage``, ChargeFrequency ``Usage-Based``, PricingCategory ``Standard`` (PayGo usage at
  public list prices); BilledCost = EffectiveCost = ListCost = ContractedCost where they are not sent (no
  discount, commitment or negotiated price applies to PayGo); unit prices as cost / PricingQuantity when
  the quantity is positive; ServiceCategory / ServiceSubcategory from :mod:`.focus_services`; units in
  FOCUS's unit format; zones as ResourceId / ResourceName; ChargeDescription, when not sent, the service's
  name (the charge is that service's usage).
* Not derivable, left null as FOCUS allows: BillingAccountName (when not sent), ChargeClass, InvoiceId (the
  usage API does not link a charge to its invoice).
* Every other column Cloudflare sends is kept, prefixed ``x_`` as FOCUS requires of provider columns.

Money stays exact: every decimal column is a :class:`~decimal.Decimal` read from the API's value (see
:func:`~airflow_provider_cfbilling.utils.formats.to_decimal`), never float arithmetic. A unit price is a
quotient, so it is rounded once, half to even, to :data:`UNIT_PRICE_PLACES` decimal places (the scale of
the Parquet decimal columns, so every format holds the same digits); unit price x PricingQuantity then
differs from the cost by at most half a unit in the 18th place times the quantity.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from airflow_provider_cfbilling.exceptions import CloudflareBillingInputError, CloudflareResponseError
from airflow_provider_cfbilling.utils.focus_services import service_category
from airflow_provider_cfbilling.utils.formats import (
    DECIMAL_KIND,
    INTEGER_KIND,
    STRING_KIND,
    TIMESTAMP_KIND,
    Records,
    to_decimal,
    to_utc_timestamp,
)

FOCUS_VERSIONS: tuple[str, ...] = ("1.2", "1.3")
#: The provider, publisher and invoice issuer Cloudflare documents for its own services.
CLOUDFLARE_INC = "Cloudflare, Inc."
#: Decimal places of a derived unit price (the Parquet decimal scale, so every format holds the same digits).
UNIT_PRICE_PLACES = 18
#: The prefix FOCUS requires of columns that are not FOCUS columns.
CUSTOM_PREFIX = "x_"

# The columns of a FOCUS 1.2 dataset this transform writes (alphabetical, as the specification lists them)
# and their kinds (how utils.formats types them: Parquet schema, decimal text in CSV and JSON).
_FOCUS_1_2: dict[str, str] = {
    "BilledCost": DECIMAL_KIND,
    "BillingAccountId": STRING_KIND,
    "BillingAccountName": STRING_KIND,
    "BillingCurrency": STRING_KIND,
    "BillingPeriodEnd": TIMESTAMP_KIND,
    "BillingPeriodStart": TIMESTAMP_KIND,
    "ChargeCategory": STRING_KIND,
    "ChargeClass": STRING_KIND,
    "ChargeDescription": STRING_KIND,
    "ChargeFrequency": STRING_KIND,
    "ChargePeriodEnd": TIMESTAMP_KIND,
    "ChargePeriodStart": TIMESTAMP_KIND,
    "ConsumedQuantity": DECIMAL_KIND,
    "ConsumedUnit": STRING_KIND,
    "ContractedCost": DECIMAL_KIND,
    "ContractedUnitPrice": DECIMAL_KIND,
    "EffectiveCost": DECIMAL_KIND,
    "InvoiceId": STRING_KIND,
    "InvoiceIssuerName": STRING_KIND,
    "ListCost": DECIMAL_KIND,
    "ListUnitPrice": DECIMAL_KIND,
    "PricingCategory": STRING_KIND,
    "PricingQuantity": DECIMAL_KIND,
    "PricingUnit": STRING_KIND,
    "ProviderName": STRING_KIND,
    "PublisherName": STRING_KIND,
    "ResourceId": STRING_KIND,
    "ResourceName": STRING_KIND,
    "ServiceCategory": STRING_KIND,
    "ServiceName": STRING_KIND,
    "ServiceSubcategory": STRING_KIND,
}
# FOCUS 1.3 adds ServiceProviderName (mandatory) and HostProviderName; ProviderName and PublisherName stay,
# deprecated, so tools reading either version find them.
_FOCUS_1_3: dict[str, str] = dict(
    sorted({**_FOCUS_1_2, "HostProviderName": STRING_KIND, "ServiceProviderName": STRING_KIND}.items())
)
FOCUS_COLUMNS: dict[str, dict[str, str]] = {"1.2": _FOCUS_1_2, "1.3": _FOCUS_1_3}

# Source columns whose values land in a FOCUS column of another name (so they are not kept as x_ columns).
_RENAMED_BY_VERSION: dict[str, frozenset[str]] = {
    "1.2": frozenset({"ServiceProviderName", "ZoneId", "ZoneName"}),
    "1.3": frozenset({"ZoneId", "ZoneName"}),
}
# Kinds of the Cloudflare-specific columns kept with the x_ prefix; any other kept column is text.
_CUSTOM_KINDS = {"CumulatedContractedCost": DECIMAL_KIND, "CumulatedPricingQuantity": INTEGER_KIND}
# Kept in every file, even an empty one: Cloudflare sends them in every record.
_ALWAYS_CUSTOM = ("CumulatedContractedCost", "CumulatedPricingQuantity")

_TIME_UNITS = {"year": "Year", "month": "Month", "day": "Day", "hour": "Hour", "minute": "Minute", "second": "Second"}
# Wide enough that neither the division nor the trimming of a 38-digit decimal ever rounds before quantize.
_EXACT = decimal.Context(prec=80)
_UNIT_PRICE_QUANTUM = Decimal(1).scaleb(-UNIT_PRICE_PLACES)


def check_focus_version(value: Any) -> str | None:
    """The FOCUS version to write (``"1.2"`` or ``"1.3"``), or None for the API's columns as served.

    :param value: the operator's ``focus_version`` (after templating)
    :raises CloudflareBillingInputError: anything else, before any request
    """
    if value is None:
        return None
    text = str(value).strip()
    if text in FOCUS_VERSIONS and not isinstance(value, bool):
        return text
    raise CloudflareBillingInputError(
        f"focus_version={value!r} is not a FOCUS version this provider writes: pass '1.2' (checked by the FinOps "
        "Foundation's validator) or '1.3', or None to land the API's columns as served."
    )


def focus_unit(unit: Any) -> str:
    """A unit in FOCUS's unit format: time units capitalised, plural after ``-``, singular after ``/``.

    ``GB-months`` -> ``GB-Months``, ``requests/hour`` -> ``requests/Hour``, ``minutes`` -> ``Minutes``; other
    units as sent. An empty unit is ``Count``, the unit Cloudflare documents for a charge whose unit is
    implicit.

    :param unit: ConsumedUnit or PricingUnit as sent (None or empty for none)
    """
    text = unit.strip() if isinstance(unit, str) else ""
    if not text:
        return "Count"
    for separator, plural in (("-", True), ("/", False)):
        base, found, per = text.rpartition(separator)
        time_unit = _time_unit(per, plural) if found and base.strip() else None
        if time_unit is not None:
            return f"{base.strip()}{separator}{time_unit}"
    return _time_unit(text, text.lower().endswith("s")) or text


def _time_unit(word: str, plural: bool) -> str | None:
    lowered = word.strip().lower()
    if lowered not in _TIME_UNITS and lowered.endswith("s"):
        lowered = lowered[:-1]
    name = _TIME_UNITS.get(lowered)
    return None if name is None else name + ("s" if plural else "")


def unit_price(cost: Decimal | None, quantity: Decimal | None) -> Decimal | None:
    """cost / quantity, rounded half to even to :data:`UNIT_PRICE_PLACES` places; None unless quantity > 0.

    A zero quantity has no unit price (any price times zero is the cost), so none is invented.
    """
    if cost is None or quantity is None or quantity <= 0:
        return None
    quotient = _EXACT.divide(cost, quantity).quantize(_UNIT_PRICE_QUANTUM, context=_EXACT)
    return _trimmed(quotient)


def _trimmed(number: Decimal) -> Decimal:
    """The same value without trailing zeros (``0.000005``, not ``0.000005000000000000``)."""
    return number if number.is_zero() else _EXACT.normalize(number)


def _timestamp_text(instant: dt.datetime) -> str:
    """FOCUS's date-time format, as Cloudflare writes its own: ``2025-10-14T00:00:00Z``."""
    return instant.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FocusRecords:
    """A re-iterable, sized view of usage records as FOCUS records; see the module docstring.

    Like the records it wraps (a list or a spooled answer), it is iterated once per pass and holds one
    record at a time. ``column_types`` declares the dataset's columns, in order, with their kinds, so that
    every file format writes the same columns, an empty period included.

    :param records: the API's records (checked by ``formats.RecordCheck``)
    :param version: ``"1.2"`` or ``"1.3"``
    :param account_id: the account asked for: BillingAccountId where Cloudflare does not send it
    :param billing_period_ends: BillingPeriodStart -> BillingPeriodEnd (UTC) of every billing period the
        records belong to, computed by the caller from the account's billing-cycle anchor
    """

    def __init__(
        self,
        records: Records,
        *,
        version: str,
        account_id: str,
        billing_period_ends: Mapping[dt.datetime, dt.datetime],
    ) -> None:
        if version not in FOCUS_COLUMNS:
            raise CloudflareBillingInputError(f"FOCUS version {version!r} is not one of {', '.join(FOCUS_VERSIONS)}.")
        self._records = records
        self.version = version
        self.account_id = account_id
        self._ends = {start.astimezone(dt.timezone.utc): end for start, end in billing_period_ends.items()}
        self._column_types: dict[str, str] | None = None

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        ends_by_text: dict[str, str] = {}  # rows share a handful of period starts: parse each once
        for record in self._records:
            start = record.get("BillingPeriodStart")
            end = ends_by_text.get(start) if isinstance(start, str) else None
            if end is None:
                end = self._billing_period_end(start)
                if isinstance(start, str):
                    ends_by_text[start] = end
            yield self._focus_record(record, end)

    @property
    def column_types(self) -> dict[str, str]:
        """The dataset's columns in order (FOCUS columns, then ``x_`` columns) with their kinds.

        The ``x_`` columns are Cloudflare's columns that occur in the records (one pass, remembered).
        """
        if self._column_types is None:
            seen: set[str] = set(_ALWAYS_CUSTOM)
            for record in self._records:
                seen.update(record)
            custom = sorted(self._custom_columns(seen))
            self._column_types = {
                **FOCUS_COLUMNS[self.version],
                **{CUSTOM_PREFIX + c: _CUSTOM_KINDS.get(c, STRING_KIND) for c in custom},
            }
        return self._column_types

    def _custom_columns(self, source_columns: set[str]) -> set[str]:
        """Source columns with no FOCUS column of their own: kept, with the ``x_`` prefix."""
        focus = FOCUS_COLUMNS[self.version]
        return {c for c in source_columns if c not in focus and c not in _RENAMED_BY_VERSION[self.version]}

    def _billing_period_end(self, start: Any) -> str:
        instant = to_utc_timestamp(start, "BillingPeriodStart")
        end = None if instant is None else self._ends.get(instant)
        if end is None or instant is None or end <= instant:
            known = ", ".join(sorted(_timestamp_text(s) for s in self._ends)) or "none"
            raise CloudflareResponseError(
                f"A usage record of account {self.account_id} has BillingPeriodStart {start!r}, which does not start "
                f"a billing period of the account's cycle as computed from its billing-cycle anchor (periods "
                f"known: {known}), so its BillingPeriodEnd cannot be derived and no FOCUS file was written. For an "
                "account with several subscriptions, pass the subscription_id whose cycle bills this usage; "
                "otherwise land it without focus_version and report it."
            )
        return _timestamp_text(end)

    def _focus_record(self, record: Mapping[str, Any], billing_period_end: str) -> dict[str, Any]:
        def sent(column: str, default: Any = None) -> Any:
            value = record.get(column)
            return default if value is None else value

        def number(column: str, default: Any = None) -> Decimal | None:
            value = to_decimal(record.get(column), column)
            return default if value is None else value

        contracted = number("ContractedCost")
        list_cost = number("ListCost", contracted)
        pricing_quantity = number("PricingQuantity")
        consumed_quantity = number("ConsumedQuantity")
        category, subcategory = service_category(sent("ServiceName"), sent("ServiceFamilyName"))
        values: dict[str, Any] = {
            "BilledCost": number("BilledCost", contracted),
            "BillingAccountId": sent("BillingAccountId", self.account_id),
            "BillingAccountName": sent("BillingAccountName"),
            "BillingCurrency": record.get("BillingCurrency"),
            "BillingPeriodEnd": billing_period_end,
            "BillingPeriodStart": record.get("BillingPeriodStart"),
            "ChargeCategory": sent("ChargeCategory", "Usage"),
            "ChargeClass": sent("ChargeClass"),
            "ChargeDescription": sent("ChargeDescription", sent("ServiceName")),
            "ChargeFrequency": "Usage-Based",
            "ChargePeriodEnd": record.get("ChargePeriodEnd"),
            "ChargePeriodStart": record.get("ChargePeriodStart"),
            "ConsumedQuantity": consumed_quantity,
            "ConsumedUnit": None if consumed_quantity is None else focus_unit(record.get("ConsumedUnit")),
            "ContractedCost": contracted,
            "ContractedUnitPrice": unit_price(contracted, pricing_quantity),
            "EffectiveCost": number("EffectiveCost", contracted),
            "InvoiceId": None,
            "InvoiceIssuerName": sent("InvoiceIssuerName", CLOUDFLARE_INC),
            "ListCost": list_cost,
            "ListUnitPrice": unit_price(list_cost, pricing_quantity),
            "PricingCategory": "Standard",
            "PricingQuantity": pricing_quantity,
            "PricingUnit": None
            if pricing_quantity is None
            else focus_unit(sent("PricingUnit", record.get("ConsumedUnit"))),
            "ProviderName": sent("ServiceProviderName", CLOUDFLARE_INC),
            "PublisherName": CLOUDFLARE_INC,
            "ResourceId": sent("ZoneId"),
            "ResourceName": sent("ZoneName"),
            "ServiceCategory": category,
            "ServiceName": record.get("ServiceName"),
            "ServiceSubcategory": subcategory,
        }
        if self.version == "1.3":
            values["ServiceProviderName"] = sent("ServiceProviderName", CLOUDFLARE_INC)
            values["HostProviderName"] = sent("HostProviderName", CLOUDFLARE_INC)
        focus = {column: values[column] for column in FOCUS_COLUMNS[self.version]}
        for column in sorted(self._custom_columns(set(record))):
            value = record[column]
            focus[CUSTOM_PREFIX + column] = number(column) if _CUSTOM_KINDS.get(column) == DECIMAL_KIND else value
        return focus


__all__ = ["CLOUDFLARE_INC", "FOCUS_VERSIONS", "FocusRecords", "check_focus_version", "focus_unit", "unit_price"]
