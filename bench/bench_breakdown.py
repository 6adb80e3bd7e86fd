"""3, in detail: where the operator's time goes on a large answer, and what the levers would buy.

For one size (default 100,000 records of LARGE_ACCOUNT, the 27 documented columns), Parquet and JSON Lines,
measured in the same run, each run a fresh process, interleaved, median of N:

* ``script <format>`` and ``operator <format>``: exactly bench_large's runs (the hand-written script, and the
  operator as a DAG author builds it), so the ratio is bench_large's ratio.
* ``stages <format>``: the operator's same run, with the provider's real functions wrapped by a clock that
  charges each stage its *exclusive* time (a stage's time minus the stages it calls): the download to the
  spool (``hooks.billing._download``), the envelope head scan (``utils.spool.scan_head``), the rest of the
  fetch, the ijson record stream (``SpooledRecords.__iter__``, timed per record), the ledger's pass
  (``UsageLedger.write``: checks, window, totals, running reconciliation), the writer (per-record ``write``;
  JSON Lines encoding ``json_lines`` and its file write; Parquet's transpose, values prepared, Arrow arrays,
  row groups written), the reconciliation result, staging (``utils.storage._stage``: open, flush, fsync),
  sha256 (``_hashed``), Parquet's row-count check (``_verify_parquet``), the commit (``land``'s rest:
  ``os.replace``) and the operator's rest (``execute``'s own time: connection, window, manifest, logs,
  removing the spool). The stages add up to the instrumented run's total by construction; the residual
  stated is that total against the uninstrumented ``operator <format>`` median (the clock's own cost, and
  noise).
* ``levers``: on one spooled answer, the ijson stream alone (a cross-check of the stage), then each lever
  against the code it would replace, on the same kept records: JSON Lines encoded by msgspec (exact
  decimals with ``decimal_format="number"``; keys in column order, and in the API's order) against
  ``json_lines``; Parquet's Arrow conversion with the timestamps cast by Arrow from their text, and in
  batches of 25,000 records, against the writer as it is; and a columnar path's core, the records' JSON text
  (as lines) read straight into Arrow by ``pyarrow.json`` with the explicit schema, then written. Each
  lever is projected onto the operator's time by its speed ratio on the stage it replaces, scaled to the
  uninstrumented operator's seconds.
* ``parse <parser>``: the whole spooled answer parsed by ijson (streamed), ``json.load`` and msgspec (both
  whole-document, numbers with a fraction as exact ``Decimal``): time, and peak RSS above idle as a multiple
  of the body.

``uv run --frozen python bench/bench_breakdown.py [--size 100000] [--repeats 3]`` prints the tables.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_large
from bench.common import markdown_table, median, ratio, run_child, simulator

FORMATS = ("parquet", "jsonl")
PARSERS = ("ijson", "json", "msgspec")
RUNS = (
    *(f"{kind} {fmt}" for fmt in FORMATS for kind in ("script", "operator", "stages")),
    "levers",
    *(f"parse {parser}" for parser in PARSERS),
)

# What the JSON Lines writer guarantees and msgspec does not do: no NaN/Infinity, U+0085/2028/2029 escaped.
_GUARDED = (b"NaN", b"Infinity", "\x85".encode(), "\u2028".encode(), "\u2029".encode())

# -- the clock: exclusive time per stage, around the provider's real functions ----------------------


class StageClock:
    """Charges each wrapped function its own time, minus the wrapped functions it calls."""

    def __init__(self) -> None:
        self.exclusive: dict[str, float] = defaultdict(float)
        self._children: list[float] = []

    def _enter(self) -> float:
        self._children.append(0.0)
        return time.perf_counter()

    def _leave(self, label: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.exclusive[label] += elapsed - self._children.pop()
        if self._children:
            self._children[-1] += elapsed

    def wrap(self, owner: Any, name: str, label: str) -> None:
        real = getattr(owner, name)

        @functools.wraps(real)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = self._enter()
            try:
                return real(*args, **kwargs)
            finally:
                self._leave(label, started)

        setattr(owner, name, timed)

    def wrap_generator(self, owner: Any, name: str, label: str) -> None:
        """A generator function: each step (each record) is charged to ``label``."""
        real = getattr(owner, name)

        @functools.wraps(real)
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            steps = real(*args, **kwargs)
            while True:
                started = self._enter()
                try:
                    item = next(steps)
                except StopIteration:
                    return
                finally:
                    self._leave(label, started)
                yield item

        setattr(owner, name, timed)


#: (owner module/class path, attribute, label, formats it applies to), outermost first.
def _instrument(clock: StageClock, file_format: str) -> None:
    from airflow_provider_cfbilling.hooks import billing as hook_module
    from airflow_provider_cfbilling.operators import billing as operator_module
    from airflow_provider_cfbilling.utils import formats, ledger, spool, storage

    operator = operator_module.CloudflarePaygoUsageOperator
    clock.wrap(operator, "execute", "operator: the rest (connection, window, manifest, logs, spool removed)")
    clock.wrap(hook_module.CloudflareBillingHook, "download_paygo_usage", "fetch: request, headers, rate-limit slot")
    clock.wrap(hook_module, "_download", "download: body streamed to the spool file")
    clock.wrap(hook_module, "scan_head", "envelope head scan (scan_head)")
    clock.wrap(
        operator_module, "land", "landing: ObjectStoragePath.fs (first use: Airflow finds the filesystem), checks"
    )
    clock.wrap(os, "replace", "commit: os.replace of the staged file")
    clock.wrap(storage, "_stage", "staging: open, flush, fsync")
    clock.wrap(storage, "_hashed", "sha256 of the staged file")
    clock.wrap(storage, "_verify_parquet", "row-count check of the staged Parquet file")
    clock.wrap(operator, "_reconcile", "reconciliation result and its log line")
    clock.wrap(ledger.UsageLedger, "write", "pass: ledger checks, window, totals, running reconciliation")
    clock.wrap_generator(spool.SpooledRecords, "__iter__", "pass: ijson record stream (SpooledRecords)")
    if file_format == "jsonl":
        clock.wrap(formats._JsonLinesWriter, "write", "writer: per-record write call (buffering)")
        clock.wrap(formats._JsonLinesWriter, "_flush", "JSONL: UTF-8 encode and file write")
        clock.wrap(formats, "json_lines", "JSONL: encoding (json_lines)")
    else:
        clock.wrap(formats._ParquetWriter, "write", "writer: per-record write call (buffering)")
        clock.wrap(formats._ParquetWriter, "_flush", "Parquet: row groups built, encoded, written")
        clock.wrap(formats._ParquetWriter, "close", "Parquet: row groups built, encoded, written")
        clock.wrap(formats._ParquetWriter, "_convert", "Parquet: Arrow arrays (pa.array, RecordBatch)")
        clock.wrap(formats, "_transpose", "Parquet: records transposed to columns")
        clock.wrap(formats, "_parquet_column", "Parquet: values prepared (timestamps parsed)")


# -- the child runs ---------------------------------------------------------------------------------


def _peak() -> int:
    return bench_large._peak_rss_bytes()


def _use_connection(url: str) -> None:
    from airflow_provider_cfbilling.testing.simulator import LARGE_ACCOUNT, SIM_TOKEN

    os.environ["AIRFLOW_CONN_CLOUDFLARE_DEFAULT"] = json.dumps(
        {"conn_type": "cloudflare", "host": url, "password": SIM_TOKEN, "extra": {"account_id": LARGE_ACCOUNT}}
    )


def child(url: str, run: str, out_dir: str) -> dict[str, Any]:
    kind, _, what = run.partition(" ")
    if kind in ("script", "operator"):
        return bench_large.child(url, run, out_dir)
    _use_connection(url)
    if kind == "stages":
        return _stages(what, out_dir)
    if kind == "parse":
        return _parse(what, out_dir)
    return _levers(out_dir)


def _stages(file_format: str, out_dir: str) -> dict[str, Any]:
    import pyarrow  # as in bench_large: loaded before the clock starts
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from airflow_provider_cfbilling.operators.billing import CloudflarePaygoUsageOperator

    assert pyarrow
    clock = StageClock()
    _instrument(clock, file_format)
    operator = CloudflarePaygoUsageOperator(
        task_id="land",
        from_=bench_large.FROM,
        to=bench_large.TO,
        destination=f"file://{out_dir}/usage.{file_format}",
        file_format=file_format,
    )
    context: Any = {"outlet_events": OutletEventAccessors()}
    started = time.perf_counter()
    manifest = operator.execute(context)
    total = time.perf_counter() - started
    return {"seconds": total, "rows": manifest["rows"], "stages": dict(clock.exclusive)}


def _spool(out_dir: str) -> Any:
    """The answer downloaded by the hook's real function (a SpooledRecords)."""
    from airflow_provider_cfbilling.hooks.billing import CloudflareBillingHook

    return CloudflareBillingHook().download_paygo_usage(None, bench_large.FROM, bench_large.TO, directory=out_dir)


def _timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def _parse(parser: str, out_dir: str) -> dict[str, Any]:
    import ijson
    import msgspec

    assert ijson and msgspec
    spooled = _spool(out_dir)
    body = os.path.getsize(spooled.path)
    idle = _peak()

    def run() -> int:
        if parser == "ijson":
            return sum(1 for _ in spooled)
        with open(spooled.path, "rb") as handle:
            if parser == "json":
                document = json.load(handle, parse_float=Decimal)
            else:
                document = msgspec.json.Decoder(float_hook=Decimal).decode(handle.read())
        return len(document["result"])

    seconds, rows = _timed(run)
    return {"seconds": seconds, "rows": rows, "peak": _peak(), "idle": idle, "body": body}


def _levers(out_dir: str) -> dict[str, Any]:
    import msgspec
    import pyarrow as pa

    from airflow_provider_cfbilling.utils import formats
    from airflow_provider_cfbilling.utils.ledger import UsageLedger

    spooled = _spool(out_dir)
    figures: dict[str, float] = {}
    figures["ijson stream alone (drained)"], rows = _timed(lambda: sum(1 for _ in spooled))
    ledger = UsageLedger("the bench's answer", *_window())
    kept = list(ledger.admit(spooled))
    figures["ledger pass over records in memory (admit)"], _ = _timed(
        lambda: sum(1 for _ in UsageLedger("the bench's answer", *_window()).admit(kept))
    )
    batches = [kept[i : i + formats._BATCH] for i in range(0, len(kept), formats._BATCH)]

    # -- JSON Lines: the current encoder against msgspec (exact decimals as JSON numbers) --------------
    def current() -> bytes:
        return b"".join(formats.json_lines(batch).encode("utf-8") for batch in batches)

    encoder = msgspec.json.Encoder(decimal_format="number")

    def guarded(text: bytes) -> bytes:
        # What msgspec does not do that the writer guarantees: no NaN/Infinity (not JSON), and the three
        # Unicode line breaks escaped. A hit would send the batch to json_lines' careful path; none here.
        if (
            b"NaN" in text
            or b"Infinity" in text
            or b"\xc2\x85" in text
            or b"\xe2\x80\xa8" in text
            or b"\xe2\x80\xa9" in text
        ):
            raise AssertionError("the lever's guard would fall back here")
        return text

    def msgspec_column_order() -> bytes:
        out = []
        for batch in batches:
            ordered = []
            for record in batch:
                keys, in_order = formats._layout(record)
                ordered.append(record if in_order else {key: record[key] for key in keys})
            out.append(guarded(encoder.encode_lines(ordered)))
        return b"".join(out)

    def msgspec_api_order() -> bytes:
        return b"".join(guarded(encoder.encode_lines(batch)) for batch in batches)

    figures["JSONL encoding: json_lines (current)"], reference = _timed(current)
    figures["JSONL encoding: msgspec, keys in column order"], by_column = _timed(msgspec_column_order)
    figures["JSONL encoding: msgspec, keys in the API's order"], by_api = _timed(msgspec_api_order)
    same_values = _same_values(reference, by_column) and _same_values(reference, by_api)
    identical = by_column == reference

    # -- Parquet: the writer as it is, against the levers on its dominant stage ------------------------
    columns = formats.column_order(kept)

    def parquet(batch_size: int | None = None, cast_stamps: bool = False) -> int:
        saved_batch, saved_column = formats._PARQUET_BATCH, formats._parquet_column
        if batch_size is not None:
            formats._PARQUET_BATCH = batch_size
        if cast_stamps:

            def stamps_as_text(column: str, values: list[Any], kind: str) -> Any:
                if kind == formats.TIMESTAMP_KIND:
                    # Arrow parses ISO 8601 text with its offset; it refuses text without one and digits
                    # finer than the column's milliseconds, as _to_timestamp_ms does.
                    return pa.array(values, type=pa.string()).cast(pa.timestamp("ms", tz="UTC"))
                return saved_column(column, values, kind)

            formats._parquet_column = stamps_as_text
        try:
            with open(os.path.join(out_dir, "lever.parquet"), "wb") as handle:
                writer = formats.open_writer(handle, "parquet", columns)
                for record in kept:
                    writer.write(record)
                return writer.close()
        finally:
            formats._PARQUET_BATCH, formats._parquet_column = saved_batch, saved_column

    def table_of(path: str) -> Any:
        import pyarrow.parquet as pq

        return pq.read_table(path)

    figures["Parquet writer (current)"], _ = _timed(parquet)
    expected = table_of(os.path.join(out_dir, "lever.parquet"))
    figures["Parquet writer, timestamps cast by Arrow from text"], _ = _timed(lambda: parquet(cast_stamps=True))
    stamps_same = table_of(os.path.join(out_dir, "lever.parquet")).equals(expected)
    figures["Parquet writer, batches of 25,000 records"], _ = _timed(lambda: parquet(batch_size=25_000))
    batches_same = table_of(os.path.join(out_dir, "lever.parquet")).equals(expected)
    figures["Parquet writer, both"], _ = _timed(lambda: parquet(batch_size=25_000, cast_stamps=True))

    # A columnar path's core: the records' JSON text straight into Arrow (pyarrow.json, explicit schema: exact
    # decimal128, refusing a value it would round), then written; no Python object per value. The text here is
    # the records as lines (json_lines' output): re-framing the API's envelope as lines is not timed.
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    lines = os.path.join(out_dir, "records.jsonl")
    with open(lines, "wb") as handle:
        handle.write(reference)

    def arrow_from_text() -> int:
        table = pa_json.read_json(
            lines,
            parse_options=pa_json.ParseOptions(
                explicit_schema=formats.parquet_schema(columns), unexpected_field_behavior="error"
            ),
        )
        pq.write_table(
            table,
            os.path.join(out_dir, "lever.parquet"),
            compression="snappy",
            row_group_size=formats._PARQUET_ROW_GROUP,
        )
        return int(table.num_rows)

    figures["Parquet from the records' text by pyarrow.json, then written"], _ = _timed(arrow_from_text)
    text_same = table_of(os.path.join(out_dir, "lever.parquet")).equals(expected)
    spooled.close()
    return {
        "seconds": 0.0,
        "rows": rows,
        "figures": figures,
        "checks": {
            "msgspec JSONL: the same values (Decimal-equal) as json_lines": same_values,
            "msgspec JSONL, column order: byte-identical to json_lines": identical,
            "Parquet, timestamps cast: the same table": stamps_same,
            "Parquet, 25,000-record batches: the same table": batches_same,
            "Parquet from text by pyarrow.json: the same table": text_same,
        },
    }


def _window() -> tuple[Any, Any]:
    import datetime as dt

    start, end = dt.date.fromisoformat(bench_large.FROM), dt.date.fromisoformat(bench_large.TO)
    return (
        dt.datetime(start.year, start.month, start.day, tzinfo=dt.timezone.utc),
        dt.datetime(end.year, end.month, end.day, tzinfo=dt.timezone.utc),
    )


def _same_values(one: bytes, other: bytes) -> bool:
    lines, others = one.splitlines(), other.splitlines()
    return len(lines) == len(others) and all(
        json.loads(a, parse_float=Decimal) == json.loads(b, parse_float=Decimal)
        for a, b in zip(lines, others, strict=True)
    )


# -- the parent: runs interleaved, medians, tables --------------------------------------------------


def measure(size: int, repeats: int) -> dict[str, Any]:
    from airflow_provider_cfbilling.testing.simulator import large_zones_for

    samples: dict[str, list[dict[str, Any]]] = {run: [] for run in RUNS}
    load_before = os.getloadavg()
    with simulator() as sim:
        sim.configure(large_zones=large_zones_for(size, bench_large.DAYS))
        body = bench_large._body_size(sim.url)  # also warms the simulator's cache
        for _ in range(repeats):
            for run in RUNS:  # interleaved: drifting load hits every run alike
                samples[run].append(run_child("bench.bench_breakdown", sim.url, run))
    # Every run landed the same rows; every parse read the same records (the answer, before the window).
    landed = {
        sample["rows"] for run in RUNS if run.split()[0] in ("script", "operator", "stages") for sample in samples[run]
    }
    parsed = {sample["rows"] for run in RUNS if run.split()[0] in ("levers", "parse") for sample in samples[run]}
    assert len(landed) == 1 and len(parsed) == 1 and landed.pop() >= size, (landed, parsed)
    return {
        "size": size,
        "body": body,
        "rows": samples["operator jsonl"][0]["rows"],
        "samples": samples,
        "load": [load_before, os.getloadavg()],
    }


def report(measured: dict[str, Any]) -> str:
    samples = measured["samples"]
    seconds = {run: median([s["seconds"] for s in samples[run]]) for run in RUNS}

    def spread(run: str) -> str:
        values = [s["seconds"] for s in samples[run]]
        return f"{median(values):.3f} s ({min(values):.2f}-{max(values):.2f})"

    parts = [
        f"{measured['rows']:,} records, {measured['body'] / 1e6:.1f} MB of JSON; median of "
        f"{len(samples['levers'])} runs each, fresh process per run, interleaved; load average (1, 5, 15 min) "
        f"{', '.join(f'{x:.2f}' for x in measured['load'][0])} at start, "
        f"{', '.join(f'{x:.2f}' for x in measured['load'][1])} at the end."
    ]
    levers = {name: median([s["figures"][name] for s in samples["levers"]]) for name in samples["levers"][0]["figures"]}
    for file_format in FORMATS:
        script, operator = seconds[f"script {file_format}"], seconds[f"operator {file_format}"]
        stage_runs = samples[f"stages {file_format}"]
        labels = list(dict.fromkeys(label for s in stage_runs for label in s["stages"]))
        stages = {label: median([s["stages"].get(label, 0.0) for s in stage_runs]) for label in labels}
        instrumented = seconds[f"stages {file_format}"]
        table = [
            [label, f"{value:.3f} s", f"{100 * value / instrumented:.1f}%"]
            for label, value in sorted(stages.items(), key=lambda item: -item[1])
        ]
        table.append(["**sum of the stages**", f"{sum(stages.values()):.3f} s", ""])
        table.append(["the instrumented run's total, median (min-max)", spread(f"stages {file_format}"), "100%"])
        table.append(
            [
                "the operator's run, uninstrumented, median (min-max)",
                spread(f"operator {file_format}"),
                f"residual {instrumented - operator:+.3f} s ({100 * (instrumented - operator) / operator:+.1f}%)",
            ]
        )
        table.append(
            [
                "the hand-written script, median (min-max)",
                spread(f"script {file_format}"),
                f"operator/script {ratio(operator, script):.2f}x",
            ]
        )
        parts.append(
            f"**{file_format}**: the operator's stages (exclusive times)\n\n"
            + markdown_table(["stage", "seconds", "share"], table)
        )
        parts.append(_projections(file_format, stages, levers, operator * ratio(1, instrumented), script, seconds))
    lever_rows = [[name, f"{value:.3f} s"] for name, value in levers.items()]
    parts.append(
        "Levers, measured in isolation on the same kept records\n\n"
        + markdown_table(["measure", "seconds"], lever_rows)
    )
    checks = samples["levers"][0]["checks"]
    parts.append("\n".join(f"- {name}: {'yes' if value else '**no**'}" for name, value in checks.items()))
    parse_rows = []
    for parser in PARSERS:
        runs = samples[f"parse {parser}"]
        growth = median([s["peak"] - s["idle"] for s in runs])
        parse_rows.append(
            [
                parser,
                f"{seconds[f'parse {parser}']:.3f} s",
                f"{growth / 1e6:.0f} MB",
                f"{growth / runs[0]['body']:.2f}x",
            ]
        )
    parts.append(
        "Parsing the spooled answer (fresh process each)\n\n"
        + markdown_table(["parser", "seconds", "peak RSS above idle", "x body"], parse_rows)
    )
    return "\n\n".join(parts)


def _projections(
    file_format: str,
    stages: dict[str, float],
    levers: dict[str, float],
    per_second: float,
    script: float,
    seconds: dict[str, float],
) -> str:
    """The operator's projected time with each lever.

    Each lever was timed in another process than the operator's stages, against the code it would replace
    (same data, same process): the stage it replaces in the operator's run is scaled by that speed ratio
    (``stage * (lever / current - 1)`` saved or added), so that the two processes' different speeds on a
    shared machine do not enter the projection.
    """
    operator = seconds[f"operator {file_format}"]
    ijson_stage = stages.get("pass: ijson record stream (SpooledRecords)", 0.0)

    def scaled(stage: float, lever: float, current: float) -> float:
        return stage * (ratio(lever, current) - 1)

    swaps: list[tuple[str, float, str]] = []
    # Whole document against the stream: fresh processes, the same spooled answer.
    msgspec_parse = scaled(ijson_stage, seconds["parse msgspec"], seconds["parse ijson"])
    swaps.append(
        ("records parsed by msgspec (whole document) instead of ijson", msgspec_parse, "memory: see the parse table")
    )
    if file_format == "jsonl":
        encoding = stages.get("JSONL: encoding (json_lines)", 0.0)
        current = levers["JSONL encoding: json_lines (current)"]
        column = scaled(encoding, levers["JSONL encoding: msgspec, keys in column order"], current)
        api = scaled(encoding, levers["JSONL encoding: msgspec, keys in the API's order"], current)
        swaps += [
            ("JSONL encoded by msgspec, keys in column order", column, "exact; byte-identical here"),
            ("JSONL encoded by msgspec, keys in the API's order", api, "exact; column order no longer fixed"),
            ("both: msgspec parse + msgspec encode (column order)", msgspec_parse + column, ""),
        ]
    else:
        writer = sum(value for label, value in stages.items() if label.startswith(("Parquet:", "writer:")))
        current = levers["Parquet writer (current)"]
        stamps = scaled(writer, levers["Parquet writer, timestamps cast by Arrow from text"], current)
        batched = scaled(writer, levers["Parquet writer, batches of 25,000 records"], current)
        both = scaled(writer, levers["Parquet writer, both"], current)
        swaps += [
            ("Parquet timestamps cast by Arrow from text", stamps, "same table"),
            ("Parquet batches of 25,000 records", batched, "same table; more memory per batch"),
            ("both Parquet levers", both, ""),
            ("timestamps cast + msgspec parse", stamps + msgspec_parse, ""),
        ]
        from_text = levers.get("Parquet from the records' text by pyarrow.json, then written")
        if from_text is not None:
            ledger = stages.get("pass: ledger checks, window, totals, running reconciliation", 0.0)
            swaps.append(
                (
                    "columnar: no ijson, no ledger pass; Arrow from the text by pyarrow.json",
                    scaled(writer, from_text, current) - ijson_stage - ledger,
                    "a floor: checks and sums in Arrow, and the envelope re-framed as lines, not counted",
                )
            )
    # ``per_second``: the uninstrumented operator's seconds per instrumented second, so that a stage's share of
    # the instrumented run is the share it takes of the operator's own time.
    rows = [
        [
            name,
            f"{delta * per_second:+.3f} s",
            f"{operator + delta * per_second:.3f} s",
            f"{ratio(operator + delta * per_second, script):.2f}x",
            note,
        ]
        for name, delta, note in swaps
    ]
    rows.append(
        [
            "(no ijson at all: the stream's time removed)",
            f"{-ijson_stage * per_second:+.3f} s",
            f"{operator - ijson_stage * per_second:.3f} s",
            f"{ratio(operator - ijson_stage * per_second, script):.2f}x",
            "a floor, not a lever",
        ]
    )
    return f"**{file_format}**: the operator's time projected with each lever\n\n" + markdown_table(
        ["lever", "time saved (-) or added (+)", "projected operator", "projected / script", "note"], rows
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=3, metavar=("URL", "RUN", "OUT_DIR"))
    parser.add_argument("--size", type=int, default=100_000, help="records (default 100,000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the raw samples to this file")
    parser.add_argument("--report", help="print the tables of raw samples written by --json (no run)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
    elif args.report:
        print(report(json.loads(Path(args.report).read_text())))
    else:
        from bench.common import prepare_airflow_env

        prepare_airflow_env()
        measured = measure(args.size, args.repeats)
        if args.json:
            Path(args.json).write_text(json.dumps(measured, indent=1))
        print(report(measured))
