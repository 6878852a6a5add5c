"""transforms.dedup.table: one row per event_id; redeliveries counted, conflicts set apart."""

from __future__ import annotations

import itertools
from datetime import date

import orjson
import pyarrow as pa
import pytest

from schemas.arrow import payment_schema, rejected_schema
from schemas.catalogue import load_catalogue
from schemas.enums import RejectCode
from tests.samples import KIOSK_EVENT as KIOSK
from tests.samples import MOBILE_EVENT as MOBILE_APP
from tests.samples import PORTAL_EVENT as PORTAL
from tests.samples import run_of
from transforms.core import stats as st
from transforms.core.blocks import RunContext, process_block, rejected_table
from transforms.core.normalise import Normaliser
from transforms.core.privacy import Pseudonymiser
from transforms.core.rawblock import RawBlock
from transforms.dedup.recent import (
    RecentIds,
    against_recent,
    content_digests,
    id_hashes,
    recent_schema,
)
from transforms.dedup.table import (
    INDEX_COLUMNS,
    Deduplicated,
    against_existing,
    conflict_rejections,
    cross_partition_losers,
    deduplicate,
    differing,
    drop_losers,
    rejected_conflicts,
    split_by_partition,
)

KEY = b"test-pseudonym-key-0123456789abcdef"
CPR = "850101234"
RUN_ID = "run-test"
INGESTED_MICROS = 1_700_000_000_000_000

PORTAL_OTHER_AMOUNT = PORTAL.replace(b"12500", b"13500")
PORTAL_REFUNDED = PORTAL.replace(b'"PAID"', b'"REFUNDED"')
PORTAL_NEXT_DAY = PORTAL.replace(b"000123456", b"000123457").replace(
    b"2017-06-30T21:15:03", b"2017-07-01T02:00:00"
)
PORTAL_ID = "portal:PTL-2017-000123456"
MOBILE_ID = "mobile_app:3f0c2a9e-6c1b-4d3e-9a51-0b7d5f9e2c11"


def _kiosk(seq: int, local_time: str = "2017-06-30 21:15:03") -> bytes:
    return KIOSK.replace(b"40213", str(seq).encode()).replace(
        b"2017-06-30 21:15:03", local_time.encode()
    )


CTX = RunContext(Normaliser(Pseudonymiser(KEY), load_catalogue()), RUN_ID, INGESTED_MICROS)


def _table(*rows: tuple[bytes, str, int]) -> pa.Table:
    """Accepted rows of (payload, source file, source line), in the order given."""
    tables = []
    for payload, source, line in rows:
        result = process_block(RawBlock(source, [payload], line_numbers=[line]), CTX)
        assert result.accepted.num_rows == 1, result.rejected.to_pylist()
        tables.append(result.accepted)
    return pa.concat_tables(tables)


def _origins(table: pa.Table) -> list[tuple[str, int]]:
    return list(
        zip(
            table.column("source_file").to_pylist(),
            table.column("source_line").to_pylist(),
            strict=True,
        )
    )


def _written(*payloads: bytes) -> pa.Table:
    """Rows an earlier run wrote, as against_existing reads them back."""
    return _table(*((payload, "earlier.jsonl", i) for i, payload in enumerate(payloads, 1)))


# The same event in three places, one of them with other content; the winner is a.jsonl:9.
CONFLICTING = [
    (PORTAL, "b.jsonl", 1),
    (PORTAL_OTHER_AMOUNT, "a.jsonl", 10),
    (PORTAL, "a.jsonl", 9),
    (MOBILE_APP, "a.jsonl", 2),
]


def test_unique_events_are_all_kept() -> None:
    table = _table((PORTAL, "a", 1), (MOBILE_APP, "a", 2), (KIOSK, "a", 3))
    result = deduplicate(table)
    assert result.winners.num_rows == 3
    assert result.conflicts.num_rows == 0
    assert dict(result.stats) == {}


def test_exact_redelivery_is_counted_as_duplicate_in_input() -> None:
    result = deduplicate(_table((PORTAL, "a.jsonl", 1), (PORTAL, "b.jsonl", 7)))
    assert result.winners.column("event_id").to_pylist() == [PORTAL_ID]
    assert result.conflicts.num_rows == 0
    assert dict(result.stats) == {st.duplicate_key("portal", "in_input"): 1}


def test_duplicates_are_counted_per_channel() -> None:
    table = _table(
        (PORTAL, "a", 1), (PORTAL, "a", 2), (PORTAL, "a", 3), (KIOSK, "a", 4), (KIOSK, "a", 5)
    )
    assert dict(deduplicate(table).stats) == {
        "duplicates:portal:in_input": 2,
        "duplicates:kiosk:in_input": 1,
    }


def test_same_id_with_other_content_is_a_conflict() -> None:
    result = deduplicate(_table((PORTAL, "a.jsonl", 1), (PORTAL_OTHER_AMOUNT, "a.jsonl", 2)))
    assert result.winners.num_rows == 1
    assert result.conflicts.num_rows == 1
    assert _origins(result.conflicts) == [("a.jsonl", 2)]
    assert dict(result.stats) == {}


def test_conflict_says_what_differs_and_which_row_was_kept() -> None:
    result = deduplicate(_table((PORTAL, "a.jsonl", 1), (PORTAL_REFUNDED, "a.jsonl", 2)))
    assert result.conflict_detail == ["differs in status from the row kept (a.jsonl:1)"]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(CONFLICTING)))))
def test_winner_is_first_in_source_order_whatever_the_input_order(
    order: tuple[int, ...],
) -> None:
    table = _table(*(CONFLICTING[i] for i in order))
    result = deduplicate(table)
    ids = result.winners.column("event_id").to_pylist()
    winners = dict(zip(ids, _origins(result.winners), strict=True))
    assert winners[PORTAL_ID] == ("a.jsonl", 9)
    assert _origins(result.conflicts) == [("a.jsonl", 10)]
    assert dict(result.stats) == {"duplicates:portal:in_input": 1}


def test_source_lines_are_ordered_as_numbers() -> None:
    result = deduplicate(_table((PORTAL_OTHER_AMOUNT, "a.jsonl", 10), (PORTAL, "a.jsonl", 9)))
    assert _origins(result.winners) == [("a.jsonl", 9)]


def test_streaming_rows_are_ordered_by_message_id() -> None:
    blocks = [
        RawBlock("sub", [PORTAL_OTHER_AMOUNT], message_ids=["m-2"]),
        RawBlock("sub", [PORTAL], message_ids=["m-1"]),
    ]
    table = pa.concat_tables([process_block(b, CTX).accepted for b in blocks])
    result = deduplicate(table)
    assert result.winners.column("source_message_id").to_pylist() == ["m-1"]
    assert result.conflicts.column("source_message_id").to_pylist() == ["m-2"]


def test_deduplicate_keeps_the_payment_schema() -> None:
    result = deduplicate(_table(*CONFLICTING))
    assert result.winners.schema.equals(payment_schema())
    assert result.conflicts.schema.equals(payment_schema())


def test_deduplicate_of_an_empty_table_is_empty() -> None:
    result = deduplicate(payment_schema().empty_table())
    assert result.winners.num_rows == result.conflicts.num_rows == 0


def test_row_already_written_with_the_same_content_is_a_duplicate_in_output() -> None:
    table = _table((PORTAL, "a", 1))
    result = against_existing(table, _written(PORTAL))
    assert result.winners.num_rows == 0
    assert result.conflicts.num_rows == 0
    assert dict(result.stats) == {st.duplicate_key("portal", "in_output"): 1}


def test_row_already_written_with_other_content_is_a_conflict() -> None:
    table = _table((PORTAL_OTHER_AMOUNT, "a", 1))
    result = against_existing(table, _written(PORTAL))
    assert result.winners.num_rows == 0
    assert result.conflicts.column("event_id").to_pylist() == [PORTAL_ID]
    assert result.conflict_detail == ["differs in amount from the row already written"]
    assert dict(result.stats) == {}


def test_rows_not_written_before_are_kept() -> None:
    table = _table((PORTAL, "a", 1), (MOBILE_APP, "a", 2), (KIOSK, "a", 3))
    result = against_existing(table, _written(_kiosk(99_999)))
    assert result.winners.num_rows == 3
    assert result.conflicts.num_rows == 0
    assert dict(result.stats) == {}


def test_against_nothing_existing_keeps_everything() -> None:
    table = _table((PORTAL, "a", 1))
    result = against_existing(table, payment_schema().empty_table())
    assert result.winners.num_rows == 1
    assert result.conflicts.num_rows == 0


def test_new_rows_beside_a_row_already_written_are_kept() -> None:
    table = _table((PORTAL, "a", 1), (MOBILE_APP, "a", 2))
    result = against_existing(table, _written(PORTAL))
    assert result.winners.column("event_id").to_pylist() == [
        "mobile_app:3f0c2a9e-6c1b-4d3e-9a51-0b7d5f9e2c11"
    ]
    assert result.conflicts.num_rows == 0
    assert dict(result.stats) == {st.duplicate_key("portal", "in_output"): 1}


def test_new_rows_beside_a_conflicting_row_are_kept() -> None:
    table = _table((PORTAL_OTHER_AMOUNT, "a", 1), (MOBILE_APP, "a", 2), (KIOSK, "a", 3))
    result = against_existing(table, _written(PORTAL))
    assert result.winners.num_rows == 2
    assert result.conflicts.column("event_id").to_pylist() == [PORTAL_ID]
    assert result.conflict_detail == ["differs in amount from the row already written"]


def test_split_by_partition_keys_are_channel_and_iso_date_strings() -> None:
    table = _table(
        (PORTAL, "a", 1),
        (PORTAL_NEXT_DAY, "a", 2),
        (MOBILE_APP, "a", 3),
        (_kiosk(1), "a", 4),
        (_kiosk(2, "2017-07-01 02:00:00"), "a", 5),
    )
    keys = sorted(key for key, _ in split_by_partition(table))
    assert keys == [
        ("kiosk", "2017-06-30"),
        ("kiosk", "2017-07-01"),
        ("mobile_app", "2017-06-30"),
        ("portal", "2017-06-30"),
        ("portal", "2017-07-01"),
    ]
    assert all(type(c) is str and type(d) is str for c, d in keys)


def test_split_by_partition_covers_every_row_in_its_partition() -> None:
    table = _table(
        *((_kiosk(s, f"2017-07-0{1 + s % 3} 0{s % 4}:30:00"), "a", s) for s in range(12))
    )
    seen = 0
    for (channel, day), part in split_by_partition(table):
        seen += part.num_rows
        assert set(part.column("channel").to_pylist()) == {channel}
        assert set(part.column("event_date").to_pylist()) == {date.fromisoformat(day)}
    assert seen == table.num_rows


def test_split_by_partition_of_an_empty_table_yields_nothing() -> None:
    assert list(split_by_partition(payment_schema().empty_table())) == []


def test_conflict_rejections_are_duplicate_conflicts() -> None:
    result = deduplicate(_table(*CONFLICTING))
    (rejected,) = list(conflict_rejections(result))
    assert rejected.rejection.code is RejectCode.DUPLICATE_CONFLICT
    assert rejected.rejection.step == "deduplicate"
    assert rejected.rejection.channel == "portal"
    assert rejected.rejection.event_id == PORTAL_ID
    assert (rejected.source_file, rejected.source_line) == ("a.jsonl", 10)


def test_conflict_rejection_reason_names_the_differing_column_and_the_row_kept() -> None:
    result = deduplicate(_table(*CONFLICTING))
    (rejected,) = list(conflict_rejections(result))
    assert "amount" in rejected.rejection.reason
    assert "a.jsonl:9" in rejected.rejection.reason


def test_conflict_rejection_payload_is_the_row_without_the_cpr() -> None:
    result = deduplicate(_table(*CONFLICTING))
    (rejected,) = list(conflict_rejections(result))
    row = orjson.loads(rejected.payload)
    assert row["event_id"] == PORTAL_ID
    assert CPR not in rejected.payload.decode()


def test_conflict_rejections_of_existing_rows_are_duplicate_conflicts() -> None:
    table = _table((PORTAL_OTHER_AMOUNT, "a", 1))
    result = against_existing(table, _written(PORTAL))
    codes = [r.rejection.code for r in conflict_rejections(result)]
    assert codes == [RejectCode.DUPLICATE_CONFLICT]


def test_conflict_rejections_fit_the_rejected_table() -> None:
    result = deduplicate(_table(*CONFLICTING))
    table = rejected_table(conflict_rejections(result), RUN_ID, INGESTED_MICROS)
    assert table.schema.equals(rejected_schema())
    assert table.column("error_code").to_pylist() == ["DUPLICATE_CONFLICT"]
    assert table.column("event_id").to_pylist() == [PORTAL_ID]


def test_a_conflict_is_booked_with_the_runs_lineage_and_counted_per_channel() -> None:
    result = deduplicate(_table(*CONFLICTING))
    table, counts = rejected_conflicts(result, run_of(RUN_ID, ingested_micros=INGESTED_MICROS))
    assert table.column("run_id").to_pylist() == [RUN_ID]
    assert table.column("ingested_at").cast(pa.int64()).to_pylist() == [INGESTED_MICROS]
    assert counts == {st.rejected_key("portal", "DUPLICATE_CONFLICT"): 1}


def test_no_conflicts_give_no_rejections() -> None:
    assert list(conflict_rejections(deduplicate(_table((PORTAL, "a", 1))))) == []


# The same kiosk transaction resent with its clock moved past Bahrain midnight: the two rows
# fall in different Hive partitions, so only the event index can see they are one event.
KIOSK_BEFORE_MIDNIGHT = _kiosk(7, "2017-06-30 23:59:59")
KIOSK_AFTER_MIDNIGHT = _kiosk(7, "2017-07-01 00:00:01")


def test_an_event_resent_into_another_day_is_found_by_the_index() -> None:
    table = _table((KIOSK_BEFORE_MIDNIGHT, "a", 1), (KIOSK_AFTER_MIDNIGHT, "b", 1))
    losers = cross_partition_losers(table.select(INDEX_COLUMNS))
    assert losers.column("source_file").to_pylist() == ["b"]
    assert losers.column("event_date").to_pylist() == [date(2017, 7, 1)]


def test_an_exact_redelivery_in_the_same_partition_is_left_to_the_partition() -> None:
    table = _table((KIOSK, "a", 1), (KIOSK, "b", 1))
    assert cross_partition_losers(table.select(INDEX_COLUMNS)).num_rows == 0


def test_dropping_a_moved_event_rejects_it_as_a_conflict() -> None:
    table = _table((KIOSK_BEFORE_MIDNIGHT, "a", 1), (KIOSK_AFTER_MIDNIGHT, "b", 1))
    losers = cross_partition_losers(table.select(INDEX_COLUMNS))
    later_day = table.filter(pa.array([False, True]))
    result = drop_losers(later_day, losers)
    assert result.winners.num_rows == 0
    assert result.conflicts.column("source_file").to_pylist() == ["b"]


def test_dropping_losers_keeps_every_other_row() -> None:
    table = _table((KIOSK_BEFORE_MIDNIGHT, "a", 1), (KIOSK_AFTER_MIDNIGHT, "b", 1))
    losers = cross_partition_losers(table.select(INDEX_COLUMNS))
    others = _table((KIOSK_AFTER_MIDNIGHT, "a", 5), (_kiosk(8, "2017-07-01 00:00:01"), "b", 2))
    result = drop_losers(others, losers)
    assert result.winners.num_rows == 2
    assert result.conflicts.num_rows == 0


def _pulled(*payloads: bytes, first_message: int = 1) -> pa.Table:
    """Accepted rows of raw events pulled from Pub/Sub, one message each."""
    ids = [str(n) for n in range(first_message, first_message + len(payloads))]
    result = process_block(RawBlock("sub", list(payloads), message_ids=ids), CTX)
    assert result.accepted.num_rows == len(payloads), result.rejected.to_pylist()
    return result.accepted


def _accept(rows: pa.Table, recent: RecentIds, now: int) -> tuple[Deduplicated, pa.Table]:
    """One streaming block: de-duplicated against `recent`, which then remembers it."""
    result, chunk = against_recent(rows, recent, now)
    recent.add(chunk)
    return result, chunk


def test_streaming_remembers_each_new_event_in_the_chunk_to_store() -> None:
    recent = RecentIds()
    _, chunk = _accept(_pulled(PORTAL, MOBILE_APP), recent, 1000)
    assert chunk["event_id"].to_pylist() == [PORTAL_ID, MOBILE_ID]
    assert chunk["seen_at"].to_pylist() == [1000, 1000]
    assert chunk["first_message_id"].to_pylist() == ["1", "2"]
    assert len(recent) == 2


def test_streaming_redelivery_of_a_recent_event_is_a_duplicate_in_input() -> None:
    recent = RecentIds()
    _accept(_pulled(PORTAL), recent, 1000)
    result, chunk = _accept(_pulled(PORTAL, first_message=7), recent, 1010)
    assert result.winners.num_rows == 0
    assert chunk.num_rows == 0
    assert result.stats == {st.duplicate_key("portal", "in_input"): 1}


def test_streaming_recent_event_with_other_content_is_a_conflict_naming_the_first_message() -> None:
    recent = RecentIds()
    _accept(_pulled(PORTAL), recent, 1000)
    result, _ = _accept(_pulled(PORTAL_OTHER_AMOUNT, first_message=7), recent, 1010)
    assert result.winners.num_rows == 0
    assert result.conflicts["source_message_id"].to_pylist() == ["7"]
    assert result.conflict_detail == ["differs from the first delivery (message 1)"]


def test_streaming_forgets_events_accepted_before_the_horizon() -> None:
    recent = RecentIds()
    _accept(_pulled(PORTAL), recent, 1000)
    assert recent.expire(cutoff=1001) == 1
    result, _ = _accept(_pulled(PORTAL, first_message=7), recent, 1061)
    assert result.winners["source_message_id"].to_pylist() == ["7"]


def test_streaming_keeps_events_accepted_within_the_horizon() -> None:
    recent = RecentIds()
    _accept(_pulled(PORTAL), recent, 1000)
    _accept(_pulled(MOBILE_APP, first_message=2), recent, 1030)
    assert recent.expire(cutoff=1001) == 1
    assert len(recent) == 1


def test_streaming_duplicates_within_one_block_keep_the_first_message() -> None:
    recent = RecentIds()
    result, chunk = _accept(_pulled(MOBILE_APP, MOBILE_APP, first_message=3), recent, 1000)
    assert result.winners["source_message_id"].to_pylist() == ["3"]
    assert result.stats == {st.duplicate_key("mobile_app", "in_input"): 1}
    assert chunk.num_rows == 1


def test_streaming_memory_rebuilt_from_stored_chunks_finds_the_same_events() -> None:
    stored = [_accept(_pulled(PORTAL), RecentIds(), 1000)[1]]
    recent = RecentIds.of(stored, cutoff=990)
    result, _ = _accept(_pulled(PORTAL, first_message=7), recent, 1010)
    assert result.stats == {st.duplicate_key("portal", "in_input"): 1}


def test_streaming_memory_rebuilt_from_stored_chunks_leaves_out_what_expired() -> None:
    stored = [_accept(_pulled(PORTAL), RecentIds(), 1000)[1]]
    assert len(RecentIds.of(stored, cutoff=1001)) == 0


def test_streaming_compacted_memory_keeps_every_event_and_its_time() -> None:
    recent = RecentIds()
    _accept(_pulled(PORTAL), recent, 1000)
    _accept(_pulled(MOBILE_APP, first_message=2), recent, 1030)
    table = recent.table()
    assert table["event_id"].to_pylist() == [PORTAL_ID, MOBILE_ID]
    assert table["seen_at"].to_pylist() == [1000, 1030]
    rebuilt = RecentIds.of([table], cutoff=1001)
    assert len(rebuilt) == 1
    assert rebuilt.expire(cutoff=1031) == 1


def test_content_digests_are_equal_only_for_equal_content() -> None:
    table = _pulled(PORTAL, PORTAL, PORTAL_OTHER_AMOUNT, PORTAL_REFUNDED)
    digests = content_digests(table).to_pylist()
    assert digests[0] == digests[1]
    assert len({digests[0], digests[2], digests[3]}) == 3


def test_streaming_an_id_hash_shared_with_another_id_is_not_a_duplicate() -> None:
    rows = _pulled(PORTAL)
    colliding = pa.table(
        {
            "event_id": ["portal:PTL-2017-999999999"],
            "id_hash": id_hashes(rows),
            "content": content_digests(rows),
            "first_message_id": ["1"],
            "seen_at": [1000],
        },
        schema=recent_schema(),
    )
    recent = RecentIds.of([colliding], cutoff=0)
    result, _ = _accept(_pulled(PORTAL, first_message=2), recent, 1010)
    assert result.winners["event_id"].to_pylist() == [PORTAL_ID]


def test_streaming_a_block_is_remembered_only_once_its_chunk_is_added() -> None:
    recent = RecentIds()
    _, chunk = against_recent(_pulled(PORTAL), recent, 1000)
    assert len(recent) == 0
    recent.add(chunk)
    assert len(recent) == 1


def test_streaming_a_compacted_span_expires_a_slice_at_a_time() -> None:
    recent = RecentIds(slice_seconds=10)
    _accept(_pulled(PORTAL), recent, 1000)
    _accept(_pulled(MOBILE_APP, first_message=2), recent, 1030)
    rebuilt = RecentIds.of([recent.table()], cutoff=0, slice_seconds=10)
    assert rebuilt.expire(cutoff=1001) == 1
    assert len(rebuilt) == 1


def test_differing_names_a_column_only_for_the_rows_where_it_differs() -> None:
    rows = _table((PORTAL, "a.jsonl", 1), (MOBILE_APP, "a.jsonl", 2), (_kiosk(1), "a.jsonl", 3))
    others = _table(
        (PORTAL, "b.jsonl", 1),
        (MOBILE_APP, "b.jsonl", 2),
        (_kiosk(1).replace(b"25", b"26"), "b", 3),
    )
    assert differing(rows, rows) == [[], [], []]
    assert differing(rows, others) == [[], [], ["amount"]]
