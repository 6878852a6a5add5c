"""The batch staging steps one at a time, without a pipeline (transforms/batch/stage.py):
fragments, the cross-partition losers, a partition staged and scanned, the month aggregates."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from schemas import layout
from schemas.catalogue import load_catalogue
from tests.samples import PORTAL_EVENT, TEST_KEY, run_of
from transforms.batch import stage
from transforms.batch.stage import (
    FragmentPrints,
    SpillFragmentFn,
    StagePartitionFn,
    _losers_by_index,
    _losers_by_partition,
    read_fragment_index,
    stage_month,
)
from transforms.core.blocks import RunContext, process_block
from transforms.core.columnar import ArrowBlock
from transforms.core.normalise import Normaliser
from transforms.core.privacy import Pseudonymiser
from transforms.core.rawblock import RawBlock
from transforms.dedup.table import loser_schema
from transforms.storage import partitions
from transforms.storage.partitions import StagedFile, WriteSettings

RUN = "20261202T020000Z-abc123"
LATER = "20261203T020000Z-def456"
CTX = RunContext(Normaliser(Pseudonymiser(TEST_KEY), load_catalogue()), RUN, 0)
DAY = "2017-06-30"
NEXT_DAY = PORTAL_EVENT.replace(b"2017-06-30T21:15:03", b"2017-07-01T09:00:00")  # same txn_id


def _settings(root: Path, run_id: str = RUN, key: str = "00000000000000aa") -> WriteSettings:
    return WriteSettings(run_of(run_id, str(root), input_key=key))


def _rows(*payloads: bytes) -> ArrowBlock:
    lines = list(range(1, len(payloads) + 1))
    result = process_block(RawBlock("landing/portal.jsonl", list(payloads), lines), CTX)
    return ArrowBlock.of(result.accepted)


def _spill(settings: WriteSettings, day: str, *payloads: bytes) -> FragmentPrints:
    """The fragment of `payloads`, as the event index reads it back (path, day, fingerprints)."""
    fn = SpillFragmentFn(settings)
    fn.start_bundle()
    [(_, path)] = fn.process((("portal", day), _rows(*payloads)))
    [tagged] = fn.finish_bundle()
    channel, index = tagged.value.value
    [fragment] = read_fragment_index(index)
    assert (channel, fragment.path) == ("portal", path)
    return fragment


def _stage(settings: WriteSettings, day: str, paths: Iterable[str], moved: Any = None) -> dict:
    """Outputs of staging one partition, by tag ('staged' for the main output)."""
    fn = StagePartitionFn(settings)
    fn.start_bundle()
    outputs: dict[str, list[Any]] = {"staged": []}
    for out in fn.process((("portal", day), list(paths)), moved or {("portal", day): []}):
        outputs.setdefault(out.tag, []).append(out.value)
    outputs["staged"] = [w.value for w in fn.finish_bundle()]
    return outputs


def test_a_fragment_is_named_by_its_content_so_a_retry_writes_the_same_file(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    assert _spill(settings, DAY, PORTAL_EVENT).path == _spill(settings, DAY, PORTAL_EVENT).path


def test_a_staged_partition_comes_with_the_scan_of_its_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    outputs = _stage(settings, DAY, [_spill(settings, DAY, PORTAL_EVENT).path])
    [staged] = outputs["staged"]
    assert isinstance(staged, StagedFile)
    assert staged.scan is not None
    assert staged.scan.rows == 1
    assert not staged.scan.leaks
    assert pq.read_table(staged.staged).num_rows == 1


def test_an_event_in_two_days_of_one_run_loses_in_the_later_input(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    paths = [_spill(settings, DAY, PORTAL_EVENT), _spill(settings, "2017-07-01", NEXT_DAY)]
    losers = dict(_losers_by_partition(("portal", paths), settings))
    assert list(losers) == [("portal", "2017-07-01")]
    [detail] = losers[("portal", "2017-07-01")].table()["conflict_detail"].to_pylist()
    assert "differs in occurred_at" in detail


def test_an_event_an_earlier_run_stored_on_another_day_loses(tmp_path: Path) -> None:
    first = _settings(tmp_path)
    [staged] = _stage(first, DAY, [_spill(first, DAY, PORTAL_EVENT).path])["staged"]
    Path(staged.final).parent.mkdir(parents=True)
    Path(staged.staged).rename(staged.final)  # committed
    later = _settings(tmp_path, LATER, "00000000000000bb")
    paths = [_spill(later, "2017-07-01", NEXT_DAY)]
    losers = dict(_losers_by_partition(("portal", paths), later))
    [detail] = losers[("portal", "2017-07-01")].table()["conflict_detail"].to_pylist()
    assert detail == f"already written to the partition of {DAY} by an earlier run"


def test_a_bundle_indexes_its_fragments_of_a_channel_in_one_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    fn = SpillFragmentFn(settings)
    fn.start_bundle()
    paths = [
        path
        for day, payload in ((DAY, PORTAL_EVENT), ("2017-07-01", NEXT_DAY))
        for _, path in fn.process((("portal", day), _rows(payload)))
    ]
    [tagged] = fn.finish_bundle()
    channel, index = tagged.value.value
    assert channel == "portal"
    assert [f.path for f in read_fragment_index(index)] == paths
    losers = dict(_losers_by_index(("portal", [index, index]), settings))  # a retried bundle
    assert list(losers) == [("portal", "2017-07-01")]


def test_the_event_index_reads_only_fragments_holding_a_candidate(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    unrelated = PORTAL_EVENT.replace(b"PTL-2017-", b"PTL-2017-9")
    fragments = [
        _spill(settings, DAY, PORTAL_EVENT),
        _spill(settings, "2017-07-01", NEXT_DAY),
        _spill(settings, "2017-07-02", unrelated.replace(b"2017-06-30T21", b"2017-07-02T09")),
    ]
    Path(fragments[2].path).unlink()  # its one event is in no other partition: never opened
    losers = _losers_by_partition(("portal", fragments), settings)
    assert [key for key, _ in losers] == [("portal", "2017-07-01")]


def _losers(
    fragments: list[FragmentPrints], settings: WriteSettings
) -> dict[tuple[str, str], list[Any]]:
    return {
        key: block.table().to_pylist()
        for key, block in _losers_by_partition(("portal", fragments), settings)
    }


def test_ids_that_share_a_fingerprint_give_the_same_losers_as_ids_that_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every id of the run and of the stored lake under one fingerprint: each is then a
    # candidate, and only the comparison of the ids themselves decides.
    first = _settings(tmp_path)
    [staged] = _stage(first, DAY, [_spill(first, DAY, PORTAL_EVENT).path])["staged"]
    Path(staged.final).parent.mkdir(parents=True)
    Path(staged.staged).rename(staged.final)
    later = _settings(tmp_path, LATER, "00000000000000bb")
    other = PORTAL_EVENT.replace(b"PTL-2017-", b"PTL-2017-9")
    other_next_day = other.replace(b"2017-06-30T21:15:03", b"2017-07-01T09:00:00")

    def spilled() -> list[FragmentPrints]:
        return [
            _spill(later, "2017-07-01", NEXT_DAY, other_next_day),
            _spill(later, DAY, other),
        ]

    expected = _losers(spilled(), later)
    # One loses to the stored row, one to this run's row of the day before.
    assert len(expected[("portal", "2017-07-01")]) == 2

    def colliding(values: Any) -> np.ndarray:
        return np.zeros(len(values), np.uint64)

    monkeypatch.setattr(stage, "fingerprints", colliding)
    monkeypatch.setattr(partitions, "fingerprints", colliding)
    fragments = spilled()  # the spill takes the fingerprints: spilled again under collisions
    assert {f.prints for f in fragments} == {bytes(8), bytes(16)}
    assert _losers(fragments, later) == expected


def test_a_loser_is_rejected_as_a_conflict_where_it_was_staged(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    paths = [_spill(settings, DAY, PORTAL_EVENT), _spill(settings, "2017-07-01", NEXT_DAY)]
    losers = dict(_losers_by_partition(("portal", paths), settings))
    moved = {("portal", "2017-07-01"): [losers[("portal", "2017-07-01")]]}
    outputs = _stage(settings, "2017-07-01", [paths[1].path], moved)
    assert outputs["staged"] == []  # its only row lost
    [rejected] = outputs["rejected"]
    assert rejected.table()["error_code"].to_pylist() == ["DUPLICATE_CONFLICT"]


def _month_figures(settings: WriteSettings, *payloads: bytes) -> list[StagedFile]:
    outputs = _stage(settings, DAY, [_spill(settings, DAY, *payloads).path])
    blocks = [b for (kind, _), b in outputs["aggregates"] if kind == "by_status"]
    return list(stage_month((("by_status", DAY[:7]), blocks), settings))


def _commit(root: Path, run_id: str, staged: StagedFile) -> None:
    Path(staged.final).parent.mkdir(parents=True, exist_ok=True)
    Path(staged.staged).rename(staged.final)
    marker = Path(layout.success_marker(str(root), run_id))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("")


def test_a_months_first_aggregates_are_its_version_1(tmp_path: Path) -> None:
    [staged] = _month_figures(_settings(tmp_path), PORTAL_EVENT)
    assert layout.aggregate_version_of(staged.final) == (1, RUN)


def test_a_month_changed_by_a_later_run_gets_the_next_version(tmp_path: Path) -> None:
    [first] = _month_figures(_settings(tmp_path), PORTAL_EVENT)
    _commit(tmp_path, RUN, first)
    other = PORTAL_EVENT.replace(b"000123456", b"000123457").replace(b"12500", b"99999")
    [second] = _month_figures(_settings(tmp_path, LATER, "00000000000000bb"), other)
    assert layout.aggregate_version_of(second.final) == (2, LATER)


def test_a_month_whose_figures_did_not_change_gets_no_new_version(tmp_path: Path) -> None:
    [first] = _month_figures(_settings(tmp_path), PORTAL_EVENT)
    _commit(tmp_path, RUN, first)
    assert _month_figures(_settings(tmp_path, LATER), PORTAL_EVENT) == []


def test_a_version_whose_run_did_not_commit_is_not_merged_into_the_next(tmp_path: Path) -> None:
    [killed] = _month_figures(_settings(tmp_path), PORTAL_EVENT)
    Path(killed.final).parent.mkdir(parents=True)
    Path(killed.staged).rename(killed.final)  # moved, but its run never wrote _SUCCESS
    other = PORTAL_EVENT.replace(b"000123456", b"000123457")
    [staged] = _month_figures(_settings(tmp_path, LATER, "00000000000000bb"), other)
    assert layout.aggregate_version_of(staged.final) == (2, LATER)
    assert pq.read_table(staged.staged)["payments"].to_pylist() == [1]  # not 2: v1 ignored


def test_losers_fit_the_loser_schema(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    paths = [_spill(settings, DAY, PORTAL_EVENT), _spill(settings, "2017-07-01", NEXT_DAY)]
    for block in dict(_losers_by_partition(("portal", paths), settings)).values():
        assert block.table().schema.equals(loser_schema())
