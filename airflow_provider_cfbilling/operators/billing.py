"""CloudflarePaygoUsageOperator: land Cloudflare PayGo usage in XCom or in object storage.

The operator composes the hook (HTTP), ``utils.periods`` (billing periods), ``utils.formats`` (file
formats) and ``utils.reconcile`` (exact totals and reconciliation). It imports nothing heavy at module
level: pyarrow and the fsspec backends load inside ``execute``, so DAG files stay cheap to parse.

What a window asks of the API lives in :class:`UsageWindow`, which rows it keeps in ``utils.ledger``
(``UsageLedger.keeps``); the user documentation explains them once, in docs/operator.md.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import random
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

from airflow.configuration import conf
from airflow.sdk import BaseOperator

from airflow_provider_cfbilling.compat import TaskDeferred
from airflow_provider_cfbilling.exceptions import (
    CloudflareBillingError,
    CloudflareBillingInputError,
    CloudflareRateLimitError,
    CloudflareResponseError,
)
from airflow_provider_cfbilling.hooks.billing import RATE_LIMIT_JITTER, CloudflareBillingHook
from airflow_provider_cfbilling.utils.focus import FocusRecords, check_focus_version
from airflow_provider_cfbilling.utils.formats import (
    Records,
    file_columns,
    read_records,
    to_utc_timestamp,
    write_records,
    xcom_records,
)
from airflow_provider_cfbilling.utils.ledger import UsageLedger
from airflow_provider_cfbilling.utils.periods import parse_instant
from airflow_provider_cfbilling.utils.reconcile import CostTotals
from airflow_provider_cfbilling.utils.storage import (
    XCOM_OBJECTSTORAGE_BACKEND,
    Landing,
    Target,
    clean_uri,
    land,
    resolve_target,
    xcom_backend_offloads,
)
from airflow_provider_cfbilling.utils.validation import validate_account_id

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

# Placeholders the operator fills in a destination after fetching (Jinja leaves single braces alone).
ACCOUNT_PLACEHOLDER = "{account_id}"
BILLING_PERIOD_PLACEHOLDER = "{billing_period}"

# How often one try may defer for the rate limit before failing and leaving it to Airflow's retries.
MAX_RATE_LIMIT_DEFERRALS = 10
# A deferrable task waits out shorter rate-limit waits in the worker: a round trip through the triggerer
# and the scheduler costs seconds too.
DEFERRABLE_MAX_RATE_LIMIT_WAIT = 5.0
_Result = TypeVar("_Result")
DEFAULT_MAX_XCOM_BYTES = 1_048_576
# What the manifest's totals sum, read back from a replaced object (the same names in a FOCUS dataset).
TOTALS_COLUMNS = ("BillingCurrency", "ServiceName", "ContractedCost")


@dataclass(frozen=True)
class UsageWindow:
    """What one run fetches: ``kind`` is ``current_period``, ``range`` or ``billing_period``.

    ``start`` and ``end`` are UTC dates, ``end`` exclusive; both None for the current period.
    """

    kind: str
    start: dt.date | None = None
    end: dt.date | None = None

    @property
    def start_instant(self) -> dt.datetime | None:
        return None if self.start is None else _midnight(self.start)

    @property
    def end_instant(self) -> dt.datetime | None:
        return None if self.end is None else _midnight(self.end)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "from": None if self.start is None else self.start.isoformat(),
            "to": None if self.end is None else self.end.isoformat(),
        }

    def describe(self) -> str:
        if self.start is None or self.end is None:
            return "the current billing period"
        return f"[{self.start.isoformat()}, {self.end.isoformat()}) ({self.kind.replace('_', ' ')})"


class CloudflarePaygoUsageOperator(BaseOperator):
    """
    Fetch an account's Cloudflare PayGo billable usage into XCom or into object storage.

    **Window**: give nothing (the current billing period), or ``from_`` and ``to`` (the half-open UTC-day
    window ``[from_, to)``), or ``billing_period_of`` (the whole billing period containing that date).

    **XCom mode** (``destination=None``): returns the records as the API sent them, as plain JSON values:
    costs and other non-integer numbers as floats (XCom carries no exact decimal; land a file for the API's
    exact digits, which the manifest's totals also keep). Reconciliation runs on the exact values. A result
    larger than ``max_xcom_bytes`` fails with a pointer to ``destination`` or to the object-storage XCom
    backend.

    **Object-storage mode**: writes one object through Airflow's ``ObjectStoragePath`` (any backend whose
    provider is installed) and returns a manifest: ``uri``, ``format``, ``account_id``, ``window``,
    ``billing_periods``, ``rows``, ``bytes``, ``sha256``, ``totals`` and ``reconciliation``. The object is
    written aside and committed whole (a rename on local disks, one upload on object stores): a failed
    run never leaves a partial object and never damages the previous one; the same data gives
    byte-identical objects, so re-runs are idempotent: when the destination already holds the same bytes
    (sha256), nothing is written. Other bytes replace it, and the manifest records the replaced object
    (``replaced``: its sha256, size and totals; ``restatement``: true when the window had closed, with one
    warning logged). Every ``Asset`` in ``outlets`` gets the manifest as its event's extra; every
    ``AssetAlias`` gets an event for the written URI, only when it was written.

    :param cloudflare_conn_id: The Cloudflare connection. Default ``cloudflare_default``. (templated)
    :param account_id: The account (32 hex characters). Default: the connection's ``account_id`` extra.
        (templated)
    :param from_: Start of the window, inclusive: a date, an aware datetime (its UTC date) or an ISO 8601
        string. Give ``to`` too. (templated)
    :param to: End of the window, exclusive (FOCUS); same types as ``from_``. (templated)
    :param billing_period_of: A date (e.g. ``"{{ ds }}"``): fetch the whole billing period containing it,
        computed from the account's billing-cycle anchor. Not with ``from_``/``to``. (templated)
    :param subscription_id: The subscription whose billing cycle defines the periods, for accounts with
        several. Default: the earliest-anchored active one. (templated)
    :param destination: None to return the records as XCom; otherwise where to write them: a URI string
        (``s3://bucket/cloudflare/{{ ds }}/usage.parquet``, ``file:///data/usage.jsonl``) or an
        ``ObjectStoragePath``. ``{account_id}`` and ``{billing_period}`` (the start date of the billing
        period fetched, ``YYYY-MM-DD``) in it are filled in by the operator. (templated)
    :param destination_conn_id: The connection of the destination's backend (e.g. an ``aws`` connection
        for ``s3://``). Default: the one in the ``ObjectStoragePath`` or URI, else the backend's default.
        (templated)
    :param file_format: ``jsonl``, ``json``, ``csv`` or ``parquet``. Default: implied by the destination's
        suffix (``.jsonl``, ``.ndjson``, ``.json``, ``.csv``, ``.parquet``), else ``jsonl``. (templated)
    :param focus_version: ``"1.2"`` or ``"1.3"`` to land (or return) a FOCUS dataset of that version: every
        mandatory FOCUS column, derived from what the API sends, Cloudflare's own columns prefixed ``x_``
        (docs/focus.md). Default None: the API's columns as served. Reconciliation and the manifest's totals
        are computed on the records as served either way. (templated)
    :param reconcile: Check, per billing period, currency and service, that daily ``ContractedCost`` agrees
        with the movement of ``CumulatedContractedCost``. Mismatches are logged and recorded in the
        manifest. Default True.
    :param strict: Fail the task, before writing anything, when reconciliation finds a mismatch.
        Default False.
    :param max_xcom_bytes: Largest result (JSON bytes) returned as XCom; None for no limit. Ignored when
        the object-storage XCom backend is configured to offload large values. Default 1 MiB.
    :param deferrable: On a rate-limit wait longer than 5 s (a 429's ``Retry-After``, or the reset of the
        token's spent window), defer for that wait (no worker held) and resume, at most 10 times per try.
        Without it the task waits in the worker up to the connection's ``max_retry_wait``, then fails with
        the wait in the message and Airflow's retries take over. Default ``[operators] default_deferrable``.

    **Many accounts, one token**: see that section of docs/hook.md (a pool, ``concurrent_tasks``).
    """

    template_fields: Sequence[str] = (
        "cloudflare_conn_id",
        "account_id",
        "from_",
        "to",
        "billing_period_of",
        "subscription_id",
        "destination",
        "destination_conn_id",
        "file_format",
        "focus_version",
    )
    ui_color = "#f6821f"

    def __init__(
        self,
        *,
        cloudflare_conn_id: str = CloudflareBillingHook.default_conn_name,
        account_id: str | None = None,
        from_: Any = None,
        to: Any = None,
        billing_period_of: Any = None,
        subscription_id: str | None = None,
        destination: str | ObjectStoragePath | None = None,
        destination_conn_id: str | None = None,
        file_format: str | None = None,
        focus_version: str | None = None,
        reconcile: bool = True,
        strict: bool = False,
        max_xcom_bytes: int | None = DEFAULT_MAX_XCOM_BYTES,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cloudflare_conn_id = cloudflare_conn_id
        self.account_id = account_id
        self.from_ = from_
        self.to = to
        self.billing_period_of = billing_period_of
        self.subscription_id = subscription_id
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.file_format = file_format
        self.focus_version = focus_version
        self.reconcile = reconcile
        self.strict = strict
        self.max_xcom_bytes = max_xcom_bytes
        self.deferrable = deferrable
        # What the last landing wrote, for get_openlineage_facets_on_complete (None: nothing landed yet).
        self._lineage_facts: dict[str, Any] | None = None

    @cached_property
    def hook(self) -> CloudflareBillingHook:
        return CloudflareBillingHook(
            cloudflare_conn_id=self.cloudflare_conn_id,
            max_rate_limit_wait=DEFERRABLE_MAX_RATE_LIMIT_WAIT if self.deferrable else None,
        )

    # -- entry points -----------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        return self._handing_over(lambda: self._run(context, deferrals=0))

    def execute_complete(self, context: Context, event: Any = None, deferrals: int = 1) -> Any:
        """Resume after a rate-limit wait: fetch and write again, from the start."""
        self.log.info("Resuming after Cloudflare's rate-limit wait (deferral %d).", deferrals)
        return self._handing_over(lambda: self._run(context, deferrals=deferrals))

    def _handing_over(self, run: Callable[[], _Result]) -> _Result:
        """Run, then leave the token's rate limit safe for the task that takes this one's pool slot.

        Not on deferral: the deferral already lasts until the window resets.
        """
        try:
            result = run()
        except TaskDeferred:
            raise
        except BaseException:
            self._hand_over_rate_limit()
            raise
        self._hand_over_rate_limit()
        return result

    def _hand_over_rate_limit(self) -> None:
        if "hook" in self.__dict__:  # no hook, no request made
            self.hook.wait_for_rate_limit_handover()

    # -- the run ----------------------------------------------------------------------------------

    def _run(self, context: Context, deferrals: int) -> Any:
        # Everything that can be checked without a request is checked first.
        self._check_not_blank("subscription_id", "the earliest-anchored active subscription")
        self._check_not_blank("destination_conn_id", "the backend's default connection")
        self._check_not_blank("file_format", "the format the destination's suffix implies")
        self._check_not_blank("focus_version", "the API's columns as served")
        check_focus_version(self.focus_version)
        account = self._account()
        bounds = self._window_bounds()
        target = resolve_target(self.destination, self.destination_conn_id, self.file_format)

        if target is None:
            window, fetched = self._fetch_or_defer(account, bounds, deferrals, spool_dir=None)
            ledger = self._ledger(account, window)
            kept = ledger.run(fetched)  # already a list: XCom values live in memory anyway
            self._log_window(ledger, window)
            if self.reconcile:
                self._reconcile(ledger, fetched, account)  # on the exact decimals, before they become floats
            as_xcom = xcom_records(self._as_focus(kept, account, window, deferrals, ledger.billing_periods))
            self._check_xcom_size(as_xcom)
            self._lineage_facts = {"account_id": account, "manifest": None, "path": None, "columns": None}
            return as_xcom
        # Records bound for a file are spooled on local disk and parsed row by row in one pass, so a month
        # of zone-level usage never sits whole in memory (XCom values live in memory anyway).
        with tempfile.TemporaryDirectory(prefix="cfbilling-usage-") as spool_dir:
            window, records = self._fetch_or_defer(account, bounds, deferrals, spool_dir=spool_dir)
            return self._land(context, target, account, window, records, deferrals)

    def _fetch_or_defer(
        self, account: str, bounds: tuple[dt.date, dt.date] | dt.datetime | None, deferrals: int, spool_dir: str | None
    ) -> tuple[UsageWindow, Records]:
        try:
            window = self._resolve_window(account, bounds)
            self.log.info("Fetching Cloudflare usage of account %s for %s.", account, window.describe())
            return window, self._fetch(account, window, spool_dir)
        except CloudflareRateLimitError as exc:
            self._wait_out_rate_limit(exc, deferrals)

    def _land(
        self,
        context: Context,
        target: Target,
        account: str,
        window: UsageWindow,
        records: Records,
        deferrals: int,
    ) -> dict[str, Any]:
        ledger = self._ledger(account, window)
        if BILLING_PERIOD_PLACEHOLDER in target.uri and window.kind != "billing_period":
            # The destination names the billing period the rows belong to: learn it before the write
            # (the one case that reads the answer twice).
            for _ in ledger.admit(records):
                pass
        try:
            path = self._destination_path(target, account, window, ledger)
        except CloudflareRateLimitError as exc:  # placing an empty current period asks for the billing info
            self._wait_out_rate_limit(exc, deferrals)
        check: dict[str, Any] | None = None
        column_types: dict[str, str] | None = None

        def write(fileobj: IO[bytes]) -> int:
            # The single pass: each record is checked, filtered, summed and written to the staged file; a
            # failure here (a broken contract, strict reconciliation) discards the staged file.
            nonlocal check
            if self.focus_version is None:
                rows = ledger.write(records, fileobj, target.file_format)
                self._log_window(ledger, window)
                check = self._reconcile(ledger, records, account) if self.reconcile else None
                return rows
            # A FOCUS dataset: the pass checks and sums the records as served, then the kept ones are written
            # mapped to FOCUS columns (BillingPeriodEnd needs every period known first: a second pass).
            if not ledger.complete:
                for _ in ledger.admit(records):
                    pass
            self._log_window(ledger, window)
            check = self._reconcile(ledger, records, account) if self.reconcile else None
            kept = ledger.kept_records(records)
            landed = self._as_focus(kept, account, window, deferrals, ledger.billing_periods)
            nonlocal column_types
            column_types = getattr(landed, "column_types", None)
            try:
                return write_records(landed, fileobj, target.file_format)
            except CloudflareResponseError as exc:  # a value the file format cannot hold: name the account too
                raise CloudflareResponseError(f"The usage of account {account}: {exc}") from None

        file_format = target.file_format
        # The schema facet's columns are read from the staged file only when OpenLineage can ask for them.
        inspect = (lambda staged: file_columns(staged, file_format, column_types)) if _lineage_enabled() else None
        landing = land(
            write, path, file_format, summarise=lambda previous: self._totals_of(previous, file_format), inspect=inspect
        )
        manifest = {
            "uri": clean_uri(path),
            "format": file_format,
            "account_id": account,
            "window": window.as_dict(),
            "billing_periods": ledger.billing_periods,
            "rows": ledger.kept,
            "bytes": landing.size,
            "sha256": landing.sha256,
            "totals": ledger.totals.as_dict(),
            "reconciliation": check,
            **self._replacement(landing, window),
        }
        self._lineage_facts = {"account_id": account, "manifest": manifest, "path": path, "columns": landing.inspected}
        self._log_landing(manifest, ledger.kept, account)
        self._emit_asset_events(context, manifest)
        return manifest

    def _replacement(self, landing: Landing, window: UsageWindow) -> dict[str, Any]:
        """The manifest's ``written``, ``unchanged``, ``replaced`` and ``restatement`` (docs/operator.md)."""
        replaced = None
        if landing.written and landing.previous is not None:
            replaced = {
                "sha256": landing.previous.sha256,
                "bytes": landing.previous.size,
                **(landing.previous.summary or {}),
            }
        end = window.end_instant
        closed = end is not None and end <= dt.datetime.now(dt.timezone.utc)
        return {
            "written": landing.written,
            "unchanged": landing.unchanged,
            "replaced": replaced,
            "restatement": replaced is not None and closed,
        }

    def _totals_of(self, local_path: str, file_format: str) -> dict[str, Any]:
        """The totals of the object about to be replaced, read back from it (or why they could not be)."""
        totals = CostTotals()
        try:
            for record in read_records(local_path, file_format, TOTALS_COLUMNS):
                totals.add(record)
        except (ValueError, OSError, CloudflareBillingError) as exc:
            # Not ours, or another format than the suffix says: the new file is still landed, the gap recorded.
            return {"totals": None, "totals_error": f"the replaced object could not be read as {file_format}: {exc}"}
        return {"totals": totals.as_dict()}

    def _log_landing(self, manifest: dict[str, Any], rows: int, account: str) -> None:
        uri, replaced = manifest["uri"], manifest["replaced"]
        if manifest["unchanged"]:
            self.log.info(
                "%s already holds these %d rows of account %s (sha256 %s): left unchanged, nothing written.",
                uri,
                rows,
                account,
                manifest["sha256"],
            )
            return
        self.log.info(
            "Landed %d rows of account %s at %s (%s, %d bytes, sha256 %s).",
            rows,
            account,
            uri,
            manifest["format"],
            manifest["bytes"],
            manifest["sha256"],
        )
        if replaced is None:
            return
        if manifest["restatement"]:
            self.log.warning(
                "Restatement: Cloudflare's figures for the closed window %s of account %s changed; %s was "
                "replaced (sha256 %s -> %s). Totals before: %s; now: %s.",
                json.dumps(manifest["window"]),
                account,
                uri,
                replaced["sha256"],
                manifest["sha256"],
                json.dumps(replaced["totals"]["by_currency"] if replaced["totals"] else None),
                json.dumps(manifest["totals"]["by_currency"]),
            )
        else:
            self.log.info("Replaced the previous object (sha256 %s): the window is still open.", replaced["sha256"])

    # -- lineage ----------------------------------------------------------------------------------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage's view of the finished run (docs/lineage.md), for the OpenLineage provider's listener.

        Input: the account's usage endpoint (namespace ``scheme://host[:port]`` of the connection's base URL,
        name its path). Output: the object landed (namespace and name per OpenLineage's naming: ``file`` and
        the absolute path, ``s3://bucket`` and the key, ...) with its schema, its sha256 as the dataset version,
        and, when this run wrote it, its row count and size and a lifecycle change: ``CREATE`` for a new object,
        ``OVERWRITE`` for a replaced one. XCom mode has no output dataset. OpenLineage is imported here only:
        it is an optional extra (``[lineage]``).
        """
        from urllib.parse import urlsplit

        from airflow.providers.common.compat.openlineage.facet import (
            Dataset,
            LifecycleStateChange,
            LifecycleStateChangeDatasetFacet,
            OutputDataset,
            OutputStatisticsOutputDatasetFacet,
            SchemaDatasetFacet,
            SchemaDatasetFacetFields,
        )
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

        facts = self._lineage_facts
        if facts is None:  # nothing ran to completion in this process
            return OperatorLineage()
        endpoint = urlsplit(self.hook.usage_url(facts["account_id"]))
        inputs = [Dataset(namespace=f"{endpoint.scheme}://{endpoint.netloc}", name=endpoint.path)]
        manifest = facts["manifest"]
        if manifest is None:
            return OperatorLineage(inputs=inputs)
        facets: dict[str, Any] = {"version": DatasetVersionDatasetFacet(datasetVersion=manifest["sha256"])}
        if facts["columns"] is not None:
            facets["schema"] = SchemaDatasetFacet(
                fields=[SchemaDatasetFacetFields(name=name, type=kind) for name, kind in facts["columns"].items()]
            )
        output_facets: dict[str, Any] = {}
        if manifest["written"]:
            change = LifecycleStateChange.OVERWRITE if manifest["replaced"] else LifecycleStateChange.CREATE
            facets["lifecycleStateChange"] = LifecycleStateChangeDatasetFacet(lifecycleStateChange=change)
            output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(
                rowCount=manifest["rows"], size=manifest["bytes"]
            )
        namespace, name = _lineage_name(facts["path"])
        output = OutputDataset(namespace=namespace, name=name, facets=facets, outputFacets=output_facets)
        return OperatorLineage(inputs=inputs, outputs=[output])

    # -- inputs -----------------------------------------------------------------------------------

    def _check_not_blank(self, name: str, default: str) -> None:
        value = getattr(self, name)
        if isinstance(value, str) and not value.strip():
            raise CloudflareBillingInputError(
                f"{name}={value!r} is blank (did a template render to nothing?). Pass a value, or leave it unset "
                f"(None) for {default}."
            )

    def _account(self) -> str:
        if self.account_id is None:
            return self.hook.account_id
        return validate_account_id(self.account_id, "the operator's account_id")

    def _window_bounds(self) -> tuple[dt.date, dt.date] | dt.datetime | None:
        """Validated window inputs: a date range, the ``billing_period_of`` instant, or None."""
        has_range = self.from_ is not None or self.to is not None
        if self.billing_period_of is not None:
            if has_range:
                raise CloudflareBillingInputError(
                    "Pass either billing_period_of (a whole billing period) or from_ and to (a window), "
                    f"not both (got billing_period_of={self.billing_period_of!r}, from_={self.from_!r}, "
                    f"to={self.to!r})."
                )
            return parse_instant(self.billing_period_of, "billing_period_of")
        if not has_range:
            return None
        if self.from_ is None or self.to is None:
            given, missing = ("from_", "to") if self.to is None else ("to", "from_")
            raise CloudflareBillingInputError(
                f"Only {given} was given: a window needs both from_ (inclusive) and to (exclusive). Pass "
                f"{missing} too, use billing_period_of for a whole billing period, or pass neither for the "
                "current billing period."
            )
        start = parse_instant(self.from_, "from_").date()
        end = parse_instant(self.to, "to").date()
        if start >= end:
            raise CloudflareBillingInputError(
                f"The window [from_={start.isoformat()}, to={end.isoformat()}) is empty: to is exclusive "
                "and must be after from_ (for one day D, pass from_=D and to=D + 1 day)."
            )
        return start, end

    # -- fetching ---------------------------------------------------------------------------------

    def _resolve_window(self, account: str, bounds: tuple[dt.date, dt.date] | dt.datetime | None) -> UsageWindow:
        if bounds is None:
            return UsageWindow("current_period")
        if isinstance(bounds, tuple):
            return UsageWindow("range", *bounds)
        period = self._period_containing(account, bounds)
        return UsageWindow("billing_period", period[0], period[1])

    def _period_containing(self, account: str, instant: dt.datetime) -> tuple[dt.date, dt.date]:
        """The billing period (UTC days, end exclusive) of ``account`` that contains ``instant``."""
        period = self.hook.get_billing_period(account, at=instant, subscription_id=self.subscription_id)
        return period.start.date(), period.end.date()

    def _fetch(self, account: str, window: UsageWindow, spool_dir: str | None) -> Records:
        """The answer's records: a list, or with ``spool_dir`` a re-iterable view of a spooled answer.

        For a window the API is asked for ``from_..to``, so the end day is covered whether it reads ``to``
        inclusively or not; the ledger drops the rows outside ``[from_, to)``.
        """
        if spool_dir is None:
            return self.hook.get_paygo_usage(account, window.start, window.end)
        return self.hook.download_paygo_usage(account, window.start, window.end, directory=spool_dir)

    def _ledger(self, account: str, window: UsageWindow) -> UsageLedger:
        return UsageLedger(
            f"the usage of account {account} for {window.describe()}",
            window.start_instant,
            window.end_instant,
            reconcile=self.reconcile,
        )

    def _log_window(self, ledger: UsageLedger, window: UsageWindow) -> None:
        if ledger.kept != ledger.fetched:
            self.log.info(
                "Kept %d of %d rows: the others start outside %s.", ledger.kept, ledger.fetched, window.describe()
            )
        if not ledger.fetched and window.kind == "range":
            self.log.warning(
                "Cloudflare returned no usage for %s. The API answers nothing for a range that does not contain "
                "the subscription's billing-cycle anchor day; for past usage, fetch whole billing periods "
                "(billing_period_of, or the sensor's start and end).",
                window.describe(),
            )

    def _as_focus(
        self, records: Records, account: str, window: UsageWindow, deferrals: int, period_starts: Iterable[str]
    ) -> Records:
        """The records as a FOCUS dataset when ``focus_version`` is set (utils.focus), else as they are.

        BillingPeriodEnd comes from the billing-period rule: the window's own end for a billing period,
        otherwise the account's period (from its billing-cycle anchor) of each BillingPeriodStart.
        """
        version = check_focus_version(self.focus_version)
        if version is None:
            return records
        if window.kind == "billing_period" and window.start is not None and window.end is not None:
            periods = [(window.start, window.end)]
        else:
            starts = {to_utc_timestamp(start, "BillingPeriodStart") for start in period_starts}
            try:
                periods = [self._period_containing(account, start) for start in sorted(s for s in starts if s)]
            except CloudflareRateLimitError as exc:
                self._wait_out_rate_limit(exc, deferrals)
        # A start the period rule does not produce gets no end: FocusRecords then refuses it by name.
        ends = {_midnight(start): _midnight(end) for start, end in periods}
        return FocusRecords(records, version=version, account_id=account, billing_period_ends=ends)

    def _reconcile(self, ledger: UsageLedger, records: Records, account: str) -> dict[str, Any]:
        result = ledger.reconcile(records)
        if not result["ok"]:
            self.log.warning(
                "Reconciliation: %d row(s) of %d checked disagree: ContractedCost differs from the movement "
                "of CumulatedContractedCost. First mismatches: %s",
                result["mismatch_count"],
                result["rows_checked"],
                json.dumps(result["mismatches"][:5]),
            )
            if self.strict:
                raise CloudflareBillingError(
                    f"Reconciliation failed for account {account}: {result['mismatch_count']} row(s) "
                    "where ContractedCost differs from the movement of CumulatedContractedCost (strict=True, "
                    f"nothing was written). First: {json.dumps(result['mismatches'][:3])}. Figures can be "
                    "restated; retry later, or set strict=False to land them with the mismatch recorded."
                )
        else:
            self.log.info("Reconciliation OK: %d rows checked in %d groups.", result["rows_checked"], result["groups"])
        return result

    def _wait_out_rate_limit(self, exc: CloudflareRateLimitError, deferrals: int) -> NoReturn:
        wait = max(1.0, float(exc.retry_after))
        if self.deferrable and deferrals < MAX_RATE_LIMIT_DEFERRALS:
            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            self.log.warning(
                "Cloudflare rate-limited account %s for %.0f s: deferring (no worker slot held) and "
                "resuming after the wait.",
                exc.account_id,
                wait,
            )
            self.defer(
                # Jitter: the tasks that one window's reset or one block's end releases do not all resume at once.
                trigger=TimeDeltaTrigger(dt.timedelta(seconds=wait + random.uniform(0, RATE_LIMIT_JITTER))),
                method_name="execute_complete",
                kwargs={"deferrals": deferrals + 1},
            )
        if self.deferrable:
            advice = (
                f"Still rate-limited after {deferrals} deferred wait(s); Airflow's retries take over "
                f"(give the task retry_delay of at least {wait:.0f} s)."
            )
        else:
            advice = (
                f"Retry in at least {wait:.0f} s: give the task retries with retry_delay >= {wait:.0f} s, or "
                "set deferrable=True to wait in the triggerer without holding a worker slot."
            )
        raise CloudflareRateLimitError(
            retry_after=exc.retry_after,
            status=exc.status,
            errors=exc.errors,
            account_id=exc.account_id,
            path=exc.path,
            advice=f"{exc.advice} {advice}",
        ) from exc

    # -- output -----------------------------------------------------------------------------------

    def _check_xcom_size(self, records: list[dict[str, Any]]) -> None:
        if self.max_xcom_bytes is None or xcom_backend_offloads():
            return
        size = len(json.dumps(records, separators=(",", ":")).encode("utf-8"))
        if size > self.max_xcom_bytes:
            from airflow_provider_cfbilling.compat import AirflowFailException

            raise AirflowFailException(
                f"{len(records)} usage records ({size:,} bytes as JSON) exceed max_xcom_bytes="
                f"{self.max_xcom_bytes:,}: too large for an XCom in the metadata database. Set "
                "destination='s3://bucket/...' (any object storage, or file:///...) to land them as a file and "
                "pass the small manifest on; or configure the object-storage XCom backend ([core] "
                f"xcom_backend = {XCOM_OBJECTSTORAGE_BACKEND}, with [common.io] xcom_objectstorage_path and "
                "xcom_objectstorage_threshold); or raise max_xcom_bytes."
            )

    def _destination_path(
        self, target: Target, account: str, window: UsageWindow, ledger: UsageLedger
    ) -> ObjectStoragePath:
        """The destination with ``{account_id}`` and ``{billing_period}`` filled in."""
        from airflow.sdk import ObjectStoragePath

        uri = target.uri.replace(ACCOUNT_PLACEHOLDER, account)
        if BILLING_PERIOD_PLACEHOLDER in uri:
            uri = uri.replace(BILLING_PERIOD_PLACEHOLDER, self._billing_period_label(account, window, ledger))
        return ObjectStoragePath(uri, conn_id=target.conn_id)

    def _billing_period_label(self, account: str, window: UsageWindow, ledger: UsageLedger) -> str:
        """The start date (``YYYY-MM-DD``) of the one billing period this run covers (after the ledger's pass)."""
        if window.kind == "billing_period" and window.start is not None:
            return window.start.isoformat()
        starts = sorted(
            {
                stamp.date().isoformat()
                for text in ledger.billing_periods
                if (stamp := to_utc_timestamp(text, "BillingPeriodStart"))
            }
        )
        if len(starts) > 1:
            raise CloudflareBillingInputError(
                f"destination contains {BILLING_PERIOD_PLACEHOLDER}, but the window {window.describe()} spans "
                f"{len(starts)} billing periods ({', '.join(starts)}). Fetch one period (billing_period_of, or "
                "the sensor's start and end), or drop the placeholder."
            )
        if starts:
            return starts[0]
        if window.start is not None:
            return window.start.isoformat()
        # The current period has no usage yet: place "now" in the account's billing cycle.
        start, _ = self._period_containing(account, parse_instant(dt.datetime.now(dt.timezone.utc), "now"))
        return start.isoformat()

    def _emit_asset_events(self, context: Context, manifest: dict[str, Any]) -> None:
        from airflow.sdk import Asset, AssetAlias

        outlet_events = context.get("outlet_events")
        if outlet_events is None:
            return
        for outlet in self.outlets:
            if isinstance(outlet, AssetAlias):
                if manifest["written"]:  # an alias names the objects written: an unchanged one is not
                    outlet_events[outlet].add(Asset(manifest["uri"]), extra=manifest)
            elif isinstance(outlet, Asset):
                outlet_events[outlet].extra.update(manifest)


def _lineage_name(path: ObjectStoragePath) -> tuple[str, str]:
    """OpenLineage's (namespace, name) of an object: ``file`` and its absolute path on a local disk, else
    ``scheme://bucket`` and the key (OpenLineage's naming for S3, GCS and other object stores)."""
    protocol = path.protocol or "file"
    if protocol in ("file", "local"):
        return "file", path.path
    bucket, _, key = path.path.partition("/")
    return f"{protocol}://{bucket}", key


def _lineage_enabled() -> bool:
    """Whether the OpenLineage provider is installed and configured to send events (found without importing
    OpenLineage itself: its configuration module reads Airflow's configuration only)."""
    try:
        if importlib.util.find_spec("airflow.providers.openlineage") is None:
            return False
        from airflow.providers.openlineage.conf import is_disabled
    except ImportError:
        return False
    return not is_disabled()


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


__all__ = ["CloudflarePaygoUsageOperator", "UsageWindow"]
