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
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms.window import GlobalWindows

from pipelines import cli
from pipelines.direct_pubsub import (
    DEFAULT_ACK_LEASE_SECONDS,
    DEFAULT_PULL_SIZE,
    DeferredAcks,
    use_pull_size,
)
from pipelines.options import IngestOptions, pseudonym_key_source
from schemas import layout
from schemas.run import STREAMING, Run
from transforms.batch.read import UTF8_BOM
from transforms.core.outputs import Output
from transforms.core.rawblock import RawBlock
from transforms.ingest import IngestEvents
from transforms.storage.keys import PseudonymKey
from transforms.streaming import acks
from transforms.streaming.dedup import (
    DEFAULT_DEDUP_BUCKETS,
    DEFAULT_DEDUP_HORIZON_SECONDS,
    DeduplicateBlocks,
)
from transforms.streaming.live import (
    DEFAULT_ALLOWED_LATENESS_SECONDS,
    DEFAULT_EARLY_FIRING_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    LiveAggregates,
    live_partials,
)
from transforms.streaming.rolling import DEFAULT_ROLL_ROWS, DEFAULT_ROLL_SECONDS, Rolling
from transforms.streaming.sinks import (
    WriteLiveAggregates,
    WriteStreamingPayments,
    WriteStreamingRejected,
    WriteStreamingStats,
    publishable_live_json,
    without_outcomes,
    without_rejected,
)

log = logging.getLogger("pipelines.streaming")
# The DirectRunner would first try to download Prism; its streaming engine is this one.
DEFAULT_RUNNER = "BundleBasedDirectRunner"
LOCAL_RUNNERS = {"DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"}


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
            "--roll_seconds",
            type=int,
            default=DEFAULT_ROLL_SECONDS,
            help="a run adds each pane's payments to its open file of the partition until the "
            "file is this old, then opens a new one: ~24 files a partition a day (default "
            "%(default)s)",
        )
        parser.add_argument(
            "--roll_rows",
            type=int,
            default=DEFAULT_ROLL_ROWS,
            help="... or until the open file holds this many rows, which bounds what a pane "
            "rewrites at high rates (default %(default)s)",
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
        parser.add_argument(
            "--dedup_buckets",
            type=int,
            default=DEFAULT_DEDUP_BUCKETS,
            help="keys the de-duplication state is spread over (default %(default)s)",
        )
        parser.add_argument(
            "--aggregates_topic",
            help="also publish every live aggregate pane as JSON to this Pub/Sub topic "
            "(projects/P/topics/T), for dashboards",
        )
        parser.add_argument(
            "--id_attribute",
            help="Dataflow only: a message attribute carrying a publisher-set unique id, which "
            "Dataflow uses to drop redelivered messages before they reach the pipeline (it "
            "already drops Pub/Sub redeliveries of one message id). Event ids are "
            "de-duplicated in the pipeline either way",
        )
        parser.add_argument(
            "--local_pull_size",
            type=int,
            default=DEFAULT_PULL_SIZE,
            help="local DirectRunner only: Pub/Sub messages per pull (Beam's own is 10, which "
            "caps a local run at a few dozen events/s; default %(default)s)",
        )
        parser.add_argument(
            "--local_ack_lease_seconds",
            type=int,
            default=DEFAULT_ACK_LEASE_SECONDS,
            help="local DirectRunner only: a pulled message is acknowledged once what it became "
            "is committed, and its ack deadline is kept extended by this much until then; "
            "after a kill, it is redelivered within this time (10-600, default %(default)s)",
        )


@dataclass(frozen=True)
class StreamingPlan:
    """Everything a streaming run is built from: the run, the pipeline options and the key
    source (`plan` makes one from a command line)."""

    run: Run
    options: PipelineOptions
    pseudonym_key: PseudonymKey | bytes
    # Local runner: messages are acknowledged once settled (`transforms.streaming.acks`), so
    # the writers commit their own stats and settle what they wrote.
    deferred_acks: bool = False

    @property
    def streaming(self) -> StreamingOptions:
        options: StreamingOptions = self.options.view_as(StreamingOptions)
        return options

    @property
    def ingest(self) -> IngestOptions:
        options: IngestOptions = self.options.view_as(IngestOptions)
        return options


def build(pipeline: beam.Pipeline, plan: StreamingPlan) -> None:
    """Wire the streaming graph around the shared core transform. Rows travel as Arrow blocks
    of a whole pull from end to end: no step handles one payment at a time."""
    run, options = plan.run, plan.streaming
    subscription = options.input_subscription
    cadence = options.write_every_seconds
    settle = plan.deferred_acks
    messages = pipeline | "ReadPubSub" >> beam.io.ReadFromPubSub(
        subscription=subscription, with_attributes=True, id_label=options.id_attribute
    )
    blocks = (
        messages
        | "BatchMessages"
        >> beam.BatchElements(min_batch_size=1, max_batch_size=options.local_pull_size)
        | "AsRawBlocks"
        >> beam.Map(
            lambda batch: RawBlock(
                subscription,
                # Each message is a whole document: a leading byte-order mark is skipped, as
                # at the start of a landing file (transforms.batch.read).
                [m.data.removeprefix(UTF8_BOM) for m in batch],
                message_ids=[m.message_id for m in batch],
            )
        )
    )
    ingested = blocks | "Ingest" >> IngestEvents(
        plan.pseudonym_key,
        run,
        plan.ingest.max_event_bytes,
        bulk=not plan.ingest.reference_validation,
    )
    deduped = (
        ingested.accepted
        | "DropPartitionKey" >> beam.Values()
        | "Deduplicate"
        >> DeduplicateBlocks(
            run, options.dedup_horizon_seconds, options.dedup_buckets, settle=settle
        )
    )
    first = deduped[Output.FIRST.value]
    rolling = Rolling.of(options.roll_seconds, options.roll_rows)
    written = first | "WritePayments" >> WriteStreamingPayments(run, cadence, settle, rolling)
    # What the writers emit after a processing-time pane goes back to the plain global window,
    # so every input of a Flatten has the same windowing (Dataflow insists on it).
    plain = beam.WindowInto(GlobalWindows())
    rejected = (
        (
            ingested.rejected,
            deduped[Output.REJECTED.value],
            written[Output.REJECTED.value] | "PaymentConflictsUnpaned" >> plain,
        )
        | "AllRejected" >> beam.Flatten()
        | "WriteRejected" >> WriteStreamingRejected(run, cadence, settle=settle)
    )
    # Rejections are counted where they are written (see WriteStreamingRejected); with
    # deferred acks, every outcome and its read are (the writers commit their own stats).
    ingest_stats = without_outcomes if settle else without_rejected
    (
        (
            ingested.stats | "IngestStatsLessRejected" >> beam.Map(ingest_stats),
            deduped[Output.STATS.value] | "DedupStatsLessRejected" >> beam.Map(without_rejected),
            written[Output.STATS.value]
            | "WriteStatsLessRejected" >> beam.Map(without_rejected)
            | "PaymentStatsUnpaned" >> plain,
            rejected[Output.STATS.value] | "RejectedStatsUnpaned" >> plain,
        )
        | "AllStats" >> beam.Flatten()
        | "WriteStats" >> WriteStreamingStats(run, cadence, reads_with_outcomes=settle)
    )
    window_seconds = options.window_seconds
    live = (
        first
        | "PerWindowSums" >> beam.FlatMap(lambda b: live_partials(b.table(), window_seconds))
        | "LiveAggregates"
        >> LiveAggregates(
            window_seconds, options.allowed_lateness_seconds, options.early_firing_seconds
        )
    )
    live | "WriteLiveAggregates" >> WriteLiveAggregates(run, cadence)
    if options.aggregates_topic:
        (
            live
            # Screened by the privacy scanner: a message with a secret is refused, not sent.
            | "LiveAsJson" >> beam.FlatMap(publishable_live_json, run.output_root, run.run_id)
            | "PublishLiveAggregates" >> beam.io.WriteToPubSub(options.aggregates_topic)
        )


def _parser() -> cli.Parser:
    parser = cli.Parser(
        beam=True,
        prog="python -m pipelines.streaming",
        usage="python -m pipelines.streaming --input_subscription projects/P/subscriptions/S "
        "--output ROOT [options]",
        description="Validate, normalise and de-duplicate payment events from Pub/Sub into the "
        "same Hive-partitioned Parquet as the nightly batch, with live aggregates.",
        epilog="Any Apache Beam pipeline option is accepted too (e.g. --runner DataflowRunner); "
        "any other argument is refused. "
        + cli.exit_statuses(
            "when the pipeline stops (drained or cancelled)",
            f"{EXIT_INTERRUPTED} when stopped by Ctrl-C",
        ),
    )
    IngestOptions._add_argparse_args(parser)
    StreamingOptions._add_argparse_args(parser)
    return parser


def plan(argv: Sequence[str]) -> StreamingPlan:
    """Check the command line and name the run; refuses a bad one (exit 2)."""
    parser = _parser()
    # Each option in one spelling, for our parser and for Beam's PipelineOptions alike.
    argv = parser.respelled(argv)
    known = parser.parse(argv)  # refuses unknown options and stray arguments (exit 2)
    parser.require(known, "input_subscription", "output")
    cli.check_resource(known.input_subscription, "subscriptions", "--input_subscription")
    if known.aggregates_topic:
        cli.check_resource(known.aggregates_topic, "topics", "--aggregates_topic")
    cli.check_output(known.output, network=not known.dry_run)
    options = PipelineOptions(argv)
    options.view_as(StandardOptions).streaming = True
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = DEFAULT_RUNNER
    streaming = options.view_as(StreamingOptions)
    try:
        Rolling.of(streaming.roll_seconds, streaming.roll_rows)
    except ValueError as error:
        parser.error(f"--roll_seconds/--roll_rows: {error}")
    if options.view_as(StandardOptions).runner in LOCAL_RUNNERS:
        if streaming.id_attribute:
            parser.error("--id_attribute works on Dataflow only; Beam's local runner refuses it")
        try:
            deferred: DeferredAcks | None = DeferredAcks(streaming.local_ack_lease_seconds)
        except ValueError as error:
            parser.error(f"--local_ack_lease_seconds: {error}")
        if use_pull_size(streaming.local_pull_size, deferred):
            acks.register(deferred)
        else:
            deferred = None
    else:
        deferred = None
    common = options.view_as(IngestOptions)
    key = pseudonym_key_source(common, options.view_as(StandardOptions).runner)
    log.info("pseudonymisation key: %s", key.describe())
    output = cli.absolute(common.output)
    return StreamingPlan(Run.start(STREAMING, output), options, key, deferred is not None)


EXIT_INTERRUPTED = 130  # the shell's status for a command ended by Ctrl-C (128 + SIGINT)


def run(argv: Sequence[str] | None = None) -> None:
    """Build and run the pipeline until it stops. Ctrl-C (KeyboardInterrupt) is let through
    once the run's staging folder is tidied (see `stop_interrupted`)."""
    planned = plan(list(sys.argv[1:] if argv is None else argv))
    log.info(
        "streaming run %s: %s -> %s",
        planned.run.run_id,
        planned.streaming.input_subscription,
        planned.run.output_root,
    )
    pipeline = beam.Pipeline(options=planned.options)
    build(pipeline, planned)
    try:
        pipeline.run().wait_until_finish()
    except KeyboardInterrupt:
        stop_interrupted(planned)
        raise


def stop_interrupted(planned: StreamingPlan) -> None:
    """After Ctrl-C: remove the run's staging folder if nothing is left in it, and say in
    one line what a stop leaves. Files are renamed into place whole, so nothing committed
    is half-written; with deferred acks, what was not committed is redelivered to the next
    run."""
    staging = layout.staging_dir(planned.run.output_root, planned.run.run_id)
    kept = remove_empty_tree(staging)
    redelivered = (
        "what it had not committed is redelivered to the next run"
        if planned.deferred_acks
        else "messages pulled but not yet written are lost (Beam acknowledged them on pull)"
    )
    log.info(
        "streaming run %s stopped (Ctrl-C): %s%s",
        planned.run.run_id,
        redelivered,
        f"; {kept} staged file(s) of an unfinished pane left in {staging}" if kept else "",
    )


def remove_empty_tree(path: str) -> int:
    """Remove a local folder tree that holds no file; how many files it holds otherwise (then
    it is left as it is). A gs:// path has no folders to remove: 0."""
    if path.startswith("gs://") or not os.path.isdir(path):
        return 0
    files = sum(len(names) for _, _, names in os.walk(path))
    if not files:
        shutil.rmtree(path)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    cli.configure_logging()
    try:
        run(argv)
    except KeyboardInterrupt:  # said in one line by stop_interrupted, not as a traceback
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
