"""Deterministic usage rows and their fast JSON rendering (standard library only).

Values are pure functions of (account, service, zone, day): two simulators serve the same bytes.
Rows are rendered straight to JSON text by a compiled f-string per (account, row shape), because
the LARGE account's answers reach a million rows and ``json.dumps`` of dicts is several times slower.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, cast

from airflow_provider_cfbilling.testing.simulator.accounts import (
    BILLABLE_USAGE_COLUMNS,
    CLOUDFLARE_INC,
    ZONE_COLUMNS,
    SimAccount,
    SimService,
)
from airflow_provider_cfbilling.testing.simulator.periods import period_index, period_start_at

#: How date-times are written: Cloudflare's usual ``Z``, or the valid variants a client must also read.
TIMESTAMP_STYLES = ("Z", "fractional", "offset")
_TIMESTAMP_SUFFIX = {"Z": "Z", "fractional": ".000Z", "offset": "+00:00"}


def style_timestamp(text: str, style: str = "Z") -> str:
    """Rewrite a ``YYYY-MM-DDTHH:MM:SSZ`` text in one of :data:`TIMESTAMP_STYLES`."""
    return text[:-1] + _TIMESTAMP_SUFFIX[style]


def day_timestamp(day: date, style: str = "Z") -> str:
    return f"{day.isoformat()}T00:00:00{_TIMESTAMP_SUFFIX[style]}"


@dataclass(frozen=True)
class RowShape:
    """Which columns a route's records carry and how faults reshape them (hashable: part of the
    body cache key)."""

    columns: tuple[str, ...] = BILLABLE_USAGE_COLUMNS
    missing: frozenset[str] = frozenset()
    nulls: frozenset[str] = frozenset()
    numbers_as_strings: bool = False
    extra: tuple[tuple[str, str], ...] = ()  # (column name, JSON literal)
    timestamp_style: str = "Z"
    long_digits: int | None = None  # significant digits of every cost (long_decimals)
    huge_integer: bool = False
    mismatch: tuple[str, str, str] | None = None  # (day, service, delta) of cost_mismatch
    restated: tuple[str, str, str] | None = None  # (day, service, delta) of restated


_Q6 = Decimal("0.000001")
_MASK64 = (1 << 64) - 1
_GOLDEN64 = 0x9E3779B97F4A7C15
#: Added to every PricingQuantity by the huge_integer fault: the values pass 2**63.
HUGE_QUANTITY_OFFSET = 2**63
# long_decimals scales each cost by this 40-digit factor, then rounds to the asked significant digits.
_LONG_FACTOR = Decimal("1.012345678901234567890123456789012345678")
_EXACT = Context(prec=120)  # running sums of long costs stay exact


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


# Per-row values are positional; everything else is constant within a (day, service) block.
_ROW_QUANTITY, _ROW_COST, _ROW_CUM_COST, _ROW_CUM_PQ, _ROW_PQ, _ROW_ZONE_ID, _ROW_ZONE_NAME = range(7)
_ROW_SOURCES = {
    "ConsumedQuantity": _ROW_QUANTITY,
    "ContractedCost": _ROW_COST,
    "CumulatedContractedCost": _ROW_CUM_COST,
    "CumulatedPricingQuantity": _ROW_CUM_PQ,
    "PricingQuantity": _ROW_PQ,
    "BilledCost": _ROW_COST,  # PayGo list prices: billed = effective = list = contracted
    "EffectiveCost": _ROW_COST,
    "ListCost": _ROW_COST,
}


def _json_str(value: str | None) -> str:
    return json.dumps(value)


_RowRenderer = Callable[[int, str, str, int, int, str, str], str]
_ROW_FACTORIES: dict[tuple[str, RowShape], Callable[[dict[str, str]], _RowRenderer]] = {}
_ROW_FACTORY_LOCK = threading.Lock()


def _row_factory(account: SimAccount, shape: RowShape) -> Callable[[dict[str, str]], _RowRenderer]:
    """Compile ``factory(block) -> render(v0..v6) -> row JSON`` for an account and row shape.

    The row layout is generated once as an f-string: (day, service) constants come from
    ``block`` (JSON literals) and the per-row values are the ``v`` arguments (see ``_ROW_*``).
    An f-string needs no template parsing per call, about 3x faster than ``str.format``, which
    matters for the LARGE account's million-row answers. Only column names and JSON literals
    built here reach the generated source, and they go in through ``repr``.
    """
    key = (account.account_id, shape)
    with _ROW_FACTORY_LOCK:
        factory = _ROW_FACTORIES.get(key)
    if factory is not None:
        return factory

    def constant(text: str) -> str:  # literal text inside the f-string
        return text.replace("{", "{{").replace("}", "}}")

    block_keys: list[str] = []
    members = []
    for name in shape.columns:
        if name in shape.missing:
            continue
        if name in shape.nulls:
            value = "null"
        elif account.zone_breakdown and name in ZONE_COLUMNS:
            value = f"{{v{_ROW_ZONE_ID if name == 'ZoneId' else _ROW_ZONE_NAME}}}"
        elif name in _ROW_SOURCES:
            value = f"{{v{_ROW_SOURCES[name]}}}"
            if shape.numbers_as_strings:
                value = f'"{value}"'
        else:
            value = f"{{b{len(block_keys)}}}"
            block_keys.append(name)
        members.append(constant(_json_str(name) + ":") + value)
    for name, literal in shape.extra:
        members.append(constant(f"{_json_str(name)}:{literal}"))
    body = "{{" + ",".join(members) + "}}"
    lines = ["def factory(block):"]
    lines += [f"    b{index} = block[{name!r}]" for index, name in enumerate(block_keys)]
    lines.append(f"    return lambda v0, v1, v2, v3, v4, v5, v6: f{body!r}")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)
    factory = cast(Callable[[dict[str, str]], _RowRenderer], namespace["factory"])
    with _ROW_FACTORY_LOCK:
        if len(_ROW_FACTORIES) > 256:  # row shapes are few, but bound it anyway
            _ROW_FACTORIES.clear()
        _ROW_FACTORIES[key] = factory
    return factory


def _block_constants(
    account: SimAccount, service: SimService, day: date, period_start: date, style: str
) -> dict[str, str]:
    """JSON literals of the columns that are constant within one (day, service) block."""
    return {
        "BillingCurrency": '"USD"',
        "BillingPeriodStart": f'"{day_timestamp(period_start, style)}"',
        "ChargePeriodEnd": f'"{day_timestamp(day + timedelta(days=1), style)}"',
        "ChargePeriodStart": f'"{day_timestamp(day, style)}"',
        "ConsumedUnit": _json_str(service.unit),
        "ServiceFamilyName": _json_str(service.family),
        "ServiceName": _json_str(service.name),
        "SubscriptionId": _json_str(account.subscriptions[0].id),
        "ZoneId": "null",
        "ZoneName": "null",
        "BillingAccountId": _json_str(account.account_id),
        "BillingAccountName": _json_str(account.billing_name),
        "ChargeCategory": '"Usage"',
        "ChargeClass": "null",
        "ChargeDescription": _json_str(service.description),
        "HostProviderName": _json_str(CLOUDFLARE_INC),
        "InvoiceIssuerName": _json_str(CLOUDFLARE_INC),
        "PricingUnit": _json_str(service.pricing_unit),
        "ServiceProviderName": _json_str(CLOUDFLARE_INC),
    }


def _decimal_text(value: Decimal) -> str:
    """Exact decimal text that stays a JSON float literal (``3`` -> ``3.0``), never an exponent."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0")
        return text + "0" if text.endswith(".") else text
    return text + ".0"


_ZONE_TABLES: dict[tuple[str, int], list[tuple[str, str, int]]] = {}
_ZONE_LOCK = threading.Lock()


def _zone_table(account_id: str, count: int) -> list[tuple[str, str, int]]:
    """``count`` zones as (ZoneId literal, ZoneName literal, seed), sorted by ZoneId. Zone i has the
    same id whatever the count, so growing the zone count only adds rows."""
    key = (account_id, count)
    with _ZONE_LOCK:
        table = _ZONE_TABLES.get(key)
    if table is None:
        zones = []
        for index in range(count):
            zone_id = hashlib.blake2b(f"{account_id}|zone|{index}".encode(), digest_size=16).hexdigest()
            zones.append((f'"{zone_id}"', f'"zone{index:07d}.example.com"', int(zone_id[:16], 16)))
        zones.sort()
        table = zones
        with _ZONE_LOCK:
            if len(_ZONE_TABLES) > 8:
                _ZONE_TABLES.clear()
            _ZONE_TABLES[key] = table
    return table


def render_rows(account: SimAccount, first: date, last: date, zones: int, shape: RowShape) -> list[bytes]:
    """JSON text of the rows for days first..last (inclusive), as comma-joined chunks (one per
    day and service). Running totals start at the billing period containing ``first`` so that
    Cumulated* are right even when the window starts mid-period."""
    anchor = account.anchor
    index = period_index(anchor, first)
    period_start = period_start_at(anchor, index)
    next_period_start = period_start_at(anchor, index + 1)
    services = sorted(account.services, key=lambda s: s.name)
    zone_rows = _zone_table(account.account_id, zones) if account.zone_breakdown else [("null", "null", 0)]
    cum_costs = [[Decimal(0)] * len(zone_rows) for _ in services]
    cum_pqs = [[0] * len(zone_rows) for _ in services]
    make_renderer = _row_factory(account, shape)
    long_context = Context(prec=shape.long_digits) if shape.long_digits else None
    pq_offset = HUGE_QUANTITY_OFFSET if shape.huge_integer else 0
    chunks: list[bytes] = []
    one_day = timedelta(days=1)
    day = period_start
    while day <= last:
        if day == next_period_start:
            index += 1
            period_start, next_period_start = next_period_start, period_start_at(anchor, index + 1)
            cum_costs = [[Decimal(0)] * len(zone_rows) for _ in services]
            cum_pqs = [[0] * len(zone_rows) for _ in services]
        emit = day >= first
        day_text = day.isoformat()
        for service_index, service in enumerate(services):
            day_seed = _hash64(f"{account.account_id}|{service.name}|{day_text}")
            low, span = service.daily_min, service.daily_max - service.daily_min + 1
            included, price = service.included_daily, service.unit_price
            costs, pqs = cum_costs[service_index], cum_pqs[service_index]
            render = make_renderer(_block_constants(account, service, day, period_start, shape.timestamp_style))
            mismatch = shape.mismatch is not None and shape.mismatch[:2] == (day_text, service.name)
            # A restatement changes the day's cost and, consistently, every running total from that day on.
            restated = (
                Decimal(shape.restated[2])
                if shape.restated is not None and shape.restated[:2] == (day_text, service.name)
                else None
            )
            rows: list[str] = []
            for zone_index, (zone_id, zone_name, zone_seed) in enumerate(zone_rows):
                # A cheap 64-bit mix of the (account, service, day) hash with the zone's seed keeps
                # values deterministic per (account, service, zone, day) without hashing every row.
                mixed = ((day_seed ^ zone_seed) * _GOLDEN64) & _MASK64
                quantity = low + ((mixed ^ (mixed >> 29)) % span)
                pricing = quantity - included if quantity > included else 0
                cost = (price * pricing).quantize(_Q6, rounding=ROUND_HALF_EVEN)
                if restated is not None:
                    cost += restated
                if long_context is not None:
                    cost = long_context.multiply(cost, _LONG_FACTOR)
                    cum_cost = _EXACT.add(costs[zone_index], cost)
                else:
                    cum_cost = costs[zone_index] + cost
                costs[zone_index] = cum_cost
                reported_pricing = pricing + pq_offset
                cum_pq = pqs[zone_index] + reported_pricing
                pqs[zone_index] = cum_pq
                if emit:
                    if long_context is not None or mismatch or restated is not None:
                        shown = cost + Decimal(shape.mismatch[2]) if mismatch and shape.mismatch else cost
                        cost_text, cum_text = _decimal_text(shown), _decimal_text(cum_cost)
                        mismatch = False  # only the block's first row
                    else:
                        # Exact decimal text, trailing zeros trimmed but still a float literal
                        # (0.750000 -> 0.75, 3.000000 -> 3.0) so JSON readers never flip to int.
                        # Inlined: this is the hot loop.
                        cost_text = str(cost).rstrip("0")
                        if cost_text[-1] == ".":
                            cost_text += "0"
                        cum_text = str(cum_cost).rstrip("0")
                        if cum_text[-1] == ".":
                            cum_text += "0"
                    rows.append(render(quantity, cost_text, cum_text, cum_pq, reported_pricing, zone_id, zone_name))
            if rows:
                chunks.append(",".join(rows).encode())
        day += one_day
    return chunks


class BodyCache:
    """LRU of rendered row chunks bounded by total bytes (a 1M-row body is ~400 MB)."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[Any, ...], tuple[list[bytes], int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> list[bytes] | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def put(self, key: tuple[Any, ...], chunks: list[bytes]) -> None:
        size = sum(len(c) for c in chunks)
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (chunks, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped


#: Shared by all simulators in a process: bodies are pure functions of their key.
BODY_CACHE = BodyCache()


def usage_chunks(account: SimAccount, first: date, last: date, zones: int, shape: RowShape) -> list[bytes]:
    """The rendered rows of ``first..last``, from the cache when possible."""
    key = (account.account_id, first, last, zones, shape)
    chunks = BODY_CACHE.get(key)
    if chunks is None:
        chunks = render_rows(account, first, last, zones, shape)
        BODY_CACHE.put(key, chunks)
    return chunks
