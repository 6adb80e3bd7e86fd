"""Cloudflare's error answers: one constructor per documented error, and the envelopes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


class ApiError(Exception):
    """An error answer in Cloudflare's envelope (``success: false``, ``result: null``)."""

    def __init__(self, status: int, code: int, message: str, extra: Sequence[tuple[int, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.errors = [{"code": code, "message": message}] + [{"code": c, "message": m} for c, m in extra]

    def body(self) -> bytes:
        return error_body(self.errors)


def no_route(status: int = 404) -> ApiError:
    return ApiError(status, 7000, "No route for that URI")


def could_not_route(path: str, status: int = 404, *, with_no_route: bool = False) -> ApiError:
    """7003 (the message echoes the path, which the caller has scrubbed of credentials)."""
    extra = [(7000, "No route for that URI")] if with_no_route else []
    return ApiError(status, 7003, f"Could not route to {path}, perhaps your object identifier is invalid?", extra)


def missing_credentials() -> ApiError:
    return ApiError(400, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")


def invalid_headers() -> ApiError:
    return ApiError(400, 6003, "Invalid request headers")


def authentication_error() -> ApiError:
    return ApiError(403, 10000, "Authentication error")


def unauthorized() -> ApiError:
    return ApiError(403, 9109, "Unauthorized to access requested resource")


def invalid_parameters() -> ApiError:
    return ApiError(400, 1183, "Invalid request parameters")


def rate_limited() -> ApiError:
    return ApiError(429, 971, "Please wait and consider throttling your request speed")


def error_body(errors: list[dict[str, Any]]) -> bytes:
    return json.dumps({"success": False, "errors": errors, "messages": [], "result": None}).encode()


_STATUS_TITLES = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def error_page(status: int) -> bytes:
    """Cloudflare's HTML error page (what a 5xx from the edge looks like)."""
    title = f"{status} {_STATUS_TITLES.get(status, 'Server Error')}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
    ).encode()
