"""Which data files a careful reader should trust: the committed ones.

A batch run publishes its files one move at a time (on GCS a copy, then a delete), then
writes its manifest and `_SUCCESS`. A run killed during those moves leaves some of its files
in place, whole but uncommitted, until the same input is run again. A reader globbing
`payments/**` would count them; a reader that takes only

- files listed by the manifest of a run with `_SUCCESS`, and
- streaming pane files (each one is committed alone: staged, then moved into place whole),

never sees a run's partial output. Files a later run superseded are gone from the store, so
an old manifest naming them adds nothing.
"""

from __future__ import annotations

import json
import posixpath

from schemas import layout
from transforms.storage import exists, list_tree, read_text

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
    for run_id in committed_runs(root):
        manifest_path = layout.join(layout.run_dir(root, run_id), layout.MANIFEST)
        if not exists(manifest_path):
            continue
        manifest = json.loads(read_text(manifest_path))
        written_root = str(manifest["output_root"]).rstrip("/")
        trusted.update(_relative(p, written_root) for p in manifest["files_written"])
    return [
        path
        for path in list_tree(layout.join(root, dataset))
        if _relative(path, root) in trusted
        or layout.run_of_pane_part(posixpath.basename(path)) is not None
    ]
