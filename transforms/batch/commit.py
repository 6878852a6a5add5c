"""The last step of a batch run: publish staged files, then the manifest, then `_SUCCESS`,
then delete the aggregate versions the run replaced.

Nothing reaches a dataset folder before this step, so a run killed earlier leaves the
published output as it was. The step itself is a sequence of moves, not one atomic switch
(on GCS each move is a copy then a delete): a run killed inside it may have published some of
its files, whole, and has no `_SUCCESS`. Its files are named from its input, so re-running the
same input overwrites them and removes the ones it no longer writes: no row twice. Aggregate
month files are the exception: each run writes a month's next version under a new name, and
until `_SUCCESS` the previous version is the one committed readers take
(`transforms.storage.committed`); the replaced versions are deleted only after it.

Before the first move every staged file has been read back and its string columns scanned
with the privacy rule (`transforms.core.scanner`), a second line of defence behind the
redaction: by the worker that staged it, right after writing it
(`transforms.storage.partitions.stage`), or here for a file staged without a scan. A secret
found there publishes nothing: no move, no delete, no manifest, no `_SUCCESS`. The run's
staged files are deleted (they hold the secret, and the staging folder is under the output
root, which the contract counts as written); `runs/<run_id>/_REFUSED.json` records where the
leaks were (file, column, row, and the input file and line of each row, never a value) for
the launcher, which exits with its own status, and for a retried commit, which refuses again.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import apache_beam as beam
import pyarrow as pa

from schemas import layout
from schemas.run import Run
from transforms.core import stats as st
from transforms.core.gates import DEFAULT_GATES, GateThresholds
from transforms.core.manifest import build_manifest
from transforms.core.scanner import Leak, SecretInOutput
from transforms.storage import lease
from transforms.storage.committed import superseded_aggregates
from transforms.storage.files import (
    delete,
    delete_tree,
    exists,
    list_files,
    parquet_rows,
    read_text,
    remove_if_empty,
    replace,
    write_text,
)
from transforms.storage.partitions import StagedFile
from transforms.storage.readback import read_back, scan_files

log = logging.getLogger(__name__)

REFUSED_MARKER = "_REFUSED.json"
# Files read back at once: on GCS each read is mostly waiting for the store.
_SCAN_THREADS = 8


def refused_marker(root: str, run_id: str) -> str:
    return layout.join(layout.run_dir(root, run_id), REFUSED_MARKER)


def refusal(root: str, run_id: str) -> SecretInOutput | None:
    """The refusal a run's commit recorded, if the privacy scan refused it."""
    marker = refused_marker(root, run_id)
    if not exists(marker):
        return None
    recorded = json.loads(read_text(marker))
    leaks = [Leak(x["file"], x["column"], int(x["row"]), x["kind"]) for x in recorded["leaks"]]
    return SecretInOutput(leaks)


def _read_staged(path: str, final: dict[str, str]) -> pa.Table | None:
    try:
        return read_back(path)
    except Exception:
        if not exists(path) and exists(final[path]):
            return None  # moved by an earlier attempt of this commit, after passing this scan
        raise


def screen_staged(run: Run, staged: list[StagedFile]) -> dict[str, Any]:
    """Check that no staged file holds a secret: the scans made when the files were staged
    (`transforms.storage.partitions.stage`), and a read-back scan here of any file staged
    without one.
    Raise SecretInOutput (after deleting the staged files and recording the refusal) if any
    scan found one. Returns what was scanned, for the manifest: files, rows, seconds of
    scanning in all (workers and commit) and in the commit step alone."""
    earlier = refusal(run.output_root, run.run_id)
    if earlier is not None:
        raise earlier  # a retried commit of a refused run: its staged files are gone
    started = time.monotonic()
    unscanned = [s for s in staged if s.scan is None]
    finals = {s.staged: s.final for s in unscanned}
    scans = [s.scan for s in staged if s.scan is not None]
    scans += scan_files(
        [(s.staged, s.final) for s in unscanned],
        read=functools.partial(_read_staged, final=finals),
        threads=_SCAN_THREADS,
    )
    leaks = [leak for scan in scans for leak in scan.leaks]
    in_commit = time.monotonic() - started
    scanned = {
        "files": len(scans),
        "rows": sum(scan.rows for scan in scans),
        "seconds": round(in_commit + sum(s.scan_seconds for s in staged), 3),
        "commit_seconds": round(in_commit, 3),
        "scanned_when_staged": len(staged) - len(unscanned),
    }
    log.info(
        "privacy scan of run %s: %d staged files, %d rows read back (%.2f s of scanning, "
        "%.2f s of it in the commit), %d secret(s) found",
        run.run_id,
        scanned["files"],
        scanned["rows"],
        scanned["seconds"],
        scanned["commit_seconds"],
        len(leaks),
    )
    if not leaks:
        return scanned
    recorded = []
    for scan in scans:
        for leak in scan.leaks:
            origin = scan.origins.get(leak.row)
            log.error("secret past redaction: %s (%s)", leak, origin or "origin not recorded")
            recorded.append({**asdict(leak), "origin": origin})
    write_text(
        refused_marker(run.output_root, run.run_id),
        json.dumps({"run_id": run.run_id, "leaks": recorded}, indent=2),
    )
    delete_tree(layout.staging_dir(run.output_root, run.run_id))
    log.error(
        "run %s refused: nothing published; its staged files were deleted (they hold the "
        "secret); re-running the same input after the redaction is fixed publishes it",
        run.run_id,
    )
    raise SecretInOutput(leaks)


class RowsNotStaged(RuntimeError):
    """The staged rejected file does not hold the events the run counted as rejected."""


def check_rejected_rows(run: Run, stats: dict[str, int], staged: list[StagedFile]) -> None:
    """Refuse to publish unless the staged rejected file holds exactly the events the run
    counted as rejected.

    Rejected events are counted where they are found (in each block) but written by one step
    that collects them from every worker: a block lost between the two would be counted in the
    manifest and missing from the file, the manifest's `read = accepted + rejected +
    duplicates` true and false at once. Accepted rows cannot drift that way: they are counted
    where they are written. The rows come from the read-back scan made when the file was
    staged, else from the file's footer (where an earlier attempt of this commit moved it)."""
    expected = st.total_of(stats, st.REJECTED)
    rows = 0
    for file in staged:
        if not layout.is_rejected_file_of(run.output_root, run.input_key, file.final):
            continue
        if file.scan is not None:
            rows += file.scan.rows
        else:
            rows += parquet_rows(file.staged if exists(file.staged) else file.final)
    if rows != expected:
        raise RowsNotStaged(
            f"run {run.run_id} does not reconcile: {expected:,} events were counted as rejected "
            f"but the staged rejected file holds {rows:,} rows. Nothing was published and the "
            "earlier output is intact; re-run the same input, and report this with the run id "
            "(its staged files are kept under _staging/ to look at)."
        )


def earlier_rejected_files(run: Run) -> list[str]:
    """The rejected files published for this run's input (by an earlier run of it, or by an
    earlier attempt of this commit)."""
    root, key = run.output_root, run.input_key
    published = list_files(layout.rejected_dir(root), layout.part_glob(key))
    return [p for p in published if layout.is_rejected_file_of(root, key, p)]


def commit_run(
    run: Run,
    stats: dict[str, int],
    staged: list[StagedFile],
    stale: list[str],
    gates: GateThresholds = DEFAULT_GATES,
) -> dict[str, Any]:
    """Scan the staged files, move them into place, drop superseded ones, write manifest and
    marker. Raises SecretInOutput, having published nothing, if a staged file holds a secret.

    Only while the run holds the output root's writer lease (`transforms.storage.lease`): checked at
    the start, before the first move and before the manifest, from the stored lease and the
    run id (this step may run in another process than the launcher that holds it). Raises
    LeaseLost if another writer took it over; OutputBusy if the run has no lease of its own
    (a template launch) and another writer keeps it longer than the commit waits;
    RowsNotStaged if the rejected rows staged are not the rejections counted."""
    with lease.commit_guard(run.output_root, run.run_id) as still_held:
        scanned = screen_staged(run, staged)
        check_rejected_rows(run, stats, staged)
        finals = {s.final for s in staged}
        # Rejected files an earlier run of this input wrote beyond this run's (it has fewer
        # rejections now, or none).
        stale = [*stale, *(p for p in earlier_rejected_files(run) if p not in finals)]
        still_held()
        replace([s.staged for s in staged], [s.final for s in staged])
        delete(stale)
        # Older aggregate versions count for committed readers until `_SUCCESS`: listed now,
        # deleted after it.
        superseded = superseded_aggregates(run.output_root, run.run_id)
        manifest = build_manifest(run, stats, sorted(finals), [*stale, *superseded], gates)
        manifest["privacy_scan"] = scanned
        # Worker seconds the rule took inside blocks (screening and redaction), beside the scan.
        manifest["privacy_screening_seconds"] = round(
            stats.get(st.PRIVACY_SCREENING_MICROS, 0) / 1e6, 3
        )
        run_dir = layout.run_dir(run.output_root, run.run_id)
        still_held()
        write_text(layout.join(run_dir, layout.MANIFEST), json.dumps(manifest, indent=2))
        write_text(layout.success_marker(run.output_root, run.run_id), "")
        _delete_superseded(superseded)
        delete_tree(layout.staging_dir(run.output_root, run.run_id))
        remove_if_empty(layout.join(run.output_root, layout.STAGING))
    log.info(
        "committed run %s: %d files published, %d superseded files removed",
        run.run_id,
        len(finals),
        len(stale) + len(superseded),
    )
    return manifest


def _delete_superseded(paths: list[str]) -> None:
    """Delete aggregate versions the committed run replaced. The run is committed already:
    a failure here costs glob readers a month counted twice until the next run's commit
    deletes them, never committed readers, so it is logged, not raised."""
    try:
        delete(paths)
    except Exception as err:
        log.warning(
            "could not delete %d superseded aggregate file(s) (%s: %s); committed readers are "
            "not affected, and the next run's commit deletes them",
            len(paths),
            type(err).__name__,
            err,
        )


class PublishRefused(RuntimeError):
    """A SecretInOutput as it leaves the commit step: built from its one-line message, which
    Beam can rebuild with the failing step's name appended (it re-creates a DoFn's exception
    from its first argument; SecretInOutput's is a list of leaks)."""


class CommitFn(beam.DoFn):  # type: ignore[misc]
    def __init__(self, run: Run, gates: GateThresholds = DEFAULT_GATES) -> None:
        self._run = run
        self._gates = gates

    def process(
        self, stats: dict[str, int], staged: list[StagedFile], stale: list[str]
    ) -> Iterator[dict[str, Any]]:
        try:
            manifest = commit_run(self._run, stats, staged, stale, self._gates)
        except SecretInOutput as refused:
            raise PublishRefused(str(refused)) from refused
        yield manifest


class CommitRun(beam.PTransform):  # type: ignore[misc]
    """Merged stats (one element) + staged files + stale files -> the manifest (one element)."""

    def __init__(
        self,
        run: Run,
        staged: beam.PCollection,
        stale: beam.PCollection,
        gates: GateThresholds = DEFAULT_GATES,
    ) -> None:
        super().__init__()
        self._run = run
        self._gates = gates
        self._staged = staged
        self._stale = stale

    def expand(self, stats: beam.PCollection) -> beam.PCollection:
        return stats | "PublishRun" >> beam.ParDo(
            CommitFn(self._run, self._gates),
            staged=beam.pvalue.AsList(self._staged),
            stale=beam.pvalue.AsList(self._stale),
        )
