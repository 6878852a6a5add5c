"""The streaming progress line says what its figures cover: a balanced `processed:` line where
each read is counted with its outcome (deferred acks, the local runner), and, where a read is
counted when pulled and its row when its file is committed (Dataflow), a line saying so."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from transforms.streaming.sinks import progress_line, write_stats_pane

PANE = {"read:portal": 439, "accepted:portal": 0, "rejected:portal:MALFORMED_JSON": 0}
LATER = {"read:portal": 2621, "accepted:portal": 423, "rejected:portal:MALFORMED_JSON": 16}


def test_a_pane_whose_reads_carry_their_outcomes_logs_a_processed_line() -> None:
    stats = {"read:kiosk": 5, "accepted:kiosk": 3, "rejected:kiosk:MALFORMED_JSON": 1}
    stats["duplicates:kiosk:in_run"] = 1
    assert progress_line(stats, True) == "processed: read 5, accepted 3, rejected 1, duplicates 1"


def test_a_pane_counted_apart_says_its_reads_are_since_the_last_line() -> None:
    assert progress_line(LATER, False).startswith(
        "since the last stats line: read 2621; in the files committed: accepted 423, rejected 16;"
    )


def test_a_pane_counted_apart_says_rows_are_counted_when_their_files_commit() -> None:
    line = progress_line(PANE, False)
    assert "a row is counted when its file is committed, often a line after its read" in line
    assert "the run's totals balance, one line need not" in line


def test_the_stats_writer_logs_the_line_of_its_counting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="transforms.streaming.sinks")
    list(write_stats_pane((None, [PANE]), str(tmp_path), "run-1"))
    list(write_stats_pane((None, [PANE]), str(tmp_path), "run-1", reads_with_outcomes=True))
    lines = [r.getMessage() for r in caplog.records]
    assert lines[-2:] == [progress_line(PANE, False), progress_line(PANE, True)]
