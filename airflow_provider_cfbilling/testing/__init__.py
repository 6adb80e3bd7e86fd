"""Test helpers: the local Cloudflare billing API simulator (standard library only).

The names below are re-exported lazily from ``airflow_provider_cfbilling.testing.simulator`` so that
``python -m airflow_provider_cfbilling.testing.simulator`` does not import the module twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_cfbilling.testing.simulator import (
        ACCOUNTS,
        ANCHOR31_ACCOUNT,
        EMPTY_ACCOUNT,
        FAULT_KINDS,
        FOCUS_ACCOUNT,
        FOCUS_EXTRA_COLUMNS,
        LARGE_ACCOUNT,
        PAYGO_REQUIRED_COLUMNS,
        SIM_EMAIL,
        SIM_GLOBAL_KEY,
        SIM_TOKEN,
        SIM_TOKEN_NO_BILLING,
        STANDARD_ACCOUNT,
        ZONE_COLUMNS,
        CloudflareSimulator,
        large_zones_for,
    )

__all__ = [
    "ACCOUNTS",
    "ANCHOR31_ACCOUNT",
    "EMPTY_ACCOUNT",
    "FAULT_KINDS",
    "FOCUS_ACCOUNT",
    "FOCUS_EXTRA_COLUMNS",
    "LARGE_ACCOUNT",
    "PAYGO_REQUIRED_COLUMNS",
    "SIM_EMAIL",
    "SIM_GLOBAL_KEY",
    "SIM_TOKEN",
    "SIM_TOKEN_NO_BILLING",
    "STANDARD_ACCOUNT",
    "ZONE_COLUMNS",
    "CloudflareSimulator",
    "large_zones_for",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("airflow_provider_cfbilling.testing.simulator"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
