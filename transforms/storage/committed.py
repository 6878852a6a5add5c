"""Which data files a careful reader should trust: the committed ones.

A batch run publishes its files one move at a time (on GCS a copy, then a delete), then
writes its manifest and `_SUCCESS`. A run killed during those moves leaves some of its files
in place, whole but uncommitted, until the same input is run again. A reader globbing
`payments/**` would count them; a reader that takes only

- files listed by the manifest of a run with `_SUCCESS`, and
- streaming pane files (each one is committed alone: staged, then moved into place whole),

never sees a run's partial output. Files a later run superseded are gone from the store, so
an old manifest naming them adds nothing.

Aggregates are the exception to "one file, one set of rows": a month's file is rewritten by
every run that touches the month, so each run writes a new version of it
(`schemas.layout.aggregate_path`) and a committed reader takes, per month, the newest version
whose run committed. Until a run's commit is complete, the month's previous version is the one
that counts; once it is, the run deletes the previous versions.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterable

from schemas import layout
from transforms.storage.files import exists, list_tree, read_text

DATASETS = (layout.PAYMENTS, layout.REJECTED, layout.AGGREGATES)


def _relative(path: str, root: str) -> str:
    return path[len(root) :].lstrip("/")


def committed_runs(root: str) -> list[str]:
    """Run ids with `_SUCCESS`, oldest first."""
    markers = list_tree(layout.join(root, layout.RUNS), layout.SUCCESS_MARKER)
    return sorted(posixpath.basename(posixpath.dirname(m)) for m in markers)


def committed_files(root: str, dataset: str = layout.PAYMENTS) -> list[str]:
    """Data files of a dataset (payments, rejected or aggregates) that committed runs wrote."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; one of {', '.join(DATASETS)}")
    root = root.rstrip("/")
    trusted: set[str] = set()
    runs = committed_runs(root)
    for run_id in runs:
        manifest_path = layout.join(layout.run_dir(root, run_id), layout.MANIFEST)
        if not exists(manifest_path):
            continue
        manifest = json.loads(read_text(manifest_path))
        written_root = str(manifest["output_root"]).rstrip("/")
        trusted.update(_relative(p, written_root) for p in manifest["files_written"])
    files = [
        path
        for path in list_tree(layout.join(root, dataset))
        if _relative(path, root) in trusted
        or layout.run_of_pane_part(posixpath.basename(path)) is not None
    ]
    if dataset != layout.AGGREGATES:
        return files
    # Of a month's versions, committed readers take the newest committed one alone (a newer
    # run's commit deletes the older ones only after its `_SUCCESS`).
    current = set(current_aggregates(files, set(runs).__contains__).values())
    return [p for p in files if layout.aggregate_version_of(p) is None or p in current]


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
