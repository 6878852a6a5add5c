"""The one run value: its id format, its clock, its output root."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from schemas.run import BATCH, RUN_ID_PATTERN, STREAMING, Run

NOW = datetime(2017, 7, 1, 0, 30, 5, 123_456, tzinfo=timezone.utc)


def test_a_started_run_is_named_by_its_start_time() -> None:
    run = Run.start(BATCH, "out", now=NOW)
    assert re.fullmatch(RUN_ID_PATTERN, run.run_id)
    assert run.run_id.startswith("20170701T003005Z-")


def test_run_ids_sort_in_start_order() -> None:
    earlier = Run.start(STREAMING, "out", now=NOW)
    later = Run.start(STREAMING, "out", now=NOW + timedelta(seconds=1))
    assert earlier.run_id < later.run_id


def test_two_runs_started_in_one_second_get_different_ids() -> None:
    assert Run.start(BATCH, "out", now=NOW).run_id != Run.start(BATCH, "out", now=NOW).run_id


def test_a_runs_rows_are_stamped_with_its_start_to_the_microsecond() -> None:
    run = Run.start(BATCH, "out", now=NOW)
    assert run.ingested_micros == 1_498_869_005_123_456


def test_the_manifest_time_of_a_run_is_to_the_second() -> None:
    assert Run.start(BATCH, "out", now=NOW).started_at_text == "2017-07-01T00:30:05+00:00"


def test_an_output_root_is_named_without_a_trailing_slash() -> None:
    assert Run.start(BATCH, "gs://lake/payments/", now=NOW).output_root == "gs://lake/payments"


def test_a_batch_run_keeps_its_inputs_as_listed() -> None:
    run = Run.start(BATCH, "out", "abc", [("in/a.jsonl", 10), ("in/b.jsonl", 20)], NOW)
    assert run.inputs == (("in/a.jsonl", 10), ("in/b.jsonl", 20))
    assert run.input_key == "abc"
