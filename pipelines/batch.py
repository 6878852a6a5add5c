"""The nightly batch pipeline: landing files -> validated, partitioned Parquet + aggregates.

    python -m pipelines.batch --input 'landing/2017-06-30/*.jsonl*' --output out/

Runs on Beam's local FnApiRunner unless --runner says otherwise (e.g. DataflowRunner with the
usual --project/--region/--temp_location flags).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
)

from pipelines import cli
from pipelines.options import (
    BatchOptions,
    IngestOptions,
    LeaseOptions,
    pseudonym_key_source,
    runs_elsewhere_later,
)
from schemas import layout
from schemas.run import BATCH, COMPACT, Run
from transforms.batch.commit import CommitRun, refusal
from transforms.batch.compact import CompactAfterRun
from transforms.batch.read import ReadRawBlocks
from transforms.batch.rejected import StageRejected
from transforms.batch.stage import DeduplicateAndStage, StageAggregates
from transforms.core.gates import GateThresholds
from transforms.core.manifest import summary_table
from transforms.core.outputs import Output
from transforms.core.scanner import Leak, SecretInOutput, leaks_in_text
from transforms.ingest import IngestEvents, MergeStats
from transforms.storage import lease
from transforms.storage.files import exists, fingerprint, read_text
from transforms.storage.keys import PseudonymKey
from transforms.storage.partitions import WriteSettings

log = logging.getLogger("pipelines.batch")
# The DirectRunner would first try to download the Prism runner; FnApiRunner is the engine it
# falls back to for batch anyway, so we name it and skip the detour.
DEFAULT_RUNNER = "FnApiRunner"
# Validation is CPU-bound Python: two worker processes ran 1M events in 20 s against 28-32 s
# for one, within 1.4 GB in all (benchmarks/RESULTS.md). Threads would share one GIL, and
# Beam's multi_threading mode has been seen losing GroupByKey data (beam-notes.md).
DEFAULT_LOCAL_WORKERS = 2
# Up to this much input the local runner works in this process alone: starting a worker
# process costs an import of Beam (~2.5 s here), more than the work of a night's files
# (benchmarks/RESULTS.md, "A night").
SMALL_INPUT_BYTES = 32 * 1024 * 1024
# Exit statuses of main(): 1 is any other error (2 a command-line error, pipelines/cli.py).
EXIT_NOT_RECONCILED = 3
EXIT_SECRET_IN_OUTPUT = 4
# Another writer (a batch run, a streaming pane) holds the output root's lease, or this run
# lost it: nothing was published.
EXIT_OUTPUT_BUSY = 6
# The run committed, but a channel failed its quality gate (transforms/core/gates.py): the data is
# valid and accounted for, the status is an alarm for a person to look at the channel.
EXIT_QUALITY_GATE = 5
# The run committed the other files, but quarantined a compressed input without a valid end
# of stream (transforms/batch/read.py): that file must be delivered again and its day re-run.
EXIT_INCOMPLETE_INPUT = 7


def match_inputs(patterns: str) -> list[cli.InputFile]:
    """Every file matching the comma-separated patterns, sorted by path.
    Each entry must match at least one file, and none a directory or a `.gz` that is not
    gzip: a refused command line (exit 2) names the first that does not (cli.input_files)."""
    entries = [p.strip() for p in patterns.split(",") if p.strip()]
    if not entries:
        cli.fail(f"--input {patterns!r} names no file")
    found: dict[str, cli.InputFile] = {}
    for entry in entries:
        for f in cli.input_files(entry, several=len(entries) > 1):
            path = cli.absolute(f.path)
            found[path] = cli.InputFile(path, f.size)
    return sorted(found.values())


def input_key(files: Sequence[tuple[str, int]], fingerprints: Sequence[str]) -> str:
    """Names this input's output files: the same files with the same content give the same
    key, so a re-run overwrites its own earlier output instead of adding to it.

    Content is told by each file's fingerprint (`transforms.storage.files.fingerprint`: a CRC of its
    bytes), not by path and size: a landing file rewritten with other events (a producer that
    reuses one name every night) is another input, whose output sits beside the first one's
    instead of replacing it; the events both hold are de-duplicated as for any two inputs. A
    file copied again unchanged is the same input."""
    lines = (f"{p}\t{s}\t{f}" for (p, s), f in zip(files, fingerprints, strict=True))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class BatchPlan:
    """Everything a batch run is built from, decided before any work starts: the run (its id,
    output, inputs and the key that names its files), the pipeline options, the key source and
    the quality gates. `run` makes one from a command line; the Dataflow dry-run tests make
    one by hand (their inputs are not there to list) and build the same graph from it."""

    run: Run
    options: PipelineOptions
    pseudonym_key: PseudonymKey | bytes
    gates: GateThresholds
    # Seconds taken to list and fingerprint the inputs (logged with the lease's).
    checks_seconds: float = field(default=0.0, compare=False)
    # The compaction of what the run touched, run by the job after its commit; None with
    # --no_compact (and in plans made by hand).
    compaction: Run | None = None

    @property
    def batch(self) -> BatchOptions:
        options: BatchOptions = self.options.view_as(BatchOptions)
        return options

    @property
    def ingest(self) -> IngestOptions:
        options: IngestOptions = self.options.view_as(IngestOptions)
        return options


def build(pipeline: beam.Pipeline, plan: BatchPlan) -> beam.PCollection:
    """Wire the batch graph; returns the PCollection holding the run manifest."""
    run, batch = plan.run, plan.batch
    settings = WriteSettings(run)
    read = pipeline | "ReadInput" >> ReadRawBlocks(
        list(run.inputs), batch.range_bytes, batch.block_events
    )
    ingested = read.blocks | "Ingest" >> IngestEvents(
        plan.pseudonym_key,
        run,
        plan.ingest.max_event_bytes,
        bulk=not plan.ingest.reference_validation,
    )
    staged = ingested.accepted | "DeduplicateAndStage" >> DeduplicateAndStage(settings)
    rejected_files = (ingested.rejected, staged[Output.REJECTED.value]) | "StageRejected" >> (
        StageRejected(settings)
    )
    aggregate_files = staged[Output.AGGREGATES.value] | "StageAggregates" >> StageAggregates(
        settings
    )
    all_staged = (
        staged[Output.STAGED.value],
        rejected_files,
        aggregate_files,
    ) | "AllStaged" >> beam.Flatten()
    stats = (
        (read.stats, ingested.stats, staged[Output.STATS.value])
        | "AllStats" >> beam.Flatten()
        | "MergeStats" >> MergeStats()
    )
    manifest = stats | "Commit" >> CommitRun(
        run, all_staged, staged[Output.STALE.value], plan.gates
    )
    if plan.compaction is not None:
        _ = manifest | "CompactTouched" >> CompactAfterRun(run, plan.compaction)
    return manifest


def _parser() -> cli.Parser:
    parser = cli.Parser(
        beam=True,
        prog="python -m pipelines.batch",
        usage="python -m pipelines.batch --input PATTERN[,PATTERN...] --output ROOT [options]",
        description="Validate, normalise and de-duplicate raw payment events of the portal, "
        "mobile_app and kiosk channels; write Hive-partitioned Parquet, rejected events, "
        "per-channel aggregates and a run manifest under --output.",
        epilog="Any Apache Beam pipeline option is accepted too, e.g. --runner DataflowRunner "
        "--project P --region R --temp_location gs://B/tmp; any other argument is refused. "
        + cli.exit_statuses(
            "when the run committed and reconciles",
            "3 when the manifest does not reconcile",
            "4 when the privacy scan of the staged output found a secret (nothing was published)",
            "5 when it committed but a channel failed its quality gate",
            "6 when another writer holds the output (nothing was published)",
            "7 when it committed the other files but quarantined an incomplete compressed input",
        ),
    )
    IngestOptions._add_argparse_args(parser)
    BatchOptions._add_argparse_args(parser)
    LeaseOptions._add_argparse_args(parser)
    return parser


def _local_workers(options: PipelineOptions, argv: Sequence[str], input_bytes: int) -> None:
    """Worker processes for the local runner, unless the command line names them: one, in
    this process, for a small input (each worker process imports Beam again, seconds that a
    night's landing files do not repay); two for anything larger (CPU-bound validation)."""
    direct = options.view_as(DirectOptions)
    if "--direct_num_workers" not in " ".join(argv):
        many = input_bytes > SMALL_INPUT_BYTES
        direct.direct_num_workers = min(DEFAULT_LOCAL_WORKERS, os.cpu_count() or 1) if many else 1
    if direct.direct_num_workers > 1 and "--direct_running_mode" not in " ".join(argv):
        direct.direct_running_mode = "multi_processing"
    if direct.direct_num_workers > 1:
        # Worker processes inherit this: glibc's malloc then keeps two arenas instead of one
        # for each thread (gRPC's threads held memory Python had freed). A 10M-event backfill
        # peaked at 1,959 MB instead of 2,586 for the process tree, CPU within noise
        # (benchmarks/RESULTS.md, issue #11). An operator's own setting wins.
        os.environ.setdefault("MALLOC_ARENA_MAX", "2")


def plan(argv: Sequence[str]) -> BatchPlan:
    """Check the command line, list and fingerprint the inputs, and name the run; nothing is
    written yet. Refuses a bad command line (exit 2) and inputs that are not there."""
    parser = _parser()
    # Each option in one spelling, for our parser and for Beam's PipelineOptions alike.
    argv = parser.respelled(argv)
    known = parser.parse(argv)  # refuses unknown options and stray arguments (exit 2)
    parser.require(known, "input", "output")
    cli.check_output(known.output, network=not known.dry_run)
    options = PipelineOptions(argv)
    common = options.view_as(IngestOptions)
    key = pseudonym_key_source(common, options.view_as(StandardOptions).runner)
    log.info("pseudonymisation key: %s", key.describe())
    checking = time.monotonic()
    files = match_inputs(options.view_as(BatchOptions).input)
    with ThreadPoolExecutor(max_workers=4) as pool:  # zlib and GCS reads release the GIL
        fingerprints = list(pool.map(fingerprint, [f.path for f in files]))
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = DEFAULT_RUNNER
        _local_workers(options, argv, sum(f.size for f in files))
    run = Run.start(BATCH, cli.absolute(common.output), input_key(files, fingerprints), files)
    compaction = (
        None if options.view_as(BatchOptions).no_compact else Run.start(COMPACT, run.output_root)
    )
    return BatchPlan(
        run,
        options,
        key,
        GateThresholds.from_options(options),
        time.monotonic() - checking,
        compaction,
    )


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the batch pipeline to completion; returns the run manifest."""
    planned = plan(list(sys.argv[1:] if argv is None else argv))
    info, options = planned.run, planned.options
    leasing_options = options.view_as(LeaseOptions)
    total = sum(size for _, size in info.inputs)
    log.info(
        "run %s: %d input files (%.1f MB) -> %s",
        info.run_id,
        len(info.inputs),
        total / 1e6,
        info.output_root,
    )
    # One writer at a time under the root, for the whole run: it reads the partitions it
    # touches long before its commit. A job that runs after this process exits (a template
    # launch) cannot be covered from here: its commit step takes the lease itself.
    held = None
    leasing = time.monotonic()
    if not runs_elsewhere_later(options):
        held = lease.acquire(
            info.output_root,
            info.run_id,
            lease.BATCH,
            ttl=leasing_options.lease_ttl_seconds,
            wait=leasing_options.wait_for_lease,
            hint="run again once it has finished, or pass --wait_for_lease SECONDS",
        )
    # What the run's safety checks cost before any work (the benchmark reads this line).
    log.info(
        "checks before the run: inputs listed and fingerprinted in %.3f s, writer lease in %.3f s",
        planned.checks_seconds,
        time.monotonic() - leasing,
    )
    started = time.monotonic()
    try:
        pipeline = beam.Pipeline(options=options)
        build(pipeline, planned)
        try:
            pipeline.run().wait_until_finish()
        except Exception as error:
            if held is not None:
                try:
                    held.check()
                except lease.LeaseLost as lost:
                    raise lost from None  # why the commit refused: nothing more was published
                except Exception:
                    log.warning("could not read the writer lease back", exc_info=True)
            refused = refusal_of(info, error)
            if refused is None:
                raise
            raise refused from None
        if runs_elsewhere_later(options):
            # A Flex Template launch or a dry run only builds the job: it runs after this
            # process exits, and writes its manifest then.
            return {"run_id": info.run_id, "output_root": info.output_root, "submitted": True}
        refused = refusal(info.output_root, info.run_id)
        if refused is not None:  # a runner that reports a failed job without raising
            raise refused
        manifest_path = layout.join(layout.run_dir(info.output_root, info.run_id), layout.MANIFEST)
        manifest: dict[str, Any] = json.loads(read_text(manifest_path))
    finally:
        if held is not None:
            held.release()
    manifest["elapsed_seconds"] = round(time.monotonic() - started, 2)
    if planned.compaction is not None:
        manifest["compaction"] = compaction_of(planned.compaction)
    return manifest


def compaction_of(compaction: Run) -> dict[str, Any]:
    """What the job's compaction of the partitions the run touched committed: its manifest, or
    `{"compacted": 0}` when it wrote none (nothing needed it, or it published nothing: then
    the job's log says why)."""
    path = layout.join(layout.run_dir(compaction.output_root, compaction.run_id), layout.MANIFEST)
    if not exists(path):
        return {"compacted": 0, "run_id": compaction.run_id}
    found: dict[str, Any] = json.loads(read_text(path))
    return {**found, "compacted": found["counts"]["partitions"]}


def refusal_of(info: Run, error: BaseException) -> SecretInOutput | None:
    """The privacy refusal behind a failed run, however the runner wrapped it: the commit
    step's record of it first (`runs/<run_id>/_REFUSED.json`), else a SecretInOutput in the
    exception chain (the in-process runner), else its text in the message (worker processes
    and Dataflow pass on only the text of a worker's error). None for any other failure."""
    try:
        recorded = refusal(info.output_root, info.run_id)
    except Exception:  # the record is unreadable: the error itself still tells
        recorded = None
    if recorded is not None:
        return recorded
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, SecretInOutput) and all(isinstance(x, Leak) for x in cause.leaks):
            return SecretInOutput(cause.leaks)
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    leaks = leaks_in_text(str(error))
    return SecretInOutput(leaks) if leaks else None


def exit_status(manifest: dict[str, Any]) -> int:
    """The exit status of a committed run, printing one `error:` line per alarm: a manifest
    that does not reconcile first, then incomplete inputs, then failed quality gates."""
    for incomplete in manifest.get("incomplete_inputs", []):
        print(
            f"error: input not read: {incomplete['path']}: {incomplete['fault']}: "
            f"{incomplete['reason']}; have it delivered again, then re-run its day",
            file=sys.stderr,
        )
    for gate in manifest.get("quality_gates", []):
        if gate["level"] == "error":
            print(f"error: quality gate: {gate['channel']}: {gate['message']}", file=sys.stderr)
    if not manifest["reconciles"]:
        return EXIT_NOT_RECONCILED
    if manifest.get("incomplete_inputs"):
        return EXIT_INCOMPLETE_INPUT
    if manifest.get("quality_gate") == "error":
        return EXIT_QUALITY_GATE
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    cli.configure_logging()
    try:
        manifest = run(argv)
    except SecretInOutput as refused:
        print(f"error: {refused}", file=sys.stderr)
        return EXIT_SECRET_IN_OUTPUT
    except lease.LeaseError as busy:
        print(f"error: {busy}", file=sys.stderr)
        return EXIT_OUTPUT_BUSY
    manifest_path = layout.join(
        layout.run_dir(manifest["output_root"], manifest["run_id"]), layout.MANIFEST
    )
    if manifest.get("submitted"):
        print(
            f"submitted run {manifest['run_id']}; when it finishes its manifest is {manifest_path}"
        )
        return 0
    print()
    print(summary_table(manifest))
    root = manifest["output_root"]
    print(f"\npayments:   {layout.join(root, layout.PAYMENTS)}/channel=*/event_date=*/*.parquet")
    print(f"rejected:   {layout.join(root, layout.REJECTED)}/")
    print(f"aggregates: {layout.join(root, layout.AGGREGATES)}/by_status|by_service/month=*/")
    print(f"manifest:   {manifest_path}")
    print(f"elapsed:    {manifest['elapsed_seconds']} s")
    compaction = manifest.get("compaction")
    if compaction and compaction.get("compacted"):
        counts = compaction["counts"]
        print(
            f"compacted:  {counts['partitions']} partitions, {counts['files_before']} files -> "
            f"{counts['files_after']} (run {compaction['run_id']})"
        )
    scan = manifest.get("privacy_scan")
    if scan:
        print(
            f"privacy:    {scan['files']} files, {scan['rows']:,} rows read back and scanned "
            f"in {scan['seconds']} s (workers and commit): no secret found; screening and "
            f"redaction in blocks {manifest.get('privacy_screening_seconds', 0)} s"
        )
    return exit_status(manifest)


if __name__ == "__main__":
    sys.exit(main())
