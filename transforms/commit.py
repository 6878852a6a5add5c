"""The last step of a batch run: publish staged files, then the manifest, then `_SUCCESS`.

Nothing reaches a dataset folder before this step, so a run killed earlier leaves the
published output as it was. The step itself is a sequence of moves, not one atomic switch
(on GCS each move is a copy then a delete): a run killed inside it may have published some of
its files, whole, and has no `_SUCCESS`. Its files are named from its input, so re-running the
same input overwrites them and removes the ones it no longer writes: no row twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from schemas import layout
from transforms.manifest import RunInfo, build_manifest
from transforms.partitions import StagedFile
from transforms.storage import delete, delete_tree, exists, replace, write_text

log = logging.getLogger(__name__)


def commit_run(
    info: RunInfo, stats: dict[str, int], staged: list[StagedFile], stale: list[str]
) -> dict[str, Any]:
    """Move staged files into place, drop superseded ones, write manifest and marker."""
    finals = {s.final for s in staged}
    rejected = layout.rejected_path(info.output_root, info.input_key)
    if rejected not in finals and exists(rejected):
        stale = [*stale, rejected]  # this input no longer has rejections
    replace([s.staged for s in staged], [s.final for s in staged])
    delete(stale)
    manifest = build_manifest(info, stats, sorted(finals), stale)
    run_dir = layout.run_dir(info.output_root, info.run_id)
    write_text(layout.join(run_dir, layout.MANIFEST), json.dumps(manifest, indent=2))
    write_text(layout.join(run_dir, layout.SUCCESS_MARKER), "")
    delete_tree(layout.staging_dir(info.output_root, info.run_id))
    log.info(
        "committed run %s: %d files published, %d superseded files removed",
        info.run_id,
        len(finals),
        len(stale),
    )
    return manifest


class CommitFn(beam.DoFn):  # type: ignore[misc]
    def __init__(self, info: RunInfo) -> None:
        self._info = info

    def process(
        self, stats: dict[str, int], staged: list[StagedFile], stale: list[str]
    ) -> Iterator[dict[str, Any]]:
        yield commit_run(self._info, stats, staged, stale)


class CommitRun(beam.PTransform):  # type: ignore[misc]
    """Merged stats (one element) + staged files + stale files -> the manifest (one element)."""

    def __init__(self, info: RunInfo, staged: beam.PCollection, stale: beam.PCollection) -> None:
        super().__init__()
        self._info = info
        self._staged = staged
        self._stale = stale

    def expand(self, stats: beam.PCollection) -> beam.PCollection:
        return stats | "PublishRun" >> beam.ParDo(
            CommitFn(self._info),
            staged=beam.pvalue.AsList(self._staged),
            stale=beam.pvalue.AsList(self._stale),
        )
