"""The commit step's second line of defence: every staged file is read back and scanned before
anything is published; a secret past the redaction publishes nothing."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from schemas import layout
from schemas.run import Run
from tests.samples import run_of
from transforms.batch import commit
from transforms.batch.commit import CommitFn, PublishRefused, RowsNotStaged, commit_run, refusal
from transforms.core import stats as st
from transforms.core.scanner import SecretInOutput
from transforms.storage import lease
from transforms.storage.files import replace, write_parquet
from transforms.storage.partitions import StagedFile

CARD = "4111 1111 1111 1111"
CARD_DIGITS = "4111111111111111"
INPUT_KEY = "00000000000000aa"
DAY = date(2017, 6, 30)
# What a run that staged `_rejected(...)` (one row) counted.
ONE_REJECTION = {st.rejected_key("kiosk", "INVALID_AMOUNT"): 1}


def _info(root: Path, run_id: str) -> Run:
    return run_of(run_id, str(root), input_key=INPUT_KEY)


def _payments(site: str) -> pa.Table:
    return pa.table(
        {
            "event_id": ["kiosk:KSK-017:40213", "kiosk:KSK-017:40214"],
            "kiosk_site": ["Isa Town", site],
            "source_file": ["landing/2017-06-30/kiosk.jsonl"] * 2,
            "source_line": pa.array([1, 2], pa.int64()),
        }
    )


def _rejected(reason: str) -> pa.Table:
    return pa.table(
        {
            "error_code": ["INVALID_AMOUNT"],
            "reason": [reason],
            "raw": ['{"channel": "kiosk"}'],
            "source_file": ["landing/2017-06-30/kiosk.jsonl"],
            "source_line": pa.array([7], pa.int64()),
        }
    )


def _stage(root: Path, run_id: str, final: str, table: pa.Table) -> StagedFile:
    staged = layout.staged(str(root), run_id, final)
    write_parquet(table, staged)
    return StagedFile(staged, final)


def _payments_final(root: Path) -> str:
    return layout.join(layout.payments_dir(str(root), "kiosk", DAY), "part-00000000000000aa-00000")


def _run(root: Path, run_id: str, payments: pa.Table, rejected: pa.Table) -> list[StagedFile]:
    """Stage one payments and one rejected file for a run; returns what commit_run takes."""
    return [
        _stage(root, run_id, _payments_final(root) + ".parquet", payments),
        _stage(root, run_id, layout.rejected_path(str(root), INPUT_KEY), rejected),
    ]


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under the output root, staging excluded, with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and layout.STAGING not in p.parts
    }


@pytest.fixture
def published(tmp_path: Path) -> dict[str, bytes]:
    """A first run committed cleanly; the output as it was then."""
    staged = _run(tmp_path, "run-1", _payments("Riffa"), _rejected("amount is negative"))
    commit_run(_info(tmp_path, "run-1"), ONE_REJECTION, staged, [])
    return _snapshot(tmp_path)


def _planted_run(root: Path, stale: list[str] | None = None) -> SecretInOutput:
    """A second run of the same input with a card number past the redaction; its refusal."""
    staged = _run(root, "run-2", _payments(f"Riffa {CARD}"), _rejected("amount is negative"))
    with pytest.raises(SecretInOutput) as refused:
        commit_run(_info(root, "run-2"), ONE_REJECTION, staged, stale or [])
    return refused.value


def test_a_clean_run_is_published_with_what_its_scan_read(tmp_path: Path) -> None:
    staged = _run(tmp_path, "run-1", _payments("Riffa"), _rejected("amount is negative"))
    manifest = commit_run(_info(tmp_path, "run-1"), ONE_REJECTION, staged, [])
    assert manifest["privacy_scan"]["files"] == 2
    assert manifest["privacy_scan"]["rows"] == 3
    assert all(Path(s.final).is_file() for s in staged)


def test_a_card_number_in_a_staged_file_publishes_nothing(
    tmp_path: Path, published: dict[str, bytes]
) -> None:
    _planted_run(tmp_path)
    assert _snapshot(tmp_path) == {
        **published,
        "runs/run-2/_REFUSED.json": (tmp_path / "runs/run-2/_REFUSED.json").read_bytes(),
    }


def test_a_refused_run_writes_no_manifest_and_no_success_marker(
    tmp_path: Path, published: dict[str, bytes]
) -> None:
    _planted_run(tmp_path)
    assert not (tmp_path / "runs/run-2" / layout.MANIFEST).exists()
    assert not (tmp_path / "runs/run-2" / layout.SUCCESS_MARKER).exists()
    assert "runs/run-1/manifest.json" in published


def test_a_refused_run_removes_no_superseded_file(
    tmp_path: Path, published: dict[str, bytes]
) -> None:
    old = Path(_payments_final(tmp_path) + ".parquet")
    _planted_run(tmp_path, stale=[str(old)])
    assert old.read_bytes() == published[str(old.relative_to(tmp_path))]


def test_a_card_number_in_a_rejected_reason_is_refused(
    tmp_path: Path, published: dict[str, bytes]
) -> None:
    staged = _run(tmp_path, "run-2", _payments("Riffa"), _rejected(f"card {CARD} is not masked"))
    with pytest.raises(SecretInOutput) as refused:
        commit_run(_info(tmp_path, "run-2"), ONE_REJECTION, staged, [])
    [leak] = refused.value.leaks
    assert (leak.column, leak.row, leak.kind) == ("reason", 0, "card")
    assert _snapshot(tmp_path).keys() == {*published, "runs/run-2/_REFUSED.json"}


def test_a_cpr_in_a_staged_file_is_refused(tmp_path: Path) -> None:
    staged = _run(tmp_path, "run-1", _payments("Riffa 850101234"), _rejected("amount"))
    with pytest.raises(SecretInOutput) as refused:
        commit_run(_info(tmp_path, "run-1"), ONE_REJECTION, staged, [])
    assert [leak.kind for leak in refused.value.leaks] == ["cpr"]


@pytest.mark.usefixtures("published")
def test_the_refusal_names_file_column_and_row_but_not_the_digits(tmp_path: Path) -> None:
    message = str(_planted_run(tmp_path))
    final = _payments_final(tmp_path) + ".parquet"
    assert f"{final}: column 'kiosk_site', row 1: a card number" in message
    assert "Nothing was published" in message
    assert CARD_DIGITS not in message.replace(" ", "")
    assert "1111" not in message.replace(str(tmp_path), "")


@pytest.mark.usefixtures("published")
def test_a_refused_runs_staged_files_are_deleted(tmp_path: Path) -> None:
    _planted_run(tmp_path)
    assert not (tmp_path / layout.STAGING / "run-2").exists()


@pytest.mark.usefixtures("published")
def test_a_refused_run_records_its_leaks_and_their_input_lines_without_the_digits(
    tmp_path: Path,
) -> None:
    _planted_run(tmp_path)
    text = (tmp_path / "runs/run-2/_REFUSED.json").read_text()
    [leak] = json.loads(text)["leaks"]
    assert leak["origin"] == "input landing/2017-06-30/kiosk.jsonl line 2"
    assert "1111" not in text.replace(str(tmp_path), "")


@pytest.mark.usefixtures("published")
def test_the_recorded_refusal_reads_back_as_the_same_error(tmp_path: Path) -> None:
    raised = _planted_run(tmp_path)
    recorded = refusal(str(tmp_path), "run-2")
    assert recorded is not None
    assert str(recorded) == str(raised)


@pytest.mark.usefixtures("published")
def test_a_committed_run_has_no_recorded_refusal(tmp_path: Path) -> None:
    assert refusal(str(tmp_path), "run-1") is None


@pytest.mark.usefixtures("published")
def test_a_retried_commit_of_a_refused_run_refuses_again(tmp_path: Path) -> None:
    first = _planted_run(tmp_path)
    with pytest.raises(SecretInOutput) as again:  # its staged files are gone by now
        commit_run(_info(tmp_path, "run-2"), {}, [], [])
    assert str(again.value) == str(first)
    assert not (tmp_path / "runs/run-2" / layout.SUCCESS_MARKER).exists()


def test_a_retried_commit_skips_the_files_an_earlier_attempt_moved(tmp_path: Path) -> None:
    staged = _run(tmp_path, "run-1", _payments("Riffa"), _rejected("amount is negative"))
    Path(staged[0].final).parent.mkdir(parents=True)
    Path(staged[0].staged).rename(staged[0].final)  # the first attempt died after one move
    manifest = commit_run(_info(tmp_path, "run-1"), ONE_REJECTION, staged, [])
    assert manifest["privacy_scan"]["files"] == 1
    assert (tmp_path / "runs/run-1" / layout.SUCCESS_MARKER).exists()


def test_the_commit_step_raises_a_refusal_beam_can_rebuild_with_its_step_name(
    tmp_path: Path,
) -> None:
    staged = _run(tmp_path, "run-1", _payments(CARD), _rejected("amount"))
    fn = CommitFn(_info(tmp_path, "run-1"))
    with pytest.raises(PublishRefused) as refused:
        list(fn.process({}, staged, []))
    assert isinstance(refused.value.__cause__, SecretInOutput)
    # What Beam does to name the failing step (apache_beam.runners.common._reraise_augmented).
    rebuilt = type(refused.value)(refused.value.args[0] + " [while running 'Commit/PublishRun']")
    assert str(rebuilt).startswith(str(refused.value.__cause__))


# --- the writer lease (transforms/storage/lease.py) ------------------------------------------


def _take_over_from(root: Path, run_id: str) -> lease.Lease:
    """Run `run_id` holds the lease, its heartbeat stops, and another run takes it over."""
    held = lease.acquire(str(root), run_id, "batch", ttl=0.2)
    held._stop.set()  # a frozen launcher: no more heartbeats
    time.sleep(0.3)
    return lease.acquire(str(root), "run-3", "batch")


def test_a_run_whose_lease_was_taken_over_publishes_nothing(
    tmp_path: Path, published: dict[str, bytes]
) -> None:
    staged = _run(tmp_path, "run-2", _payments("Riffa"), _rejected("amount is negative"))
    with (
        _take_over_from(tmp_path, "run-2"),
        pytest.raises(lease.LeaseLost, match=r"run-2 lost its writer lease.*run-3 took it"),
    ):
        commit_run(_info(tmp_path, "run-2"), ONE_REJECTION, staged, [])
    assert _snapshot(tmp_path) == {
        **published,
        "runs/run-2/_LEASE_REVOKED.json": (
            tmp_path / "runs/run-2/_LEASE_REVOKED.json"
        ).read_bytes(),
    }
    assert not (tmp_path / layout.STAGING / "run-2").exists()  # deleted by the new holder


def test_a_lease_lost_during_the_moves_writes_no_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staged = _run(tmp_path, "run-1", _payments("Riffa"), _rejected("amount is negative"))
    held = lease.acquire(str(tmp_path), "run-1", "batch")

    def moves_then_lose_the_lease(sources: list[str], targets: list[str]) -> None:
        replace(sources, targets)
        held.release()  # as if its heartbeat had stopped and another writer had taken over

    monkeypatch.setattr(commit, "replace", moves_then_lose_the_lease)
    with pytest.raises(lease.LeaseLost):
        commit_run(_info(tmp_path, "run-1"), ONE_REJECTION, staged, [])
    assert not (tmp_path / "runs/run-1" / layout.MANIFEST).exists()
    assert not (tmp_path / "runs/run-1" / layout.SUCCESS_MARKER).exists()


def test_a_commit_of_a_run_launched_without_a_lease_waits_for_the_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, published: dict[str, bytes]
) -> None:
    monkeypatch.setattr(lease, "COMMIT_WAIT_SECONDS", 0.2)
    staged = _run(tmp_path, "run-2", _payments("Riffa"), _rejected("amount is negative"))
    with lease.acquire(str(tmp_path), "run-3", "batch"):
        with pytest.raises(lease.OutputBusy, match="held by batch run run-3"):
            commit_run(_info(tmp_path, "run-2"), ONE_REJECTION, staged, [])
        assert _snapshot(tmp_path).keys() - {"_lease/writer.json"} == published.keys()
    commit_run(_info(tmp_path, "run-2"), ONE_REJECTION, staged, [])  # once it is free
    assert (tmp_path / "runs/run-2" / layout.SUCCESS_MARKER).exists()


def test_a_rejected_file_missing_rows_the_run_counted_publishes_nothing(
    tmp_path: Path, published: dict[str, bytes]
) -> None:
    staged = _run(tmp_path, "run-2", _payments("Riffa"), _rejected("amount is negative"))
    counted = {st.rejected_key("kiosk", "INVALID_AMOUNT"): 2}
    with pytest.raises(RowsNotStaged, match=r"2 events were counted as rejected.* holds 1 rows"):
        commit_run(_info(tmp_path, "run-2"), counted, staged, [])
    assert _snapshot(tmp_path) == published
    assert not (tmp_path / "runs/run-2" / layout.MANIFEST).exists()


def test_rejections_counted_without_a_rejected_file_publish_nothing(tmp_path: Path) -> None:
    payments_only = _run(tmp_path, "run-1", _payments("Riffa"), _rejected("amount"))[:1]
    with pytest.raises(RowsNotStaged, match=r"1 events were counted as rejected.* holds 0 rows"):
        commit_run(_info(tmp_path, "run-1"), ONE_REJECTION, payments_only, [])
    assert not Path(payments_only[0].final).exists()


def test_a_rejected_file_holding_what_the_run_counted_is_published(tmp_path: Path) -> None:
    staged = _run(tmp_path, "run-1", _payments("Riffa"), _rejected("amount is negative"))
    manifest = commit_run(_info(tmp_path, "run-1"), ONE_REJECTION, staged, [])
    assert manifest["counts"]["rejected"] == 1
    assert Path(layout.rejected_path(str(tmp_path), INPUT_KEY)).is_file()


def test_a_retried_commit_counts_the_rejected_file_an_earlier_attempt_moved(
    tmp_path: Path,
) -> None:
    staged = _run(tmp_path, "run-1", _payments("Riffa"), _rejected("amount is negative"))
    Path(staged[1].final).parent.mkdir(parents=True)
    Path(staged[1].staged).rename(staged[1].final)  # the first attempt died after this move
    manifest = commit_run(_info(tmp_path, "run-1"), ONE_REJECTION, staged, [])
    assert manifest["counts"]["rejected"] == 1
    assert Path(staged[0].final).is_file()


def _rejected_files(root: Path, run_id: str, count: int) -> list[StagedFile]:
    """`count` rejected files of the input, one row each."""
    return [
        _stage(root, run_id, layout.rejected_path(str(root), INPUT_KEY, n), _rejected("amount"))
        for n in range(count)
    ]


def _rejections(count: int) -> dict[str, int]:
    return {st.rejected_key("kiosk", "INVALID_AMOUNT"): count}


def test_the_rejections_counted_are_checked_against_every_rejected_file(tmp_path: Path) -> None:
    staged = _rejected_files(tmp_path, "run-1", 3)
    manifest = commit_run(_info(tmp_path, "run-1"), _rejections(3), staged, [])
    assert manifest["counts"]["rejected"] == 3
    staged = _rejected_files(tmp_path, "run-2", 3)
    with pytest.raises(RowsNotStaged, match=r"4 events were counted as rejected.* holds 3 rows"):
        commit_run(_info(tmp_path, "run-2"), _rejections(4), staged, [])


def test_a_rerun_with_fewer_rejected_files_removes_the_earlier_runs_extra_ones(
    tmp_path: Path,
) -> None:
    commit_run(_info(tmp_path, "run-1"), _rejections(3), _rejected_files(tmp_path, "run-1", 3), [])
    manifest = commit_run(
        _info(tmp_path, "run-2"), _rejections(1), _rejected_files(tmp_path, "run-2", 1), []
    )
    folder = tmp_path / layout.REJECTED
    assert sorted(p.name for p in folder.iterdir()) == [f"part-{INPUT_KEY}-00000.parquet"]
    assert manifest["files_removed"] == [
        layout.rejected_path(str(tmp_path), INPUT_KEY, n) for n in (1, 2)
    ]


def test_a_run_leaves_the_rejected_files_of_other_inputs_alone(tmp_path: Path) -> None:
    other = layout.rejected_path(str(tmp_path), "00000000000000bb", 1)
    _stage(tmp_path, "run-0", other, _rejected("amount"))
    Path(other).parent.mkdir(parents=True)
    Path(layout.staged(str(tmp_path), "run-0", other)).rename(other)
    commit_run(_info(tmp_path, "run-1"), {}, [], [])
    assert Path(other).is_file()


def test_a_retried_commit_keeps_the_rejected_files_an_earlier_attempt_moved(
    tmp_path: Path,
) -> None:
    staged = _rejected_files(tmp_path, "run-1", 2)
    Path(staged[0].final).parent.mkdir(parents=True)
    Path(staged[0].staged).rename(staged[0].final)  # the first attempt died after this move
    manifest = commit_run(_info(tmp_path, "run-1"), _rejections(2), staged, [])
    assert manifest["counts"]["rejected"] == 2
    assert manifest["files_removed"] == []
    assert all(Path(s.final).is_file() for s in staged)
