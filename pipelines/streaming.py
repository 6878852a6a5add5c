"""The streaming pipeline: Pub/Sub payment events -> the same partitioned Parquet as the
nightly batch, plus live per-channel aggregates.

    python -m pipelines.streaming --input_subscription projects/P/subscriptions/S --output OUT

Runs on Beam's local streaming DirectRunner unless --runner says otherwise (DataflowRunner).
The nightly batch aggregates stay the authoritative daily figures; the live ones are for
dashboards and may miss payments later than the allowed lateness.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms.window import TimestampedValue

from pipelines.batch import new_run_id
from pipelines.options import IngestOptions, resolve_pseudonym_key
from schemas.arrow import payment_schema
from schemas.enums import RejectCode
from schemas.timekeeping import to_utc_micros
from transforms import stats as st
from transforms.blocks import rejected_table
from transforms.columnar import ArrowBlock
from transforms.dedup import CONTENT_COLUMNS, Deduplicated, conflict_rejections
from transforms.ingest import IngestEvents
from transforms.live import (
    DEFAULT_ALLOWED_LATENESS_SECONDS,
    DEFAULT_DEDUP_HORIZON_SECONDS,
    DEFAULT_EARLY_FIRING_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    DeduplicateById,
    LiveAggregates,
    LivePayment,
)
from transforms.rawblock import RawBlock
from transforms.stream_write import (
    WriteLiveAggregates,
    WriteStreamingPayments,
    WriteStreamingRejected,
    WriteStreamingStats,
)

log = logging.getLogger("pipelines.streaming")
# The DirectRunner would first try to download Prism; its streaming engine is this one.
DEFAULT_RUNNER = "BundleBasedDirectRunner"


class StreamingOptions(PipelineOptions):  # type: ignore[misc]
    """Options of the streaming pipeline."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--input_subscription", help="Pub/Sub subscription: projects/P/subscriptions/S"
        )
        parser.add_argument(
            "--write_every_seconds",
            type=int,
            default=60,
            help="how often new Parquet files are committed (default %(default)s)",
        )
        parser.add_argument(
            "--window_seconds",
            type=int,
            default=DEFAULT_WINDOW_SECONDS,
            help="live aggregate window (default %(default)s)",
        )
        parser.add_argument(
            "--allowed_lateness_seconds",
            type=int,
            default=DEFAULT_ALLOWED_LATENESS_SECONDS,
            help="late payments update live aggregates this long (default %(default)s)",
        )
        parser.add_argument(
            "--early_firing_seconds",
            type=int,
            default=DEFAULT_EARLY_FIRING_SECONDS,
            help="early live aggregate panes this often (default %(default)s)",
        )
        parser.add_argument(
            "--dedup_horizon_seconds",
            type=int,
            default=DEFAULT_DEDUP_HORIZON_SECONDS,
            help="an event id is remembered this long for de-duplication (default %(default)s)",
        )


def explode(keyed: tuple[tuple[str, str], ArrowBlock]) -> Iterator[tuple[str, Any]]:
    """Accepted rows as (event_id, (content, row)) for per-event de-duplication."""
    _, block = keyed
    for row in block.table().to_pylist():
        yield row["event_id"], (tuple(row[c] for c in CONTENT_COLUMNS), row)


def conflict_block(element: tuple[dict[str, Any], tuple[Any, ...]], run_id: str) -> ArrowBlock:
    """A conflicting delivery as a rejected row naming what differs from the first one."""
    row, first = element
    differing = [
        c
        for c, a, b in zip(CONTENT_COLUMNS, first, (row[c] for c in CONTENT_COLUMNS), strict=True)
        if a != b
    ]
    conflicts = pa.Table.from_pylist([row], schema=payment_schema())
    detail = f"differs in {', '.join(differing)} from the first delivery"
    result = Deduplicated(conflicts, conflicts, [detail], Counter())
    micros = to_utc_micros(datetime.now(timezone.utc))
    return ArrowBlock.of(rejected_table(conflict_rejections(result), run_id, micros))


def live_payment(row: dict[str, Any]) -> TimestampedValue:
    """Event time is the payment's own time, not the publish time."""
    micros = to_utc_micros(row["occurred_at"])
    fils = int(Decimal(row["amount"]) * 1000)
    return TimestampedValue(
        LivePayment(row["channel"], row["status"], fils, micros), micros / 1_000_000
    )


def build(
    pipeline: beam.Pipeline,
    options: StreamingOptions,
    common: IngestOptions,
    key: bytes,
    run_id: str,
) -> None:
    """Wire the streaming graph around the shared core transform."""
    root = common.output.rstrip("/")
    subscription = options.input_subscription
    cadence = options.write_every_seconds
    messages = pipeline | "ReadPubSub" >> beam.io.ReadFromPubSub(
        subscription=subscription, with_attributes=True
    )
    # Messages arrive in pulls of many; validating them as one block shares the per-block
    # costs (Arrow building, Beam steps) the way batch does.
    blocks = (
        messages
        | "BatchMessages" >> beam.BatchElements(min_batch_size=1, max_batch_size=1000)
        | "AsRawBlocks"
        >> beam.Map(
            lambda batch: RawBlock(
                subscription,
                [m.data for m in batch],
                message_ids=[m.message_id for m in batch],
            )
        )
    )
    ingested = blocks | "Ingest" >> IngestEvents(
        key, run_id, to_utc_micros(datetime.now(timezone.utc)), common.max_event_bytes
    )
    deduped = (
        ingested.accepted
        | "ExplodeToEvents" >> beam.FlatMap(explode)
        | "Deduplicate" >> DeduplicateById(options.dedup_horizon_seconds)
    )
    first = deduped["first"]
    first | "WritePayments" >> WriteStreamingPayments(root, run_id, cadence)
    conflicts = deduped["conflicts"] | "ConflictsAsRejected" >> beam.Map(conflict_block, run_id)
    (
        (ingested.rejected, conflicts)
        | "AllRejected" >> beam.Flatten()
        | "WriteRejected" >> WriteStreamingRejected(root, run_id, cadence)
    )
    outcome_stats = (
        first | "AcceptedStats" >> beam.Map(lambda r: {st.accepted_key(r["channel"]): 1}),
        deduped["duplicates"]
        | "DuplicateStats" >> beam.Map(lambda r: {st.duplicate_key(r["channel"], "in_input"): 1}),
        deduped["conflicts"]
        | "ConflictStats"
        >> beam.Map(
            lambda c: {st.rejected_key(c[0]["channel"], RejectCode.DUPLICATE_CONFLICT.value): 1}
        ),
        ingested.stats,
    )
    (
        outcome_stats
        | "AllStats" >> beam.Flatten()
        | "WriteStats" >> WriteStreamingStats(root, run_id, cadence)
    )
    (
        first
        | "EventTime" >> beam.Map(live_payment)
        | "LiveAggregates"
        >> LiveAggregates(
            options.window_seconds, options.allowed_lateness_seconds, options.early_firing_seconds
        )
        | "WriteLiveAggregates" >> WriteLiveAggregates(root, run_id, cadence)
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.streaming",
        description="Validate, normalise and de-duplicate payment events from Pub/Sub into the "
        "same Hive-partitioned Parquet as the nightly batch, with live aggregates.",
        epilog="Any Apache Beam pipeline option is accepted too (e.g. --runner DataflowRunner).",
    )
    IngestOptions._add_argparse_args(parser)
    StreamingOptions._add_argparse_args(parser)
    return parser


def run(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    known, _ = _parser().parse_known_args(argv)
    if not known.input_subscription or not known.output:
        _parser().error("--input_subscription and --output are required")
    options = PipelineOptions(argv)
    options.view_as(StandardOptions).streaming = True
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = DEFAULT_RUNNER
    streaming = options.view_as(StreamingOptions)
    common = options.view_as(IngestOptions)
    key = resolve_pseudonym_key(common.pseudonym_key_file)
    run_id = new_run_id(datetime.now(timezone.utc))
    log.info("streaming run %s: %s -> %s", run_id, streaming.input_subscription, common.output)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, streaming, common, key, run_id)
    pipeline.run().wait_until_finish()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("apache_beam", "google", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
