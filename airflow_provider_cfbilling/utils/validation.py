"""Input checks shared by the hook, the operator and the sensor.

Every check runs before any request is sent and raises :class:`CloudflareBillingInputError` with a
message that says what was wrong and what to pass instead.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pendulum

from airflow_provider_cfbilling.exceptions import CloudflareBillingInputError

ACCOUNT_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")

DateLike = dt.date | dt.datetime | str


def validate_account_id(value: Any, source: str) -> str:
    """Return the account id if it is 32 hexadecimal characters, lower-cased; raise otherwise.

    :param value: the candidate account id
    :param source: where it came from, for the message (e.g. "connection 'cloudflare_default' extra
        'account_id'")
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise CloudflareBillingInputError(
            f"No Cloudflare account id: {source} is empty. Pass account_id=... or set the 'account_id' "
            "extra of the connection (32 hex characters, shown on the dashboard's account overview)."
        )
    if not isinstance(value, str) or not ACCOUNT_ID_PATTERN.match(value.strip().lower()):
        raise CloudflareBillingInputError(
            f"Invalid Cloudflare account id {value!r} from {source}: it must be 32 hexadecimal "
            "characters, e.g. '023e105f4ecef8ad9ca31a8372d0c353'."
        )
    return value.strip().lower()


def to_utc_datetime(value: Any, name: str) -> pendulum.DateTime:
    """Read a date, an aware datetime or an ISO 8601 string as an aware UTC instant.

    A date (or ``YYYY-MM-DD``) means midnight UTC of that day. A naive datetime (or an ISO string without
    an offset) is refused: billing days are UTC days, and guessing a zone shifts a whole day.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise CloudflareBillingInputError(
                f"{name} is an empty string (did a template render to nothing?). Pass a date such as "
                "'2025-02-01', an ISO 8601 datetime with an offset, or leave it unset (None)."
            )
        try:
            parsed = pendulum.parse(text, exact=True, strict=True, tz=None)
        except (ValueError, pendulum.parsing.exceptions.ParserError) as exc:
            raise CloudflareBillingInputError(
                f"{name}={value!r} is not an ISO 8601 date: pass 'YYYY-MM-DD' (e.g. '2025-02-01') or a "
                "datetime with an offset (e.g. '2025-02-01T00:00:00Z')."
            ) from exc
        value = parsed
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise CloudflareBillingInputError(
                f"{name}={value.isoformat()!r} is a naive datetime (no time zone). It is refused, not read as "
                "UTC or as the worker's local time: billing days are UTC days and a guessed time zone can shift "
                "the window by a day. Pass an aware datetime (e.g. pendulum.datetime(2025, 2, 1, tz='UTC')), an "
                "offset in the string ('...Z' or '+00:00'), or a plain date ('2025-02-01', read as that UTC day)."
            )
        return pendulum.instance(value).in_timezone("UTC")
    if isinstance(value, dt.date):
        return pendulum.datetime(value.year, value.month, value.day, tz="UTC")
    raise CloudflareBillingInputError(
        f"{name} must be a date, an aware datetime or an ISO 8601 string, not {type(value).__name__} ({value!r})."
    )


def to_api_date(value: Any, name: str) -> dt.date:
    """The UTC calendar date of a date-like value (see :func:`to_utc_datetime`)."""
    return to_utc_datetime(value, name).date()


def validate_window(from_: Any, to: Any) -> tuple[dt.date, dt.date] | None:
    """Check an API window: both bounds or neither, ``from_ <= to``; return the UTC dates or None.

    None means "no window": the API then answers with the current billing period.
    """
    if from_ is None and to is None:
        return None
    if from_ is None or to is None:
        given, missing = ("from_", "to") if to is None else ("to", "from_")
        raise CloudflareBillingInputError(
            f"Only {given} was given: the Cloudflare API takes both from_ and to, or neither (the current "
            f"billing period). Pass {missing} too, or drop {given}."
        )
    start, end = to_api_date(from_, "from_"), to_api_date(to, "to")
    if start > end:
        raise CloudflareBillingInputError(f"from_ ({start.isoformat()}) is after to ({end.isoformat()}): swap them.")
    return start, end
