"""Cloudflare-style rate limiting: a fixed window per credential, and a block when it is exceeded."""

from __future__ import annotations

import math
import threading
import time

#: Nominal Cloudflare limits (1,200 requests per 5 minutes) reported when enforcement is off.
NOMINAL_RATE_LIMIT = (1200, 300.0, 300.0)


def parse_rate_limit(value: object) -> tuple[int, float, float] | None:
    """None, a (max, window_s, block_s) sequence, or "MAX/WINDOW/BLOCK"."""
    if value is None:
        return None
    parts = value.split("/") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    if len(parts) != 3:
        raise ValueError("rate_limit must be (max_requests, window_seconds, block_seconds)")
    max_requests, window, block = int(parts[0]), float(parts[1]), float(parts[2])
    if max_requests < 1 or window <= 0 or block < 0:
        raise ValueError("rate_limit needs max_requests >= 1, window > 0, block >= 0")
    return max_requests, window, block


class RateLimiter:
    """Fixed-window counter per credential. When enforcing, going over the limit blocks every call
    of that credential for ``block`` seconds (as Cloudflare does); otherwise it only reports."""

    def __init__(self, policy: tuple[int, float, float] | None) -> None:
        self.enforce = policy is not None
        max_requests, window, block = policy if policy is not None else NOMINAL_RATE_LIMIT
        self.max_requests, self.window, self.block = int(max_requests), float(window), float(block)
        self._state: dict[str, list[float]] = {}  # key -> [window_start, count, blocked_until]
        self._lock = threading.Lock()

    def _headers(self, remaining: float, reset_in: float) -> list[tuple[str, str]]:
        return [
            ("Ratelimit", f'"default";r={max(0, int(remaining))};t={max(0, math.ceil(reset_in))}'),
            ("Ratelimit-Policy", f'"default";q={self.max_requests};w={int(self.window)}'),
        ]

    def peek(self, key: str | None) -> list[tuple[str, str]]:
        """The Ratelimit headers for ``key`` without counting a request."""
        now = time.monotonic()
        with self._lock:
            state = self._state.get(key) if key else None
            if state is None or now - state[0] >= self.window:
                return self._headers(self.max_requests, self.window)
            return self._headers(self.max_requests - state[1], self.window - (now - state[0]))

    def hit(self, key: str) -> tuple[float | None, list[tuple[str, str]]]:
        """Count one request; returns (retry_after seconds if refused, Ratelimit headers)."""
        now = time.monotonic()
        with self._lock:
            state = self._state.setdefault(key, [now, 0, 0.0])
            if self.enforce and state[2] > now:
                return state[2] - now, self._headers(0, state[2] - now)
            # A block that has run out starts a fresh window (else the next call re-blocks at once).
            if now - state[0] >= self.window or (state[2] and state[2] <= now):
                state[0], state[1], state[2] = now, 0, 0.0
            state[1] += 1
            reset_in = self.window - (now - state[0])
            if self.enforce and state[1] > self.max_requests:
                state[2] = now + self.block
                return self.block, self._headers(0, self.block)
            return None, self._headers(self.max_requests - state[1], reset_in)
