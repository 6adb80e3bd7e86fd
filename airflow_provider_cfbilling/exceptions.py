"""The exceptions this provider raises: one small hierarchy, every message actionable.

Every error derives from :class:`CloudflareBillingError` (an ``AirflowException``), so a DAG author can
catch ours without catching Airflow's own. API errors carry what a person needs to act: the HTTP status,
Cloudflare's error codes and messages, the account and the path, and what to do next.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.exceptions import AirflowException


class CloudflareBillingError(AirflowException):
    """Base of every error raised by this provider."""


class CloudflareBillingInputError(CloudflareBillingError, ValueError):
    """A parameter or connection setting is invalid; raised before any request is sent."""


class CloudflareConnectionError(CloudflareBillingError):
    """The API could not be reached (refused, reset, timed out) even after retries."""


class CloudflareTLSError(CloudflareConnectionError):
    """The server's certificate could not be verified; not retried (set the connection extra ``verify``)."""


class CloudflareResponseError(CloudflareBillingError):
    """The API answered, but with a body that is not a usable Cloudflare envelope.

    A non-JSON page (a proxy's HTML 502), truncated JSON or a ``result`` of the wrong type is an error:
    treating it as "no usage" would book a wrong cost.
    """


class CloudflareNoBillingCycleError(CloudflareBillingError):
    """The billing-info endpoint answered, but names no billing cycle for the account.

    The account is not covered (``covered: false``) or lists no subscription: there is no anchor to place
    a billing period with. The sensor then falls back to the API's current period.
    """


class CloudflareAPIError(CloudflareBillingError):
    """The API answered with an error envelope or an error status.

    :param status: the HTTP status code
    :param errors: Cloudflare's ``errors`` list (``[{"code": ..., "message": ...}]``)
    :param account_id: the account the request was for
    :param path: the request path (never the query or headers)
    :param advice: what the user should do about it
    """

    def __init__(
        self,
        *,
        status: int,
        errors: Sequence[dict[str, Any]] | None,
        account_id: str | None,
        path: str,
        advice: str,
    ) -> None:
        self.status = status
        self.errors = list(errors or [])
        self.codes = [e.get("code") for e in self.errors if isinstance(e, dict)]
        self.account_id = account_id
        self.path = path
        self.advice = advice
        super().__init__(self._message())

    def _message(self) -> str:
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in self.errors if isinstance(e, dict))
        return (
            f"Cloudflare API returned HTTP {self.status}"
            f"{'' if self.account_id is None else f' for account {self.account_id}'} on {self.path}"
            f" (errors: {detail or 'none given'}). {self.advice}"
        )


class CloudflareAuthenticationError(CloudflareAPIError):
    """Credentials missing, malformed, wrong or expired (codes 9106, 6003, 10000)."""


class CloudflarePermissionError(CloudflareAPIError):
    """The credentials are valid but may not read billing for this account (403 / code 9109)."""


class CloudflareRouteNotFoundError(CloudflareAPIError):
    """No candidate path answered: the endpoint moved again, or the account id is not routable."""


class CloudflareServerError(CloudflareAPIError):
    """Cloudflare answered 5xx on every attempt."""


class CloudflareRateLimitError(CloudflareAPIError):
    """A 429 asked to wait longer than the hook may wait.

    Raised at once, without sleeping, so the caller can defer (no worker slot held) or let Airflow's retry
    pick it up later.

    :param retry_after: seconds the API asked to wait (``Retry-After``)
    """

    def __init__(self, *, retry_after: float, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(**kwargs)
