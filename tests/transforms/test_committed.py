"""Which aggregate version a committed reader takes, and which ones a commit deletes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import layout
from transforms.storage.committed import committed_files, current_aggregates, superseded_aggregates

OLD, NEW, KILLED = "20261201T000000Z-aaaaaa", "20261202T000000Z-bbbbbb", "20261203T000000Z-cccccc"
MONTH = "2017-06"


def _version(root: Path, version: int, run_id: str, committed: bool) -> str:
    path = layout.aggregate_path(str(root), "by_status", MONTH, version, run_id)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"payments": [version]}), path)
    if committed:
        run = Path(layout.run_dir(str(root), run_id))
        run.mkdir(parents=True, exist_ok=True)
        manifest = {"output_root": str(root), "files_written": [path]}
        (run / layout.MANIFEST).write_text(json.dumps(manifest))
        (run / layout.SUCCESS_MARKER).write_text("")
    return path


def test_a_committed_reader_takes_the_newest_committed_version_of_a_month(tmp_path: Path) -> None:
    _version(tmp_path, 1, OLD, committed=True)
    newest = _version(tmp_path, 2, NEW, committed=True)
    assert committed_files(str(tmp_path), layout.AGGREGATES) == [newest]


def test_a_version_whose_run_did_not_commit_is_not_taken(tmp_path: Path) -> None:
    committed = _version(tmp_path, 1, OLD, committed=True)
    _version(tmp_path, 2, KILLED, committed=False)
    assert committed_files(str(tmp_path), layout.AGGREGATES) == [committed]


def test_the_unversioned_file_of_an_earlier_release_is_older_than_any_version() -> None:
    folder = f"/out/aggregates/by_status/month={MONTH}"
    unversioned = f"{folder}/{layout.UNVERSIONED_AGGREGATE}"
    first = f"{folder}/aggregate-v000001-{OLD}.parquet"
    assert current_aggregates([unversioned, first], {OLD}.__contains__) == {folder: first}


def test_a_commit_deletes_every_version_but_its_own(tmp_path: Path) -> None:
    old = _version(tmp_path, 1, OLD, committed=True)
    killed = _version(tmp_path, 2, KILLED, committed=False)
    _version(tmp_path, 3, NEW, committed=False)  # the committing run's own, moved into place
    assert sorted(superseded_aggregates(str(tmp_path), NEW)) == sorted([old, killed])


def test_a_commit_heals_a_month_it_did_not_touch(tmp_path: Path) -> None:
    """A run killed after its `_SUCCESS`, before deleting what it replaced, left two committed
    versions: the next commit deletes the older one, whichever months it wrote."""
    old = _version(tmp_path, 1, OLD, committed=True)
    _version(tmp_path, 2, NEW, committed=True)
    assert superseded_aggregates(str(tmp_path), KILLED) == [old]
