"""Streaming sinks: files appear at a steady processing-time cadence, whole or not at all.

Every sink re-windows into the global window with a repeated processing-time trigger, so a
payment is written however late it is (no event-time window can discard it), and each pane
becomes one staged file renamed into place under a unique name.

Before a file is staged, its table is scanned with the privacy rule (`transforms.core.scanner`): a
file with a secret past the redaction is refused, never written (not even staged, and not
kept aside anywhere: a quarantined copy would hold the secret), logged with its file, column
and row, and counted as `privacy:refused_files` in the stats; the job goes on. Live aggregate
messages for Pub/Sub are screened the same way (`privacy:refused_messages`).
"""

from __future__ import annotations

import json
import logging
import posixpath
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, timezone
from typing import Any

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import pvalue
from apache_beam.transforms import trigger, window

from schemas import layout
from schemas.arrow import live_schema, payment_file_schema, payment_schema, rejected_schema
from schemas.enums import AggregateKind, GateLevel, PaneTiming
from schemas.money import fils_to_decimal, format_bhd
from schemas.records import PAYMENT_FILE_ORDER
from schemas.run import Run
from transforms.core import stats as st
from transforms.core.columnar import ArrowBlock, concat_blocks
from transforms.core.gates import (
    CHANNELS,
    UNKNOWN_CHANNEL,
    GateResult,
    GateThresholds,
    evaluate_gates,
)
from transforms.core.outputs import Output
from transforms.core.scanner import Leak, origin_of, scan_message, scan_tables, scan_texts
from transforms.dedup.table import against_existing, rejected_conflicts, split_by_partition
from transforms.storage.files import list_files, read_parquet, replace, write_parquet, write_text
from transforms.storage.partitions import accepted_stats
from transforms.streaming import acks
from transforms.streaming.rolling import OpenFile, PartitionFiles, Rolling, publish_rows

log = logging.getLogger(__name__)


def every(seconds: int) -> beam.WindowInto:
    """Global window, fired every `seconds` of processing time, panes not repeated."""
    return beam.WindowInto(
        window.GlobalWindows(),
        trigger=trigger.Repeatedly(trigger.AfterProcessingTime(seconds)),
        accumulation_mode=trigger.AccumulationMode.DISCARDING,
    )


def _refuse(what: str, leaks: list[Leak], rows: int, origins: Iterable[str | None] = ()) -> None:
    """Log a refusal: where the secrets are (never a value) and that the data was dropped."""
    shown = "; ".join(str(leak) for leak in leaks[:10])
    more = f" (and {len(leaks) - 10} more)" if len(leaks) > 10 else ""
    seen = sorted({o for o in origins if o})
    where = f"; events from {', '.join(seen[:10])}" if seen else ""
    log.error(
        "privacy scan refused to publish %s: %d secret(s) past redaction: %s%s%s. Its %d row(s) "
        "were dropped, never written (not kept anywhere: a copy would hold the secret); the "
        "job goes on. This is a defect of transforms/core/privacy.py: report it with the above.",
        what,
        len(leaks),
        shown,
        more,
        where,
        rows,
    )


def _scan_refused(table: pa.Table, final: str) -> bool:
    """Whether the privacy scan refuses `table` for `final` (then logged: the caller counts
    the refusal and writes nothing)."""
    [leaks] = scan_tables([(table, final)])  # one pre-filter call per strength, not per column
    if leaks:
        _refuse(final, leaks, table.num_rows, (origin_of(table, leak.row) for leak in leaks))
    return bool(leaks)


def _publish(
    table: pa.Table, root: str, run_id: str, final: str, counts: dict[str, int] | None = None
) -> str | None:
    """Stage `table` and rename it into place as `final`; None, with nothing written, when the
    privacy scan finds a secret in it (the caller counts the refusal). With `counts`, a stats
    file of them is staged too and renamed into place right after the data file, so that
    a kill commits both or neither (but in the instant between two local renames).

    For rejected and live aggregate files: new rows under unique names that no writer reads
    back to de-duplicate, so they do not wait for a batch run's lease. Payments files are
    published by `transforms.streaming.rolling.publish_rows`, under the lease."""
    if _scan_refused(table, final):
        return None
    staged = layout.staged(root, run_id, final)
    write_parquet(table, staged)
    sources, targets = [staged], [final]
    if counts is not None:
        stats_path = layout.pane_stats_path(root, run_id)
        sources.append(layout.staged(root, run_id, stats_path))
        targets.append(stats_path)
        write_text(sources[-1], json.dumps(counts, indent=1))
    replace(sources, targets)
    return final


REFUSED_FILES = st.privacy_refused_key("files")
REFUSED_MESSAGES = st.privacy_refused_key("messages")


def _write_refusal_stats(root: str, run_id: str, key: str) -> None:
    """Count a refusal where a sink has no stats output of its own: one more stats file of the
    run (the stats are the sum over `runs/<run_id>/stats-*.json`)."""
    commit_stats({key: 1}, root, run_id)


def commit_stats(stats: dict[str, int], root: str, run_id: str, path: str | None = None) -> str:
    """One more stats file of the run (`path`, or a new name), staged and renamed into place,
    so that a killed pipeline leaves a whole file or none (the stats are the sum over them)."""
    path = path or layout.pane_stats_path(root, run_id)
    if path.startswith("gs://"):  # an object is written whole or not at all: no staging
        write_text(path, json.dumps(stats, indent=1))
        return path
    staged = layout.staged(root, run_id, path)
    write_text(staged, json.dumps(stats, indent=1))
    replace([staged], [path])
    return path


def _commit_settled(
    stats: dict[str, int],
    root: str,
    run_id: str,
    settled: Iterable[str],
    what: str,
    committed: bool = False,
) -> None:
    """With deferred acks: the stats of what a writer decided (`stats`, with a read per
    outcome), committed as a stats file unless already `committed` with the writer's file;
    then the messages they came from are settled (acknowledged). A kill before the stats file
    leaves the messages unacknowledged: they come back, and the writers leave out what is
    already committed."""
    counted = st.with_reads(stats)
    if counted:
        if not committed:
            commit_stats(counted, root, run_id)
        totals = st.totals_by_kind(counted)
        log.info(
            "committed %s: read %d, accepted %d, rejected %d, duplicates %d",
            what,
            *(totals.get(kind, 0) for kind in (st.READ, st.ACCEPTED, st.REJECTED, st.DUPLICATES)),
        )
    acks.settle(settled)


class WritePartitionPaneFn(beam.DoFn):  # type: ignore[misc]
    """((channel, day), ArrowBlocks of one pane) -> the pane's rows added to the run's open
    file of that partition (`transforms.streaming.rolling`: a new file once it is an hour old
    or holds `rolling.rows` rows, so ~24 files a partition a day).

    Rows another run already committed to the partition (a restarted pipeline, a resent event,
    the nightly batch) are left out here, counted as duplicates in output or rejected as
    conflicts, so a restart never writes a second row for an event: de-duplication state does
    not survive a restart, but the files do (their ids are read once, then kept). Rows the
    open file already holds were committed by an earlier attempt of this pane (a retried
    bundle) and are not written again. Emits the path (main), rejected conflicts
    (`rejected`) and what it accepted (`stats`). With `settle` (deferred acks, local runner)
    it commits those stats itself, right after the file, and settles the messages of every
    row but the conflicts (those are settled where they are rejected).
    """

    def __init__(
        self,
        run: Run,
        settle: bool = False,
        rolling: Rolling = Rolling(),  # noqa: B008 - frozen, so safe to share
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._run = run
        self._root = run.output_root
        self._run_id = run.run_id
        self._settle = settle
        self._rolling = rolling
        self._clock = clock

    def process(self, element: tuple[tuple[str, str], Iterable[ArrowBlock]]) -> Iterator[Any]:
        (channel, day), blocks = element
        table = concat_blocks(blocks, payment_schema())
        directory = layout.payments_dir(self._root, channel, date.fromisoformat(day))
        now = self._clock()
        files = PartitionFiles.listed(directory, self._run_id)
        result = against_existing(table, files.existing_rows(table["event_id"].combine_chunks()))
        winners = result.winners
        opened = OpenFile.read(files, self._rolling, now) if winners.num_rows else None
        retried = opened.holds(winners["event_id"]) if opened is not None else None
        new = winners if retried is None else winners.filter(pc.invert(retried))
        new = new.sort_by(list(PAYMENT_FILE_ORDER))
        stats: Counter[str] = Counter(result.stats)
        if not self._settle and retried is not None:
            # Without deferred acks a retried bundle's outputs replace the failed attempt's:
            # the rows it committed are counted here.
            stats.update(accepted_stats(channel, winners.filter(retried)))
        committed = False
        if new.num_rows:
            rows = new.select(payment_file_schema().names)
            accepted = accepted_stats(channel, new)
            # With deferred acks the file's stats are committed with it.
            counts = st.with_reads(st.merge([stats, accepted])) if self._settle else None
            new_file = layout.join(directory, f"part-{self._run_id}-<new>.parquet")
            where = opened.path if opened is not None else new_file
            if _scan_refused(rows, where):
                stats[REFUSED_FILES] += 1
            else:
                text = json.dumps(counts, indent=1) if counts is not None else None
                final = publish_rows(rows, files, opened, self._root, self._run_id, now, text)
                yield final
                log.info("wrote %d payments to %s", new.num_rows, final)
                stats.update(accepted)
                committed = self._settle
        if self._settle:
            settled = acks.not_in(acks.message_ids(table), result.conflicts)
            where = _partition_name(directory)
            _commit_settled(dict(stats), self._root, self._run_id, settled, where, committed)
            stats.clear()
        if result.conflicts.num_rows:
            rejected, counts = rejected_conflicts(result, self._run)
            yield pvalue.TaggedOutput(Output.REJECTED.value, ArrowBlock.of(rejected))
            if not self._settle:
                stats.update(counts)
        if stats:
            yield pvalue.TaggedOutput(Output.STATS.value, dict(stats))


def _partition_name(directory: str) -> str:
    """How a log line names a pane's partition."""
    return posixpath.basename(posixpath.dirname(directory)) + "/" + posixpath.basename(directory)


class WriteStreamingPayments(beam.PTransform):  # type: ignore[misc]
    """Blocks of first deliveries -> rows added to the run's open file of their own day's
    partition every `every_seconds` (rolled as `rolling` says); outputs the paths
    (`written`), rejected conflicts and stats."""

    def __init__(
        self,
        run: Run,
        every_seconds: int,
        settle: bool = False,
        rolling: Rolling = Rolling(),  # noqa: B008 - frozen, so safe to share
    ) -> None:
        super().__init__()
        self._fn = WritePartitionPaneFn(run, settle, rolling)
        self._every = every_seconds

    def expand(self, blocks: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return (
            blocks
            | "SplitByPartition"
            >> beam.FlatMap(
                lambda b: ((k, ArrowBlock.of(t)) for k, t in split_by_partition(b.table()))
            )
            | "EveryPaymentsPane" >> every(self._every)
            | "GroupPaneByPartition" >> beam.GroupByKey()
            | "WritePartitionFile"
            >> beam.ParDo(self._fn).with_outputs(
                Output.REJECTED.value, Output.STATS.value, main=Output.WRITTEN.value
            )
        )


class _OneFilePerPane(beam.PTransform):  # type: ignore[misc]
    """A sink that writes what it received during each processing-time pane as one file."""

    def __init__(self, run: Run, every_seconds: int, settle: bool = False) -> None:
        super().__init__()
        self._root = run.output_root
        self._run_id = run.run_id
        self._every = every_seconds
        self._settle = settle

    def _panes(self, elements: beam.PCollection, name: str) -> beam.PCollection:
        """(None, the elements of one pane), once per pane."""
        return (
            elements
            | f"Every{name}Pane" >> every(self._every)
            | f"One{name}Key" >> beam.Map(lambda element: (None, element))
            | f"Group{name}Pane" >> beam.GroupByKey()
        )


def rejected_stats(table: pa.Table) -> dict[str, int]:
    """`rejected:<channel>:<code>` counts of rejected rows (channel `unknown` when none)."""
    keyed = pa.table(
        {
            "channel": pc.fill_null(table["channel"], st.UNKNOWN_CHANNEL),
            "code": table["error_code"],
        }
    )
    counts = keyed.group_by(["channel", "code"], use_threads=False).aggregate([("code", "count")])
    return {
        st.rejected_key(row["channel"], row["code"]): row["code_count"]
        for row in counts.to_pylist()
    }


def without_rejected(stats: dict[str, int]) -> dict[str, int]:
    """Stats less their rejected counts: in streaming those come from the rejected writer."""
    return st.without(stats, st.REJECTED)


def without_outcomes(stats: dict[str, int]) -> dict[str, int]:
    """Ingest stats less their rejected and read counts: with deferred acks, each outcome is
    counted, with its read, in the stats file committed with it."""
    return st.without(without_rejected(stats), st.READ)


class WriteStreamingRejected(_OneFilePerPane):
    """Rejected ArrowBlocks -> one Parquet file under rejected/ per pane (`written`), and the
    counts of what each file holds (`stats`).

    Counting rejections where they are written, as accepted rows are counted where they are
    written, makes the stats files a ledger of committed output: once they balance, every
    rejected row counted is in a file (the ingest step's own counts could be committed a pane
    before the rows, and lost with them if the local runner is killed in between). With
    `settle` (deferred acks), the writer commits those counts itself and settles the rows'
    messages, and leaves out a message already rejected (see `write_rejected_pane`).
    """

    def expand(self, rejected: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return self._panes(rejected, "Rejected") | "WriteRejectedFile" >> beam.FlatMap(
            write_rejected_pane, self._root, self._run_id, self._settle
        ).with_outputs(Output.STATS.value, main=Output.WRITTEN.value)


class _RejectedMessages:
    """The message ids already in rejected/, by output root: read once per file, then kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read: dict[str, set[str]] = {}
        self._ids: dict[str, set[str]] = {}

    def of(self, root: str) -> set[str]:
        """Every source message id of rejected/ under `root` (files new since the last call
        are read, their source_message_id column only)."""
        directory = layout.join(root, layout.REJECTED)
        with self._lock:
            read = self._read.setdefault(root, set())
            ids = self._ids.setdefault(root, set())
            for path in list_files(directory):
                if path not in read and path.endswith(".parquet"):
                    column = read_parquet(path, ["source_message_id"])["source_message_id"]
                    ids.update(pc.drop_null(column).to_pylist())
                    read.add(path)
            return ids


_REJECTED_MESSAGES = _RejectedMessages()


def already_rejected(table: pa.Table, root: str) -> pa.Array:
    """Which rows' messages are already in rejected/: a message redelivered after a kill that
    came after its rejection was committed but before its acknowledgement."""
    seen = _REJECTED_MESSAGES.of(root)
    if not seen:
        return pa.array([False] * table.num_rows)
    value_set = pa.array(sorted(seen), pa.string())
    return pc.fill_null(pc.is_in(table["source_message_id"], value_set=value_set), False)


def repeated_messages(table: pa.Table) -> pa.Array:
    """Which rows repeat the message of an earlier row of the same pane (a message redelivered
    in flight, its deadline run out): one rejection per message."""
    seen: set[str] = set()
    repeated = []
    for message_id in table["source_message_id"].to_pylist():
        repeated.append(message_id is not None and message_id in seen)
        if message_id is not None:
            seen.add(message_id)
    return pa.array(repeated, pa.bool_())


def write_rejected_pane(
    element: tuple[None, Iterable[ArrowBlock]], root: str, run_id: str, settle: bool = False
) -> Iterator[Any]:
    """One pane of rejected blocks -> its file's path and (`stats`) the counts it holds.

    With `settle`, a row whose message is already in rejected/ (or earlier in the pane) is
    counted as a duplicate (`duplicates:<channel>:rejected_before`) instead of rejected twice,
    the counts are committed here with the file, and the rows' messages are settled."""
    table = concat_blocks(element[1], rejected_schema())
    if not table.num_rows:
        return
    stats: Counter[str] = Counter()
    settled: list[str] = []
    if settle:
        before = pc.or_(already_rejected(table, root), repeated_messages(table))
        repeated = table.filter(before)
        for channel in pc.fill_null(repeated["channel"], st.UNKNOWN_CHANNEL).to_pylist():
            stats[st.duplicate_key(channel, "rejected_before")] += 1
        settled = acks.message_ids(table)
        table = table.filter(pc.invert(before))
    committed = False
    if table.num_rows:
        final = layout.join(root, layout.REJECTED, layout.pane_part_name(run_id))
        counts = rejected_stats(table)
        # With deferred acks the file's stats are committed with it.
        with_file = st.with_reads(st.merge([stats, counts])) if settle else None
        if _publish(table, root, run_id, final, with_file) is None:
            stats[REFUSED_FILES] += 1
        else:
            yield final
            stats.update(counts)
            committed = settle
    if settle:
        _commit_settled(dict(stats), root, run_id, settled, "rejections", committed)
    elif stats:
        yield pvalue.TaggedOutput(Output.STATS.value, dict(stats))


class WriteStreamingStats(_OneFilePerPane):
    """Partial stats -> one JSON file per pane under runs/<run_id>/, plus a progress line and
    the pane's quality gates.

    Summed over the files, read = accepted + rejected + duplicates for everything processed.
    The gates' thresholds are the pipeline's --gate_* options unless given. With
    `reads_with_outcomes` (deferred acks: each read is counted with its outcome, by the step
    that commits it) every pane balances and its line says `processed:`; without (Dataflow),
    a read is counted when pulled and its row when its file is committed, often a pane later,
    and the line says so (`progress_line`).
    """

    def __init__(
        self,
        run: Run,
        every_seconds: int,
        gates: GateThresholds | None = None,
        reads_with_outcomes: bool = False,
    ) -> None:
        super().__init__(run, every_seconds)
        self._gates = gates
        self._reads_with_outcomes = reads_with_outcomes

    def thresholds(self, pipeline: beam.Pipeline) -> GateThresholds:
        return self._gates or GateThresholds.from_options(pipeline.options)

    def expand(self, stats: beam.PCollection) -> beam.PCollection:
        return self._panes(stats, "Stats") | "WriteStatsFile" >> beam.FlatMap(
            write_stats_pane,
            self._root,
            self._run_id,
            self.thresholds(stats.pipeline),
            self._reads_with_outcomes,
        )


def pane_gates(stats: dict[str, int], gates: GateThresholds) -> list[GateResult]:
    """The quality gates of one stats pane, for the channels it has events of: a minute
    without kiosk payments is no alarm. Rejections are counted where they are written, often
    a pane after their reads, so a pane's ratio is an estimate (see gates.events_of)."""
    by_channel = {c: st.channel_counts(stats, c) for c in (*CHANNELS, UNKNOWN_CHANNEL)}
    return evaluate_gates(by_channel, gates, expected=())


def _report_gate(gate: GateResult) -> None:
    """Log a gate that is not ok and count every gate: alerting fires on the counter."""
    beam.metrics.Metrics.counter("quality_gates", f"{gate.channel}_{gate.level.value}").inc()
    if gate.level is GateLevel.ERROR:
        log.error("quality gate error (the job goes on): %s", gate)
    elif gate.level is GateLevel.WARN:
        log.warning("quality gate warning: %s", gate)


def write_stats_pane(
    element: tuple[None, Iterable[dict[str, int]]],
    root: str,
    run_id: str,
    gates: GateThresholds = GateThresholds(),  # noqa: B008 - frozen, so safe to share
    reads_with_outcomes: bool = False,
) -> Iterator[str]:
    """One pane of partial stats -> one stats file (its path), a progress line, and the
    pane's quality gates, each counted in the file as `gate:<channel>:<level>` (summed over
    the files: how many panes each channel spent at each level). Never raises for a gate.

    Keys name channels and codes, values are counts: only the keys can hold text. A pane whose
    keys fail the privacy scan is written as the count of that refusal alone. The messages
    whose outcome the pane counts (`transforms.streaming.acks`) are settled once it is
    written."""
    merged, settled = acks.split_settled(st.merge(element[1]))
    path = layout.pane_stats_path(root, run_id)
    leaks = scan_texts(list(merged), path, "stats key")
    if leaks:
        _refuse(path, leaks, len(merged))
        merged = {REFUSED_FILES: 1}
    for gate in pane_gates(merged, gates):
        _report_gate(gate)
        merged[st.gate_key(gate.channel, gate.level.value)] = 1
    commit_stats(merged, root, run_id, path)
    acks.settle(settled)
    log.info("%s", progress_line(merged, reads_with_outcomes))
    yield path


def progress_line(stats: dict[str, int], reads_with_outcomes: bool) -> str:
    """What one stats pane counted, in words that say what the figures cover. With each read
    counted with its outcome (deferred acks) the pane balances. Without (Dataflow), a read is
    counted when its message is pulled and its row when the row's file is committed, a pane
    later or more: a line that reads 439 and accepts 0 is rows in flight, not lost, and the
    run's totals balance."""
    totals = st.totals_by_kind(stats)
    read, accepted, rejected, duplicates = (
        totals.get(kind, 0) for kind in (st.READ, st.ACCEPTED, st.REJECTED, st.DUPLICATES)
    )
    if reads_with_outcomes:
        return (
            f"processed: read {read}, accepted {accepted}, rejected {rejected}, "
            f"duplicates {duplicates}"
        )
    return (
        f"since the last stats line: read {read}; in the files committed: accepted {accepted}, "
        f"rejected {rejected}; duplicates {duplicates} (a row is counted when its file is "
        "committed, often a line after its read: the run's totals balance, one line need not)"
    )


def watermark_lag_seconds(panes: Iterable[Any], now_seconds: float) -> float | None:
    """How far the event-time watermark is behind now, as far as these panes tell: an on-time
    pane fires when the watermark passes its window's end, so the latest such end is a lower
    bound of the watermark. None when no on-time pane is among them."""
    ends = [p.window_end_micros for p in panes if p.pane_timing == PaneTiming.ON_TIME]
    return max(0.0, now_seconds - max(ends) / 1_000_000) if ends else None


def live_json(pane: Any) -> bytes:
    """One live aggregate pane as a JSON message for dashboards (amount as exact BHD text)."""
    return orjson.dumps(
        {
            "window_start": _iso(pane.window_start_micros),
            "window_end": _iso(pane.window_end_micros),
            "event_date": pane.event_date.isoformat(),
            "channel": pane.channel,
            "status": pane.status,
            "payments": pane.payments,
            "amount": format_bhd(pane.amount_fils),
            "pane_timing": PaneTiming(pane.pane_timing).value,
            "pane_index": pane.pane_index,
        }
    )


# Message fields the product formats from numbers (exact BHD text): figures, not text.
_LIVE_FIGURES = frozenset({"amount"})


def publishable_live_json(pane: Any, root: str, run_id: str) -> Iterator[bytes]:
    """`live_json(pane)`, unless the privacy scan finds a secret in the message's text: then
    nothing is published, the refusal is logged and counted (`privacy:refused_messages`)."""
    message = live_json(pane)
    leaks = scan_message(message, "live aggregate message", _LIVE_FIGURES)
    if leaks:
        _refuse("a live aggregate message", leaks, 1)
        _write_refusal_stats(root, run_id, REFUSED_MESSAGES)
        return
    yield message


def _iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1_000_000, timezone.utc).isoformat()


def live_table(panes: Iterable[Any]) -> pa.Table:
    """LiveAggregate panes as rows of aggregates/live/, in the columns of the schema of record
    (`schemas.records.LiveWindowAggregate`; window bounds as UTC timestamps)."""
    rows = list(panes)
    schema = live_schema()

    def instants(micros: list[int], name: str) -> pa.Array:
        return pa.array(micros, pa.int64()).cast(schema.field(name).type)

    columns = {
        "window_start": instants([p.window_start_micros for p in rows], "window_start"),
        "window_end": instants([p.window_end_micros for p in rows], "window_end"),
        "event_date": [p.event_date for p in rows],
        "channel": [p.channel for p in rows],
        "status": [p.status for p in rows],
        "payments": [p.payments for p in rows],
        "amount": [fils_to_decimal(p.amount_fils) for p in rows],
        "pane_timing": [PaneTiming(p.pane_timing).value for p in rows],
        "pane_index": [p.pane_index for p in rows],
    }
    arrays = [pa.array(columns[f.name], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


class WriteLiveAggregates(_OneFilePerPane):
    """LiveAggregate panes -> one Parquet file under aggregates/live/ per processing-time pane."""

    def expand(self, panes: beam.PCollection) -> beam.PCollection:
        return self._panes(panes, "Live") | "WriteLiveFile" >> beam.FlatMap(
            write_live_pane, self._root, self._run_id
        )


def write_live_pane(element: tuple[None, Iterable[Any]], root: str, run_id: str) -> Iterator[str]:
    """One processing-time pane of LiveAggregates -> one file under aggregates/live/ (its path).
    A refusal is counted in a stats file of its own: this sink has no stats output."""
    panes = list(element[1])
    lag = watermark_lag_seconds(panes, time.time())
    if lag is not None:
        beam.metrics.Metrics.gauge("streaming", "watermark_lag_seconds").set(int(lag))
        log.info("live aggregates: the event-time watermark is %.0f s behind now", lag)
    table = live_table(panes)
    if table.num_rows:
        live = layout.join(root, layout.AGGREGATES, AggregateKind.LIVE.value)
        final = layout.join(live, layout.pane_part_name(run_id))
        if _publish(table, root, run_id, final) is None:
            _write_refusal_stats(root, run_id, REFUSED_FILES)
        else:
            yield final
