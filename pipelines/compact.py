"""Compaction: rewrite the payments partitions that hold many small files into one file each.

    python -m pipelines.compact --output out/ [--max_files N] [--since YYYY-MM-DD]
        [--partitions channel=X/event_date=Y,...] [--target_file_mb 128]

A Beam batch pipeline (the local FnApiRunner unless --runner says otherwise), so it runs on
Dataflow too. Under the output root's writer lease for its whole duration, like a batch run:
it deletes what a killed compaction left (`compaction_leftovers`), lists each partition's
committed files, rewrites those that `needs_rewrite` (transforms/batch/compact.py), verifies
the new files hold exactly the old rows and give the same aggregate figures, and commits
with a manifest and `_SUCCESS`. Aggregates are never rewritten: equal rows give equal figures,
and the verification checks it. When no partition needs a rewrite it writes nothing, not even
a manifest: a second run changes nothing.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from pipelines import cli
from pipelines.options import CompactOptions, LeaseOptions, runs_elsewhere_later
from schemas import layout
from schemas.run import COMPACT, Run
from transforms.batch.commit import refusal
from transforms.batch.compact import (
    CommitCompaction,
    CompactionMismatch,
    RewritePartitions,
    heal,
    partitions_of,
)
from transforms.core.compaction import MEBIBYTE, Partition, PartitionFiles, parse_partitions, select
from transforms.core.scanner import SecretInOutput
from transforms.storage import lease
from transforms.storage.committed import committed_runs
from transforms.storage.files import read_text

log = logging.getLogger("pipelines.compact")
DEFAULT_RUNNER = "FnApiRunner"  # as pipelines/batch.py: no detour through Prism
# Exit statuses as the batch pipeline's: 3 the rows did not reconcile, 4 a secret in a
# staged file, 6 another writer holds the output; nothing was published in each case.
EXIT_NOT_RECONCILED = 3
EXIT_SECRET_IN_OUTPUT = 4
EXIT_OUTPUT_BUSY = 6


@dataclass(frozen=True)
class CompactPlan:
    """A compaction decided before anything is written: the run, the options, and the
    partition filter of the command line (the partitions themselves are listed under the
    lease, when nobody can change them)."""

    run: Run
    options: PipelineOptions
    named: frozenset[Partition] | None

    @property
    def compact(self) -> CompactOptions:
        options: CompactOptions = self.options.view_as(CompactOptions)
        return options

    @property
    def target_bytes(self) -> int:
        return int(self.compact.target_file_mb) * MEBIBYTE


def _parser() -> cli.Parser:
    parser = cli.Parser(
        beam=True,
        prog="python -m pipelines.compact",
        description="Rewrite payments partitions holding more than one committed file (or "
        "more than --max_files) into one file per --target_file_mb, rows sorted as written, "
        "verified row for row, committed under the writer lease with a manifest.",
        epilog="Any Apache Beam pipeline option is accepted too. "
        + cli.exit_statuses(
            "when it committed, or found nothing to compact",
            "3 when the rewritten rows did not match the old ones (nothing was published)",
            "4 when the privacy scan of a staged file found a secret (nothing was published)",
            "6 when another writer holds the output (nothing was published)",
        ),
    )
    parser.add_argument("--output", help="the output root to compact: a local folder or gs://")
    CompactOptions._add_argparse_args(parser)
    LeaseOptions._add_argparse_args(parser)
    return parser


def plan(argv: Sequence[str]) -> CompactPlan:
    """Check the command line; refuses a bad one (exit 2). Nothing is read or written yet."""
    parser = _parser()
    # Each option in one spelling, for our parser and for Beam's PipelineOptions alike.
    argv = parser.respelled(argv)
    known = parser.parse(argv)  # refuses unknown options and stray arguments (exit 2)
    parser.require(known, "output")
    cli.check_output(known.output, network=True)
    try:
        named = frozenset(parse_partitions(known.partitions)) if known.partitions else None
    except ValueError as error:
        cli.fail(f"--partitions {error}")
    options = PipelineOptions(argv)
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = DEFAULT_RUNNER
        direct = options.view_as(DirectOptions)
        if "--direct_num_workers" not in " ".join(argv):
            direct.direct_num_workers = 1  # reading and writing a few files: no worker pays
    return CompactPlan(Run.start(COMPACT, known.output), options, named)


def build(
    pipeline: beam.Pipeline,
    planned: CompactPlan,
    chosen: list[PartitionFiles],
    planned_after: str = "",
) -> None:
    """Wire the compaction graph over the chosen partitions (`planned_after`: the newest
    committed run when they were chosen, recorded in the manifest)."""
    (
        pipeline
        | "ChosenPartitions" >> beam.Create(chosen)
        | "RewritePartitions" >> RewritePartitions(planned.run, planned.target_bytes)
        | "Commit"
        >> CommitCompaction(planned.run, int(planned.compact.target_file_mb), planned_after)
    )


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Compact under the lease; returns the manifest, or a summary with `"compacted": 0` when
    nothing needed a rewrite (then nothing was written)."""
    planned = plan(list(sys.argv[1:] if argv is None else argv))
    info, leasing = planned.run, planned.options.view_as(LeaseOptions)
    started = time.monotonic()
    held = lease.acquire(
        info.output_root,
        info.run_id,
        lease.COMPACT,
        ttl=leasing.lease_ttl_seconds,
        wait=leasing.wait_for_lease,
        hint="run again once it has finished, or pass --wait_for_lease SECONDS",
    )
    try:
        healed = heal(info.output_root)
        # Chosen under the lease: nobody commits between this listing and the commit.
        newest = (committed_runs(info.output_root) or [""])[-1]
        options = planned.compact
        every = partitions_of(info.output_root, planned.named, options.since)
        chosen = select(
            every,
            int(options.max_files),
            planned.target_bytes,
            set(planned.named) if planned.named is not None else None,
            options.since,
        )
        log.info(
            "compaction %s: %d of %d partitions to rewrite (%d files)",
            info.run_id,
            len(chosen),
            len(every),
            sum(len(p.files) for p in chosen),
        )
        if not chosen:
            return {
                "run_id": info.run_id,
                "output_root": info.output_root,
                "compacted": 0,
                "partitions_seen": len(every),
                "leftovers_deleted": len(healed),
            }
        pipeline = beam.Pipeline(options=planned.options)
        build(pipeline, planned, chosen, newest)
        try:
            pipeline.run().wait_until_finish()
        except Exception as error:
            held.check()  # a lost lease is why the commit refused
            refused = refusal(info.output_root, info.run_id)
            if refused is not None:
                raise refused from None
            if "did not hold exactly its rows" in str(error):
                raise CompactionMismatch(str(error).splitlines()[0]) from error
            raise
        if runs_elsewhere_later(planned.options):
            # A dry run or a template: the job runs later, and its commit step takes the
            # lease itself for the commit (the partitions were chosen under this one).
            return {"run_id": info.run_id, "output_root": info.output_root, "submitted": True}
        manifest_path = layout.join(layout.run_dir(info.output_root, info.run_id), layout.MANIFEST)
        manifest: dict[str, Any] = json.loads(read_text(manifest_path))
    finally:
        held.release()
    manifest["compacted"] = manifest["counts"]["partitions"]
    manifest["leftovers_deleted"] = len(healed)
    manifest["elapsed_seconds"] = round(time.monotonic() - started, 2)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    cli.configure_logging()
    try:
        manifest = run(argv)
    except lease.LeaseError as busy:
        print(f"error: {busy}", file=sys.stderr)
        return EXIT_OUTPUT_BUSY
    except CompactionMismatch as mismatch:
        print(f"error: {mismatch}", file=sys.stderr)
        return EXIT_NOT_RECONCILED
    except SecretInOutput as refused:
        print(f"error: {refused}", file=sys.stderr)
        return EXIT_SECRET_IN_OUTPUT
    if manifest.get("submitted"):
        print(f"submitted compaction {manifest['run_id']}")
        return 0
    if not manifest["compacted"]:
        print(
            f"nothing to compact: {manifest['partitions_seen']} partitions, none holds more "
            "files than it needs; nothing written"
        )
        return 0
    counts = manifest["counts"]
    print(
        f"compacted {counts['partitions']} partitions: {counts['files_before']} files "
        f"({counts['bytes_before']:,} bytes) -> {counts['files_after']} files "
        f"({counts['bytes_after']:,} bytes), {counts['rows']:,} rows verified"
    )
    run_dir = layout.run_dir(manifest["output_root"], manifest["run_id"])
    print(f"manifest: {layout.join(run_dir, layout.MANIFEST)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
