"""The core ingestion transform in a real Beam pipeline (FnApiRunner, no mocks)."""

from __future__ import annotations

from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.samples import BATCH_RUNNER, KIOSK_EVENT, MOBILE_EVENT, PORTAL_EVENT, TEST_KEY, run_of
from transforms.core.rawblock import RawBlock
from transforms.ingest import IngestEvents, MergeStats

RUN_ID = "test-run"
INGESTED = 1_700_000_000_000_000
RUN = run_of(RUN_ID, ingested_micros=INGESTED)

BLOCKS = [
    RawBlock("landing/a.jsonl", [PORTAL_EVENT, b"{not json", MOBILE_EVENT], line_numbers=[1, 2, 3]),
    RawBlock("landing/b.jsonl", [KIOSK_EVENT, b"[1, 2]"], line_numbers=[1, 2], blank_lines=1),
]


def _column(tables: Iterable[pa.Table], name: str) -> list[object]:
    return [value for table in tables for value in table.column(name).to_pylist()]


def test_core_transform_accepts_valid_events_of_every_channel() -> None:
    with TestPipeline(runner=BATCH_RUNNER) as p:
        result = p | beam.Create(BLOCKS) | IngestEvents(TEST_KEY, RUN)
        ids = result.accepted | beam.FlatMap(
            lambda keyed: keyed[1].table().column("event_id").to_pylist()
        )
        assert_that(
            ids,
            equal_to(
                [
                    "portal:PTL-2017-000123456",
                    "mobile_app:3f0c2a9e-6c1b-4d3e-9a51-0b7d5f9e2c11",
                    "kiosk:KSK-017:40213",
                ]
            ),
        )


def test_core_transform_keys_accepted_rows_by_their_hive_partition() -> None:
    with TestPipeline(runner=BATCH_RUNNER) as p:
        result = p | beam.Create(BLOCKS) | IngestEvents(TEST_KEY, RUN)
        keys = result.accepted | beam.Map(lambda keyed: (keyed[0], keyed[1].num_rows))
        assert_that(
            keys,
            equal_to(
                [
                    (("portal", "2017-06-30"), 1),
                    (("mobile_app", "2017-06-30"), 1),
                    (("kiosk", "2017-06-30"), 1),
                ]
            ),
        )


def test_core_transform_rejects_bad_lines_with_code_and_origin() -> None:
    with TestPipeline(runner=BATCH_RUNNER) as p:
        result = p | beam.Create(BLOCKS) | IngestEvents(TEST_KEY, RUN)
        rejected = (
            result.rejected
            | beam.Map(lambda block: block.table())
            | beam.FlatMap(
                lambda t: zip(
                    t.column("error_code").to_pylist(),
                    t.column("source_file").to_pylist(),
                    t.column("source_line").to_pylist(),
                    strict=True,
                )
            )
        )
        assert_that(
            rejected,
            equal_to(
                [
                    ("MALFORMED_JSON", "landing/a.jsonl", 2),
                    ("NOT_AN_OBJECT", "landing/b.jsonl", 2),
                ]
            ),
        )


def test_core_transform_stats_account_for_every_event() -> None:
    with TestPipeline(runner=BATCH_RUNNER) as p:
        result = p | beam.Create(BLOCKS) | IngestEvents(TEST_KEY, RUN)
        merged = result.stats | MergeStats()
        reads = merged | beam.Map(
            lambda s: (
                sum(v for k, v in s.items() if k.startswith("read:")),
                s.get("blank_lines_skipped", 0),
            )
        )
        assert_that(reads, equal_to([(5, 1)]))
