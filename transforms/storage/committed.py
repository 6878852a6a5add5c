"""Which data files a careful reader should trust: the committed ones.

A batch run publishes its files one move at a time (on GCS a copy, then a delete), then
writes its manifest and `_SUCCESS`. A run killed during those moves leaves some of its files
in place, whole but uncommitted, until the same input is run again. A reader globbing
`payments/**` would count them; a reader that takes only

- files listed by the manifest of a run with `_SUCCESS`, and
- streaming pane files (each one is committed alone: staged, then moved into place whole; a
  payments file a run keeps open is rewritten whole under its name by each pane, so a reader
  sees it before or after a pane, and a run never rewrites one a compaction removed:
  `transforms.streaming.rolling`),

never sees a run's partial output. Files a later run superseded are gone from the store, so
an old manifest naming them adds nothing.

Compaction (`pipelines/compact.py`) rewrites a partition's committed files into one (or a few)
and commits like a run: its manifest lists the files it wrote and those it removed. The files
listed as removed by a committed compaction no longer count from its `_SUCCESS` on, whether
or not they are deleted yet, unless a committed run that planned after it lists one as written
again (manifests apply in run order, a compaction's right after the newest run it saw:
`_applied_order`); its new files count from then on, not before. So a committed reader sees
the old files or the new ones, never both. A glob reader may see both between the
compaction's first move and the last delete after its `_SUCCESS`; `current_payment_files` is
the rule the writers' own reads of a partition follow in that window, and the next compaction
deletes what a killed one left.

Aggregates are the exception to "one file, one set of rows": a month's file is rewritten by
every run that touches the month, so each run writes a new version of it
(`schemas.layout.aggregate_path`) and a committed reader takes, per month, the newest version
whose run committed. Until a run's commit is complete, the month's previous version is the one
that counts; once it is, the run deletes the previous versions.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from schemas import layout
from schemas.run import COMPACT
from transforms.storage.files import exists, list_tree, read_text

DATASETS = (layout.PAYMENTS, layout.REJECTED, layout.AGGREGATES)


def _relative(path: str, root: str) -> str:
    return path[len(root) :].lstrip("/")


def committed_runs(root: str) -> list[str]:
    """Run ids with `_SUCCESS`, oldest first."""
    markers = list_tree(layout.join(root, layout.RUNS), layout.SUCCESS_MARKER)
    return sorted(posixpath.basename(posixpath.dirname(m)) for m in markers)


def _manifest(root: str, run_id: str) -> dict[str, Any] | None:
    path = layout.join(layout.run_dir(root, run_id), layout.MANIFEST)
    if not exists(path):
        return None
    manifest: dict[str, Any] = json.loads(read_text(path))
    return manifest


def _listed(manifest: dict[str, Any], key: str) -> set[str]:
    """A manifest's `files_written` or `files_removed`, relative to the root it wrote under."""
    written_root = str(manifest["output_root"]).rstrip("/")
    return {_relative(p, written_root) for p in manifest.get(key, [])}


def _applied_order(run_id: str, manifest: dict[str, Any]) -> tuple[str, int, str]:
    """Where a committed run's manifest applies in the ledger: in run-id (start) order, but a
    compaction right after the newest committed run it saw when it planned (`planned_after`):
    it may have started earlier, waiting for the lease while that run committed the very files
    it then removed, or in the same second as that run (ids sort by the second)."""
    if manifest.get("pipeline") == COMPACT:
        return max(run_id, str(manifest.get("planned_after") or "")), 1, run_id
    return run_id, 0, run_id


def _ledger(root: str) -> tuple[list[str], set[str], set[str]]:
    """(committed runs, files their manifests vouch for, files a committed compaction removed
    that no later run wrote again), manifests applied in `_applied_order`; paths relative to
    `root`."""
    trusted: set[str] = set()
    compacted_away: set[str] = set()
    runs = committed_runs(root)
    manifests = [(run_id, m) for run_id in runs if (m := _manifest(root, run_id)) is not None]
    for _, manifest in sorted(manifests, key=lambda entry: _applied_order(*entry)):
        written = _listed(manifest, "files_written")
        trusted |= written
        compacted_away -= written
        if manifest.get("pipeline") == COMPACT:
            removed = _listed(manifest, "files_removed")
            trusted -= removed
            compacted_away |= removed
    return runs, trusted, compacted_away


def committed_files(root: str, dataset: str = layout.PAYMENTS) -> list[str]:
    """Data files of a dataset (payments, rejected or aggregates) that committed runs wrote,
    less those a committed compaction removed since (oldest run first, so a later run that
    writes a path again makes it count again)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; one of {', '.join(DATASETS)}")
    root = root.rstrip("/")
    runs, trusted, compacted_away = _ledger(root)
    files = [
        path
        for path in list_tree(layout.join(root, dataset))
        if _relative(path, root) in trusted
        or (
            layout.run_of_pane_part(posixpath.basename(path)) is not None
            and _relative(path, root) not in compacted_away
        )
    ]
    if dataset != layout.AGGREGATES:
        return files
    # Of a month's versions, committed readers take the newest committed one alone (a newer
    # run's commit deletes the older ones only after its `_SUCCESS`).
    current = set(current_aggregates(files, set(runs).__contains__).values())
    return [p for p in files if layout.aggregate_version_of(p) is None or p in current]


# (root, run id) -> what that committed compaction removed. A committed run's manifest is
# never rewritten, so once read it is kept: a streaming pane or a batch partition reading a
# compacted partition costs no request after the first. Runs not (yet) committed are not kept.
_COMMITTED_REMOVALS: dict[tuple[str, str], frozenset[str]] = {}


def _removals_if_committed(root: str, run_id: str) -> frozenset[str] | None:
    """The files (relative to `root`) the compaction `run_id` removed, if it committed."""
    key = (root, run_id)
    if key not in _COMMITTED_REMOVALS:
        if not run_committed(root, run_id):
            return None
        manifest = _manifest(root, run_id)
        _COMMITTED_REMOVALS[key] = frozenset(_listed(manifest, "files_removed") if manifest else ())
    return _COMMITTED_REMOVALS[key]


def current_payment_files(root: str, paths: Sequence[str]) -> list[str]:
    """Of a listing of payments files (a partition, a channel), those whose rows count for
    the writers that read them back (to leave out events already written, to recompute a
    partition's aggregates): a compacted file once its compaction committed, and no file that
    such a compaction removed. Without this, a compaction killed after its first move or
    before its last delete would make both copies of a partition's rows count. A listing
    without compacted files is returned as it is, at no cost."""
    root = root.rstrip("/")
    runs = {layout.run_of_compacted_part(posixpath.basename(p)) for p in paths} - {None}
    if not runs:
        return list(paths)
    removals = {run: _removals_if_committed(root, run) for run in runs if run is not None}
    committed = {run for run, removed in removals.items() if removed is not None}
    removed = frozenset().union(*(r for r in removals.values() if r is not None))
    return [
        path
        for path in paths
        if _relative(path, root) not in removed
        and layout.run_of_compacted_part(posixpath.basename(path)) in (None, *committed)
    ]


def compaction_leftovers(root: str) -> list[str]:
    """Payments files no reader should count that a killed compaction left: files of a
    compaction that never committed, and files a committed one removed but did not get to
    delete. The next compaction deletes them (under the lease, so none can be in use)."""
    root = root.rstrip("/")
    runs, _, compacted_away = _ledger(root)
    committed = set(runs)
    return [
        path
        for path in list_tree(layout.join(root, layout.PAYMENTS))
        if _relative(path, root) in compacted_away
        or layout.run_of_compacted_part(posixpath.basename(path)) not in (None, *committed)
    ]


def current_aggregates(paths: Iterable[str], committed: Callable[[str], bool]) -> dict[str, str]:
    """{month folder: its newest aggregate version whose run `committed`} among `paths` (the
    unversioned file of earlier releases counts as committed, as version 0)."""
    newest: dict[str, tuple[int, str]] = {}
    for path in paths:
        version = layout.aggregate_version_of(path)
        if version is None:
            continue
        number, run_id = version
        folder = posixpath.dirname(path)
        if (run_id is None or committed(run_id)) and number >= newest.get(folder, (-1, ""))[0]:
            newest[folder] = (number, path)
    return {folder: path for folder, (_, path) in newest.items()}


def run_committed(root: str, run_id: str) -> bool:
    return exists(layout.success_marker(root, run_id))


def superseded_aggregates(root: str, run_id: str) -> list[str]:
    """The aggregate versions no committed reader takes once `run_id` has committed: in every
    month folder, all but the newest version whose run committed, `run_id` counted as
    committed (its own versions, older ones, and versions of runs killed before their commit).
    Deleted by the commit after `_SUCCESS`, so that glob readers also see one file a month."""
    paths = [
        path
        for kind in layout.AGGREGATE_KINDS
        for path in list_tree(layout.join(root, layout.AGGREGATES, kind))
    ]
    committed = {*committed_runs(root), run_id}
    keep = set(current_aggregates(paths, committed.__contains__).values())
    return [p for p in paths if layout.aggregate_version_of(p) is not None and p not in keep]
