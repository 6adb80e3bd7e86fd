"""The per-record work on a usage answer, in one pass: contract checks, the window, totals, reconciliation.

The hook streams the answer's records; a :class:`UsageLedger` reads each one once and, in that pass,
checks it against Cloudflare's documented contract (:class:`~airflow_provider_cfbilling.utils.formats.RecordCheck`),
keeps it or drops it by the window, adds its cost to the exact totals, notes the three figures
reconciliation needs and its billing period, and hands the kept record to a file writer
(:meth:`UsageLedger.write`). Nothing climbs back: the operator reads the ledger's results afterwards.

Why one pass and not several: a month of zone-level usage is hundreds of thousands of records, and each
pass over a spooled answer parses it again (about as long as the whole download). The checks still come
before anything is *committed*: the file is written to a staged copy while the pass runs, and a failed
check, a refused value or a failed reconciliation discards it (``utils.storage.land``).

What the pass keeps in memory does not grow with the rows: running sums per currency and service, a running
figure per reconciliation group (period, currency, service, zone), the billing periods seen; plus what the
writer holds (2,000 records awaiting their JSON lines; for Parquet 2,500 records and one 25,000-row group
as Arrow arrays). Reconciliation needs each group's rows in ChargePeriodStart order, the API's order; rows
out of order cost one more pass at the end (:meth:`UsageLedger.reconcile`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import IO, Any

from airflow_provider_cfbilling.exceptions import CloudflareResponseError
from airflow_provider_cfbilling.utils import reconcile as reconciliation
from airflow_provider_cfbilling.utils.formats import (
    REQUIRED_COLUMNS,
    NewColumnError,
    RecordCheck,
    RecordWriter,
    column_order,
    needs_columns,
    open_writer,
    to_utc_timestamp,
)

Record = dict[str, Any]


class UsageLedger:
    """Checks, filters, totals and reconciles one usage answer in a single pass over its records.

    :param source: what the records are, for messages (e.g. "the usage of account 023e... for [...)")
    :param start: the window's first instant (inclusive), or None to keep every row (the current period)
    :param end: the window's end (exclusive), or None to keep every row
    :param reconcile: whether to reconcile (see :meth:`reconcile`)
    """

    def __init__(
        self, source: str, start: dt.datetime | None = None, end: dt.datetime | None = None, *, reconcile: bool = True
    ) -> None:
        self.source = source
        self._start, self._end = start, end
        # Without a window the API answers the current period from its first day: every period is complete.
        self._running = (
            reconciliation.RunningReconciliation(start, complete_periods=start is None) if reconcile else None
        )
        self._check = RecordCheck(source)
        self._keeps: dict[str, bool] = {}  # ChargePeriodStart text -> in the window
        self.fetched = 0
        self.kept = 0
        self.complete = False
        self.totals = reconciliation.CostTotals()
        self._periods: set[str] = set()

    # -- the pass -------------------------------------------------------------------------------

    def admit(self, records: Iterable[Record]) -> Iterator[Record]:
        """Yield the records the window keeps, each checked and accounted for; every record is read once.

        :raises CloudflareResponseError: a record breaks the contract (nothing is to be used)
        """
        check, keeps, totals, periods = self._check, self.keeps, self.totals, self._periods
        running = self._running
        for record in records:
            self.fetched += 1
            check(record, self.fetched)
            if not keeps(record):
                continue
            self.kept += 1
            totals.add(record)
            if running is not None and running.in_order:
                running.add(record)
            periods.add(record["BillingPeriodStart"])
            yield record
        self.complete = True

    def keeps(self, record: Record) -> bool:
        """Whether the record's ChargePeriodStart (checked already) falls in ``[start, end)``."""
        if self._start is None or self._end is None:
            return True
        text = record["ChargePeriodStart"]
        kept = self._keeps.get(text)
        if kept is None:
            stamp = to_utc_timestamp(text, "ChargePeriodStart")
            kept = self._keeps[text] = stamp is not None and self._start <= stamp < self._end
        return kept

    def kept_records(self, records: Any) -> KeptRecords:
        """The records this finished pass kept (its window), re-iterable and sized like ``records`` themselves."""
        return KeptRecords(records, self)

    def run(self, records: Iterable[Record]) -> list[Record]:
        """The pass, for records that live in memory anyway (XCom): the kept records as a list."""
        return list(self.admit(records))

    def write(self, records: Iterable[Record], fileobj: IO[bytes], file_format: str) -> int:
        """Write the kept records to ``fileobj`` in ``file_format``; the pass itself unless it has run already.

        CSV and Parquet put every column in their header or schema before the first row: the pass starts with
        the first record's columns, and should a later record bring another one, the pass goes on without
        writing and the file is written again in a second pass (re-iterating ``records``) with all columns.

        :return: the rows written
        :raises CloudflareResponseError: a record breaks the contract, or a value does not fit the format
        """
        if self.complete:  # checked already (e.g. to name the destination): write what the window keeps
            kept = (record for record in records if self.keeps(record))
            return self._write(kept, fileobj, file_format, self._columns(records, file_format))
        stream = self.admit(records)
        first = next(stream, None)
        columns = column_order([first] if first is not None else []) if needs_columns(file_format) else []
        try:
            return self._write(_chain(first, stream), fileobj, file_format, columns)
        except NewColumnError:
            for _ in stream:  # finish the checks and sums, then write with every column
                pass
        fileobj.seek(0)
        fileobj.truncate()
        kept = (record for record in records if self.keeps(record))
        return self._write(kept, fileobj, file_format, self._columns(records, file_format))

    def _columns(self, records: Iterable[Record], file_format: str) -> list[str]:
        if not needs_columns(file_format):
            return list(REQUIRED_COLUMNS)
        return column_order(record for record in records if self.keeps(record))

    def _write(self, records: Iterable[Record], fileobj: IO[bytes], file_format: str, columns: list[str]) -> int:
        writer: RecordWriter = open_writer(fileobj, file_format, columns)
        try:
            for record in records:  # the pass's own errors (a broken contract) propagate as they are
                try:
                    writer.write(record)
                except CloudflareResponseError as exc:
                    raise self._refused(exc) from None
        except NewColumnError:
            writer.close()  # finished now, while its file is open: the caller starts the file again
            raise
        try:
            return writer.close()
        except CloudflareResponseError as exc:
            raise self._refused(exc) from None

    def _refused(self, exc: CloudflareResponseError) -> CloudflareResponseError:
        """A value the file format cannot hold, with whose answer it is."""
        return CloudflareResponseError(f"{self.source[:1].upper()}{self.source[1:]}: {exc}")

    # -- results --------------------------------------------------------------------------------

    @property
    def billing_periods(self) -> list[str]:
        """The BillingPeriodStart texts of the kept rows, sorted."""
        return sorted(self._periods)

    def first_period_start(self) -> dt.datetime | None:
        """The earliest BillingPeriodStart of the kept rows, as an instant."""
        starts = (to_utc_timestamp(text, "BillingPeriodStart") for text in self._periods)
        return min((start for start in starts if start is not None), default=None)

    def reconcile(self, records: Iterable[Record]) -> dict[str, Any]:
        """Reconciliation of the kept rows (:func:`~airflow_provider_cfbilling.utils.reconcile.reconcile`), from
        the window's start, or for the current period from each period's first day.

        Computed in the pass while each group's rows come in ChargePeriodStart order (the API's order);
        otherwise from ``records`` again (one more pass, sorting per group).
        """
        if self._running is None:
            raise ValueError("This ledger was made with reconcile=False.")
        if self._running.in_order:
            return self._running.result()
        complete_from = self._start if self._start is not None else self.first_period_start()
        return reconciliation.reconcile((r for r in records if self.keeps(r)), complete_from)


class KeptRecords:
    """A view of the records a :class:`UsageLedger` pass kept: iterated afresh each time, counted by the pass."""

    def __init__(self, records: Iterable[Record], ledger: UsageLedger) -> None:
        self._records = records
        self._ledger = ledger

    def __iter__(self) -> Iterator[Record]:
        return (record for record in self._records if self._ledger.keeps(record))

    def __len__(self) -> int:
        return self._ledger.kept


def _chain(first: Record | None, rest: Iterator[Record]) -> Iterator[Record]:
    if first is not None:
        yield first
        yield from rest
