"""Streaming payments files roll: a run's panes join its open file of a partition until it is
an hour old or big enough, and other writers' files are read once, not on every pane."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import layout
from schemas.catalogue import load_catalogue
from schemas.run import COMPACT, new_run_id
from tests.samples import PORTAL_EVENT, TEST_KEY, run_of
from transforms.core import stats as st
from transforms.core.blocks import RunContext, process_block
from transforms.core.columnar import ArrowBlock
from transforms.core.normalise import Normaliser
from transforms.core.privacy import Pseudonymiser
from transforms.core.rawblock import RawBlock
from transforms.storage.committed import committed_files
from transforms.streaming.rolling import COMMITTED_IDS, CommittedIds, Rolling
from transforms.streaming.sinks import WritePartitionPaneFn

CTX = RunContext(Normaliser(Pseudonymiser(TEST_KEY), load_catalogue()), "run", 0)
PARTITION = ("portal", "2017-06-30")
T0 = 1_498_846_503.0  # 2017-06-30 21:15:03 in Bahrain, when the sample payment happened
DEFAULT = Rolling()


def _payment(n: int) -> bytes:
    return PORTAL_EVENT.replace(b"000123456", b"%09d" % n)


class _Writer:
    """One streaming run's pane writer on a clock the test moves."""

    def __init__(
        self,
        root: Path,
        rolls: Rolling = DEFAULT,
        settle: bool = False,
        partition: tuple[str, str] = PARTITION,
    ) -> None:
        self.now = T0
        self.partition = partition
        self.run_id = new_run_id(datetime.now(timezone.utc))
        self.fn = WritePartitionPaneFn(
            run_of(self.run_id, str(root)), settle, rolls, clock=lambda: self.now
        )

    def pane(self, *numbers: int, at: float = 0.0) -> dict[str, list[Any]]:
        """Outputs, by tag, of one pane of these payments `at` seconds after T0."""
        self.now = T0 + at
        payloads = [_payment(n) for n in numbers]
        ids = [f"m{n}" for n in numbers]
        block = process_block(RawBlock("sub", payloads, message_ids=ids), CTX).accepted
        outputs: dict[str, list[Any]] = {"written": [], "rejected": [], "stats": []}
        for out in self.fn.process((self.partition, [ArrowBlock.of(block)])):
            outputs[getattr(out, "tag", "written")].append(getattr(out, "value", out))
        return outputs


def _partition(root: Path, day: str = "2017-06-30") -> Path:
    return root / f"payments/channel=portal/event_date={day}"


def _files(root: Path, day: str = "2017-06-30") -> list[Path]:
    return sorted(_partition(root, day).glob("*.parquet"))


def _ids(paths: list[Path] | list[str]) -> list[str]:
    return sorted(i for p in paths for i in pq.read_table(p)["event_id"].to_pylist())


def test_panes_of_a_run_within_the_roll_age_go_into_one_file(tmp_path: Path) -> None:
    writer = _Writer(tmp_path)
    for minute in range(5):
        writer.pane(minute, at=60 * minute)
    [only] = _files(tmp_path)
    assert len(pq.read_table(only)) == 5


def test_a_file_as_old_as_the_roll_age_takes_no_more_panes(tmp_path: Path) -> None:
    writer = _Writer(tmp_path, Rolling(seconds=3600))
    writer.pane(1, at=0)
    writer.pane(2, at=3599)
    writer.pane(3, at=3600)
    assert [len(pq.read_table(p)) for p in _files(tmp_path)] == [2, 1]


def test_an_earlier_days_partition_keeps_its_file_open_for_a_day(tmp_path: Path) -> None:
    writer = _Writer(tmp_path, partition=("portal", "2017-06-29"))  # late payments only
    writer.pane(1, at=0)
    writer.pane(2, at=5 * 3600)
    writer.pane(3, at=24 * 3600)
    assert [len(pq.read_table(p)) for p in _files(tmp_path, "2017-06-29")] == [2, 1]


def test_a_file_holding_the_roll_rows_takes_no_more_panes(tmp_path: Path) -> None:
    writer = _Writer(tmp_path, Rolling(rows=1))
    writer.pane(1, at=0)
    writer.pane(2, at=60)
    assert len(_files(tmp_path)) == 2


def test_a_rolled_file_keeps_its_rows_in_file_order(tmp_path: Path) -> None:
    writer = _Writer(tmp_path)
    writer.pane(9, at=0)
    writer.pane(1, at=60)
    [only] = _files(tmp_path)
    ids = pq.read_table(only)["event_id"].to_pylist()
    assert ids == sorted(ids)  # same occurred_at: ordered by event_id, as writers sort them


def test_each_run_opens_files_of_its_own(tmp_path: Path) -> None:
    _Writer(tmp_path).pane(1)
    _Writer(tmp_path).pane(2)
    assert len(_files(tmp_path)) == 2


def test_a_retried_pane_writes_its_rows_once_and_counts_them_once(tmp_path: Path) -> None:
    writer = _Writer(tmp_path, settle=True)
    writer.pane(1, 2, at=0)
    writer.pane(1, 2, at=5)  # the same pane again: its first attempt committed, then failed
    assert _ids(_files(tmp_path)) == ["portal:PTL-2017-000000001", "portal:PTL-2017-000000002"]
    stats = [json.loads(p.read_text()) for p in tmp_path.glob("runs/*/stats-*.json")]
    assert st.totals_by_kind(st.merge(stats))[st.ACCEPTED] == 2


def test_without_deferred_acks_a_retried_pane_counts_the_rows_it_committed(
    tmp_path: Path,
) -> None:
    writer = _Writer(tmp_path)
    writer.pane(1, at=0)
    [stats] = writer.pane(1, at=5)["stats"]  # the retry's outputs replace the failed attempt's
    assert stats[st.accepted_key("portal")] == 1
    assert _ids(_files(tmp_path)) == ["portal:PTL-2017-000000001"]


def test_a_restarted_run_reads_each_file_of_the_earlier_run_once(tmp_path: Path) -> None:
    first = _Writer(tmp_path, Rolling(rows=1))  # a file per pane, like the old writer
    for n in range(6):
        first.pane(n, at=60 * n)
    reads = COMMITTED_IDS.reads
    restarted = _Writer(tmp_path)
    for n in range(10, 20):
        restarted.pane(n, at=400 + 60 * n)
    assert COMMITTED_IDS.reads - reads == 6


def test_kept_ids_are_read_again_once_their_file_changed(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"event_id": ["a"]}), path)
    cache = CommittedIds()
    assert cache.of(str(path), (1, 1)).to_pylist() == ["a"]
    pq.write_table(pa.table({"event_id": ["a", "b"]}), path)
    assert cache.of(str(path), (1, 1)).to_pylist() == ["a"]  # same version: kept
    assert cache.of(str(path), (2, 2)).to_pylist() == ["a", "b"]


def test_kept_ids_stay_within_their_budget(tmp_path: Path) -> None:
    cache = CommittedIds(budget=1)
    for name in "abc":
        pq.write_table(pa.table({"event_id": [name * 100]}), tmp_path / f"{name}.parquet")
        cache.of(str(tmp_path / f"{name}.parquet"), (0, 0))
    cache.of(str(tmp_path / "a.parquet"), (0, 0))
    assert cache.reads == 4  # only the last one read is kept


def test_a_restarted_run_still_leaves_out_what_the_earlier_run_committed(tmp_path: Path) -> None:
    _Writer(tmp_path).pane(1, 2)
    outputs = _Writer(tmp_path).pane(2, 3)
    [stats] = outputs["stats"]
    assert stats[st.duplicate_key("portal", "in_output")] == 1
    assert _ids(_files(tmp_path)).count("portal:PTL-2017-000000002") == 1


def test_a_file_a_compaction_removed_is_not_written_again_under_its_name(tmp_path: Path) -> None:
    writer = _Writer(tmp_path)
    writer.pane(1, at=0)
    [open_file] = _files(tmp_path)
    # A compaction committed a copy of it and was killed before deleting it.
    compact_run = new_run_id(datetime.now(timezone.utc))
    compacted = _partition(tmp_path) / layout.compacted_part_name(compact_run, 0)
    shutil.copy(open_file, compacted)
    run_dir = Path(layout.run_dir(str(tmp_path), compact_run))
    run_dir.mkdir(parents=True)
    manifest = {
        "run_id": compact_run,
        "pipeline": COMPACT,
        "output_root": str(tmp_path),
        "files_written": [str(compacted)],
        "files_removed": [str(open_file)],
    }
    (run_dir / layout.MANIFEST).write_text(json.dumps(manifest))
    (run_dir / layout.SUCCESS_MARKER).write_text("")
    before = open_file.read_bytes()
    writer.pane(2, at=60)
    assert open_file.read_bytes() == before
    counted = committed_files(str(tmp_path))
    assert _ids(counted) == ["portal:PTL-2017-000000001", "portal:PTL-2017-000000002"]


def test_rolled_names_are_pane_names_of_their_run_that_say_when_they_were_opened() -> None:
    run_id = "20261123T120000Z-a1b2c3"
    name = layout.rolled_part_name(run_id, T0)
    assert layout.run_of_pane_part(name) == run_id
    assert layout.rolled_opened_at(name) == int(T0)
