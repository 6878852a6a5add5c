"""A compressed input cut off mid-transfer, or corrupt, is never taken as complete: the batch
job quarantines the whole file (none of its events committed, the file listed in the manifest
with its fault), commits the other files, and exits 7; the file delivered again completes the
night. Locally end to end, and on a real Cloud Storage emulator (slow)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from pipelines import batch
from schemas import layout
from tests.emulators import gcs_emulator, upload_tree, use_gcs_emulator
from tests.pipelines.helpers import (
    data_files,
    make_landing,
    manifests,
    payments,
    payments_on_gcs,
    run_batch,
)
from tests.samples import TEST_KEY
from transforms.batch import read

NIGHT = {
    "start": date(2017, 6, 24),
    "days": 1,
    "scale": 0.2,
    "invalid_rate": 0.0,
    "duplicate_rate": 0.0,
    "conflict_rate": 0.0,
    "late_rate": 0.0,
}
DAY = "2017-06-24"


def cut_in_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def flip_a_middle_byte(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0x01
    return bytes(damaged)


DAMAGES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated": (cut_in_half, "TRUNCATED"),
    "flipped byte (CRC-32 check)": (flip_a_middle_byte, "CORRUPT"),
}


def gzipped_night(root: Path) -> Path:
    """A generated night whose portal file is delivered gzipped; returns its landing folder."""
    make_landing(root, **NIGHT)
    day = root / "landing" / DAY
    plain = day / "portal.jsonl"
    (day / "portal.jsonl.gz").write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    return day


def events_in(*paths: Path) -> int:
    """Non-blank lines of plain or gzipped files: the events a reader of them would count."""
    total = 0
    for path in paths:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        total += sum(1 for line in data.splitlines() if line.strip())
    return total


def committed(out: Path, manifest: dict[str, Any]) -> bool:
    return (out / "runs" / manifest["run_id"] / layout.SUCCESS_MARKER).exists()


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.usefixtures("key_env")
def test_a_damaged_gzip_input_is_quarantined_while_the_other_files_commit(
    tmp_path: Path, damage: str
) -> None:
    spoil, fault = DAMAGES[damage]
    day = gzipped_night(tmp_path)
    gz = day / "portal.jsonl.gz"
    gz.write_bytes(spoil(gz.read_bytes()))
    out = tmp_path / "out"

    manifest = run_batch(str(day / "*.jsonl*"), out)

    [incomplete] = manifest["incomplete_inputs"]
    assert (incomplete["path"], incomplete["fault"]) == (str(gz), fault)
    assert incomplete["bytes"] == gz.stat().st_size
    # None of the file's lines is counted as read, so what was read still reconciles.
    others = events_in(day / "kiosk.jsonl", day / "mobile_app.jsonl")
    assert manifest["counts"]["read"] == others
    assert manifest["by_channel"]["portal"]["read"] == 0
    assert manifest["reconciles"]
    assert committed(out, manifest)
    table = payments(out)
    assert table.num_rows == manifest["counts"]["accepted"] == others
    assert set(table["channel"].to_pylist()) == {"kiosk", "mobile_app"}
    assert str(gz) not in set(table["source_file"].to_pylist())


@pytest.mark.usefixtures("key_env")
def test_the_batch_command_exits_7_naming_the_file_and_its_fault(tmp_path: Path) -> None:
    day = gzipped_night(tmp_path)
    gz = day / "portal.jsonl.gz"
    gz.write_bytes(cut_in_half(gz.read_bytes()))
    command = [sys.executable, "-m", "pipelines.batch", "--input", str(day / "*.jsonl*")]
    command += ["--output", str(tmp_path / "out"), "--direct_num_workers", "1"]

    result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())

    assert result.returncode == batch.EXIT_INCOMPLETE_INPUT == 7, result.stderr[-3000:]
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: input not read: {gz}: TRUNCATED: the compressed stream ends")
    assert "incomplete inputs, not read" in result.stdout


@pytest.mark.usefixtures("key_env")
def test_the_file_delivered_again_completes_the_night_without_a_second_row(
    tmp_path: Path,
) -> None:
    day = gzipped_night(tmp_path)
    gz = day / "portal.jsonl.gz"
    whole = gz.read_bytes()
    gz.write_bytes(cut_in_half(whole))
    out = tmp_path / "out"
    first = run_batch(str(day / "*.jsonl*"), out)

    gz.write_bytes(whole)  # delivered again, whole
    again = run_batch(str(day / "*.jsonl*"), out)

    assert again["incomplete_inputs"] == []
    assert again["reconciles"]
    assert again["duplicates_by_kind"] == {"in_output": first["counts"]["accepted"]}
    table = payments(out)
    assert table.num_rows == events_in(*day.glob("*.jsonl*"))
    assert pc.count_distinct(table["event_id"]).as_py() == table.num_rows


@pytest.mark.usefixtures("key_env")
def test_a_file_that_fails_only_when_read_for_its_events_fails_the_run_committing_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if it were rewritten, cut short, between its check and its reading: some of its
    events may be downstream already, so nothing of the run may be published."""
    day = gzipped_night(tmp_path)
    out = tmp_path / "out"
    run_batch(str(day / "*.jsonl*"), out)  # an earlier night, committed
    before_files, before_rows = data_files(out), payments(out).sort_by("event_id")
    gz = day / "portal.jsonl.gz"
    later = tmp_path / "later"
    later.mkdir()
    (later / gz.name).write_bytes(cut_in_half(gz.read_bytes()))
    monkeypatch.setattr(read, "check_complete", lambda _path: None)

    with pytest.raises(Exception, match="after it had passed its completeness check"):
        run_batch(str(later / "*.jsonl*"), out)

    assert len(manifests(out)) == 1
    assert data_files(out) == before_files
    assert payments(out).sort_by("event_id").equals(before_rows)


# --- on Cloud Storage ------------------------------------------------------------------------


@pytest.mark.slow
def test_damaged_and_fake_gz_objects_on_gcs_are_quarantined_and_the_rest_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On gs:// the command line cannot vouch for a `.gz` (pipelines/cli.py checks local
    files only), so a `.gz` that is not gzip reaches the reader, which quarantines it too."""
    day = gzipped_night(tmp_path)
    whole = (day / "portal.jsonl.gz").read_bytes()
    (day / "portal.jsonl.gz").write_bytes(cut_in_half(whole))
    (day / "mobile_app.jsonl.gz").write_bytes((day / "mobile_app.jsonl").read_bytes())  # not gzip
    (day / "mobile_app.jsonl").unlink()
    (day / "kiosk.jsonl.gz").write_bytes(gzip.compress((day / "kiosk.jsonl").read_bytes()))
    kiosk_events = events_in(day / "kiosk.jsonl")
    (day / "kiosk.jsonl").unlink()
    with gcs_emulator("payments-incomplete") as emulator:
        use_gcs_emulator(emulator, monkeypatch)
        monkeypatch.setenv("PAYMENTS_PSEUDONYM_KEY", TEST_KEY.decode())
        root = emulator.url(uuid.uuid4().hex[:12])
        upload_tree(emulator.client(), day, layout.join(root, "landing", DAY))
        out = layout.join(root, "out")

        inputs = layout.join(root, "landing", DAY, "*.jsonl*")
        manifest = batch.run(["--input", inputs, "--output", out, "--direct_num_workers", "1"])

        faults = {i["path"].rsplit("/", 1)[-1]: i["fault"] for i in manifest["incomplete_inputs"]}
        assert faults == {"mobile_app.jsonl.gz": "NOT_COMPRESSED", "portal.jsonl.gz": "TRUNCATED"}
        assert manifest["reconciles"]
        assert manifest["counts"]["read"] == manifest["counts"]["accepted"] == kiosk_events
        bucket = emulator.client().bucket(emulator.bucket)
        prefix = out.removeprefix(f"gs://{emulator.bucket}/")
        marker = f"{prefix}/runs/{manifest['run_id']}/{layout.SUCCESS_MARKER}"
        assert bucket.blob(marker).exists()
        table = payments_on_gcs(emulator.arrow_filesystem(), out)
        assert set(table["channel"].to_pylist()) == {"kiosk"}
        assert table.num_rows == kiosk_events
