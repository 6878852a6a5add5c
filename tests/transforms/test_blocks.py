"""transforms.core.blocks.process_block: raw events -> accepted and rejected tables + stats."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from schemas.arrow import payment_schema, rejected_schema
from schemas.catalogue import load_catalogue
from tests.samples import MOBILE_EVENT as MOBILE_APP
from tests.samples import PORTAL_EVENT as PORTAL
from transforms.core import stats as st
from transforms.core.blocks import BlockResult, RunContext, process_block
from transforms.core.normalise import Normaliser
from transforms.core.privacy import Pseudonymiser
from transforms.core.rawblock import RawBlock

KEY = b"test-pseudonym-key-0123456789abcdef"
CPR = "850101234"
PAN = "4111111111111111"
RUN_ID = "run-test"
INGESTED_MICROS = 1_700_000_000_000_000
SOURCE = "landing/2017-07-01.jsonl"

KIOSK_FULL_PAN_UNKNOWN_SERVICE = (
    b'{"channel": "kiosk", "kiosk_id": "KSK-017", "seq": 40214, "site": "Isa Town",'
    b' "service": "NOT-IN-CATALOGUE", "amount": "25.000", "cpr": "850101234",'
    b' "local_time": "2017-07-01 02:00:00", "result": "OK", "card": "4111111111111111"}'
)
BAD_CPR_PORTAL = PORTAL.replace(b'"850101234"', b'"85010123"')
BAD_AMOUNT_KIOSK = KIOSK_FULL_PAN_UNKNOWN_SERVICE.replace(b'"25.000"', b'"25.0001"')
BAD_CURRENCY_MOBILE = MOBILE_APP.replace(b'"BHD"', b'"USD"')
MALFORMED_WITH_PAN = b'{"channel": "kiosk", "card": "4111 1111 1111 1111", "cpr": "850101234"'
UNKNOWN_CHANNEL = b'{"channel": "bank", "cpr": "850101234", "pan": "4111-1111-1111-1111"}'
NOT_AN_OBJECT = b"[850101234, 4111111111111111]"

# (payload, source line): good and bad events, with gaps where blank lines were skipped.
MIXED = [
    (PORTAL, 1),
    (MALFORMED_WITH_PAN, 2),
    (MOBILE_APP, 4),
    (BAD_CPR_PORTAL, 5),
    (KIOSK_FULL_PAN_UNKNOWN_SERVICE, 6),
    (UNKNOWN_CHANNEL, 9),
    (BAD_AMOUNT_KIOSK, 10),
    (NOT_AN_OBJECT, 11),
    (BAD_CURRENCY_MOBILE, 12),
]
MIXED_BLOCK = RawBlock(
    SOURCE,
    [payload for payload, _ in MIXED],
    line_numbers=[line for _, line in MIXED],
    blank_lines=3,
)
STREAMING_BLOCK = RawBlock(
    "projects/p/subscriptions/payments",
    [PORTAL, MALFORMED_WITH_PAN, MOBILE_APP],
    message_ids=["m-1", "m-2", "m-3"],
)


@pytest.fixture(scope="module")
def ctx() -> RunContext:
    return RunContext(Normaliser(Pseudonymiser(KEY), load_catalogue()), RUN_ID, INGESTED_MICROS)


@pytest.fixture(scope="module")
def mixed(ctx: RunContext) -> BlockResult:
    return process_block(MIXED_BLOCK, ctx)


@pytest.fixture(scope="module")
def streaming(ctx: RunContext) -> BlockResult:
    return process_block(STREAMING_BLOCK, ctx)


def _strings(table: pa.Table) -> Iterator[str]:
    for column in table.columns:
        if pa.types.is_string(column.type):
            yield from (value for value in column.to_pylist() if value is not None)


def test_every_event_is_accepted_or_rejected(mixed: BlockResult) -> None:
    assert mixed.accepted.num_rows + mixed.rejected.num_rows == len(MIXED_BLOCK.payloads)


def test_good_events_are_accepted(mixed: BlockResult) -> None:
    assert mixed.accepted.column("event_id").to_pylist() == [
        "portal:PTL-2017-000123456",
        "mobile_app:3f0c2a9e-6c1b-4d3e-9a51-0b7d5f9e2c11",
        "kiosk:KSK-017:40214",
    ]


def test_bad_events_are_rejected_with_their_codes(mixed: BlockResult) -> None:
    assert mixed.rejected.column("error_code").to_pylist() == [
        "MALFORMED_JSON",
        "INVALID_CPR",
        "UNKNOWN_CHANNEL",
        "INVALID_AMOUNT",
        "NOT_AN_OBJECT",
        "WRONG_CURRENCY",
    ]


def test_accepted_table_has_exactly_the_payment_schema(mixed: BlockResult) -> None:
    assert mixed.accepted.schema.equals(payment_schema(), check_metadata=True)


def test_rejected_table_has_exactly_the_rejected_schema(mixed: BlockResult) -> None:
    assert mixed.rejected.schema.equals(rejected_schema(), check_metadata=True)


def test_accepted_rows_carry_source_file_and_line(mixed: BlockResult) -> None:
    assert mixed.accepted.column("source_file").to_pylist() == [SOURCE] * 3
    assert mixed.accepted.column("source_line").to_pylist() == [1, 4, 6]
    assert mixed.accepted.column("source_message_id").to_pylist() == [None] * 3


def test_rejected_rows_carry_source_file_and_line(mixed: BlockResult) -> None:
    assert mixed.rejected.column("source_file").to_pylist() == [SOURCE] * 6
    assert mixed.rejected.column("source_line").to_pylist() == [2, 5, 9, 10, 11, 12]
    assert mixed.rejected.column("source_message_id").to_pylist() == [None] * 6


def test_rows_carry_the_run_lineage(mixed: BlockResult) -> None:
    for table in (mixed.accepted, mixed.rejected):
        assert set(table.column("run_id").to_pylist()) == {RUN_ID}
        assert set(table.column("ingested_at").cast(pa.int64()).to_pylist()) == {INGESTED_MICROS}


def test_rejected_channel_is_the_claimed_channel(mixed: BlockResult) -> None:
    # Malformed JSON claims nothing; an unknown channel is reported as claimed.
    assert mixed.rejected.column("channel").to_pylist() == [
        None,
        "portal",
        "bank",
        "kiosk",
        None,
        "mobile_app",
    ]


def test_rejected_row_has_a_reason_and_the_raw_size(mixed: BlockResult) -> None:
    rows = mixed.rejected.to_pylist()
    assert all(row["reason"] for row in rows)
    assert [row["raw_bytes"] for row in rows] == [
        len(p) for p, _ in MIXED if p not in (PORTAL, MOBILE_APP, KIOSK_FULL_PAN_UNKNOWN_SERVICE)
    ]


def test_stats_read_counts_add_up_to_the_block(mixed: BlockResult) -> None:
    read = sum(v for k, v in mixed.stats.items() if k.startswith("read:"))
    assert read == len(MIXED_BLOCK.payloads)


def test_stats_count_reads_per_claimed_channel(mixed: BlockResult) -> None:
    assert mixed.stats[st.read_key("portal")] == 2
    assert mixed.stats[st.read_key("mobile_app")] == 2
    assert mixed.stats[st.read_key("kiosk")] == 2
    assert mixed.stats[st.read_key(st.UNKNOWN_CHANNEL)] == 3


def test_stats_count_rejections_by_channel_and_code(mixed: BlockResult) -> None:
    rejected = {k: v for k, v in mixed.stats.items() if k.startswith("rejected:")}
    assert rejected == {
        "rejected:unknown:MALFORMED_JSON": 1,
        "rejected:portal:INVALID_CPR": 1,
        "rejected:unknown:UNKNOWN_CHANNEL": 1,
        "rejected:kiosk:INVALID_AMOUNT": 1,
        "rejected:unknown:NOT_AN_OBJECT": 1,
        "rejected:mobile_app:WRONG_CURRENCY": 1,
    }


def test_stats_read_equals_accepted_plus_rejected(mixed: BlockResult) -> None:
    rejected = sum(v for k, v in mixed.stats.items() if k.startswith("rejected:"))
    read = sum(v for k, v in mixed.stats.items() if k.startswith("read:"))
    assert read == mixed.accepted.num_rows + rejected


def test_blank_lines_are_counted(mixed: BlockResult) -> None:
    assert mixed.stats[st.BLANK_LINES] == 3


def test_block_without_blank_lines_counts_none(streaming: BlockResult) -> None:
    assert st.BLANK_LINES not in streaming.stats


def test_quality_warnings_are_counted(mixed: BlockResult) -> None:
    assert mixed.stats[st.warning_key("kiosk", "UNKNOWN_SERVICE")] == 1
    assert mixed.stats[st.warning_key("kiosk", "UNMASKED_CARD_NUMBER")] == 1


def test_streaming_rows_carry_the_message_id(streaming: BlockResult) -> None:
    assert streaming.accepted.column("source_message_id").to_pylist() == ["m-1", "m-3"]
    assert streaming.rejected.column("source_message_id").to_pylist() == ["m-2"]


def test_streaming_rows_have_no_source_file_or_line(streaming: BlockResult) -> None:
    for table in (streaming.accepted, streaming.rejected):
        assert table.column("source_file").null_count == table.num_rows
        assert table.column("source_line").null_count == table.num_rows


@pytest.mark.parametrize("table_name", ["accepted", "rejected"])
def test_no_cpr_or_full_card_number_in_any_string_cell(mixed: BlockResult, table_name: str) -> None:
    table = getattr(mixed, table_name)
    assert table.num_rows > 0
    for value in _strings(table):
        for leak in (CPR, PAN, "4111 1111 1111 1111", "4111-1111-1111-1111"):
            assert leak not in value, f"{leak!r} in {table_name}: {value!r}"


def test_all_good_block_rejects_nothing(ctx: RunContext) -> None:
    result = process_block(RawBlock(SOURCE, [PORTAL, MOBILE_APP], line_numbers=[1, 2]), ctx)
    assert result.accepted.num_rows == 2
    assert result.rejected.num_rows == 0
    assert result.rejected.schema.equals(rejected_schema())


def test_all_bad_block_accepts_nothing_with_the_payment_schema(ctx: RunContext) -> None:
    result = process_block(RawBlock(SOURCE, [NOT_AN_OBJECT], line_numbers=[1]), ctx)
    assert result.accepted.num_rows == 0
    assert result.accepted.schema.equals(payment_schema())


def test_blank_only_block_counts_blanks_and_no_reads(ctx: RunContext) -> None:
    result = process_block(RawBlock(SOURCE, [], line_numbers=[], blank_lines=2), ctx)
    assert result.accepted.num_rows == result.rejected.num_rows == 0
    assert dict(result.stats) == {st.BLANK_LINES: 2}


def test_run_context_max_event_bytes_applies(ctx: RunContext) -> None:
    tight = RunContext(ctx.normaliser, RUN_ID, INGESTED_MICROS, max_event_bytes=len(PORTAL) - 1)
    result = process_block(RawBlock(SOURCE, [PORTAL], line_numbers=[1]), tight)
    assert result.rejected.column("error_code").to_pylist() == ["LINE_TOO_LONG"]


def test_a_packed_block_gives_the_rows_of_its_files_each_with_its_own_lineage(
    ctx: RunContext,
) -> None:
    """Several small files packed into one block (`RawBlock.packed`): the same accepted and
    rejected rows, in the same order, as each file's own block, and the same stats."""
    other = RawBlock(
        "landing/2017-07-02.jsonl",
        [payload for payload, _ in reversed(MIXED)],
        line_numbers=[line for _, line in MIXED],
        blank_lines=1,
    )
    apart = [process_block(b, ctx) for b in (MIXED_BLOCK, other)]
    packed = process_block(RawBlock.packed([MIXED_BLOCK, other]), ctx)
    assert packed.accepted.equals(pa.concat_tables([r.accepted for r in apart]))
    assert packed.rejected.equals(pa.concat_tables([r.rejected for r in apart]))
    assert packed.stats == apart[0].stats + apart[1].stats
