"""Streaming payment files: one file per pane and partition, never a second row for an event
that another run (a restarted pipeline, the nightly batch) already committed."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas.catalogue import load_catalogue
from schemas.run import new_run_id
from tests.samples import PORTAL_EVENT, TEST_KEY, run_of
from transforms.core import stats as st
from transforms.core.blocks import RunContext, process_block
from transforms.core.columnar import ArrowBlock
from transforms.core.normalise import Normaliser
from transforms.core.privacy import Pseudonymiser
from transforms.core.rawblock import RawBlock
from transforms.streaming.live import LiveAggregate
from transforms.streaming.sinks import (
    WritePartitionPaneFn,
    live_json,
    live_table,
    publishable_live_json,
    rejected_stats,
    watermark_lag_seconds,
    without_rejected,
    write_live_pane,
    write_rejected_pane,
    write_stats_pane,
)

CTX = RunContext(Normaliser(Pseudonymiser(TEST_KEY), load_catalogue()), "run", 0)
PARTITION = ("portal", "2017-06-30")
OTHER_PORTAL = PORTAL_EVENT.replace(b"000123456", b"000123457")


def _block(*payloads: bytes) -> ArrowBlock:
    ids = [str(n) for n in range(1, len(payloads) + 1)]
    result = process_block(RawBlock("sub", list(payloads), message_ids=ids), CTX)
    assert result.accepted.num_rows == len(payloads)
    return ArrowBlock.of(result.accepted)


def _write(root: Path, run_id: str, *payloads: bytes) -> dict[str, list[Any]]:
    """Outputs of one pane, by tag ('written' for the paths)."""
    outputs: dict[str, list[Any]] = {"written": [], "rejected": [], "stats": []}
    fn = WritePartitionPaneFn(run_of(run_id, str(root)))
    for out in fn.process((PARTITION, [_block(*payloads)])):
        tag = getattr(out, "tag", "written")
        outputs[tag].append(getattr(out, "value", out))
    return outputs


def _event_ids(root: Path) -> list[str]:
    files = sorted((root / "payments/channel=portal/event_date=2017-06-30").glob("*.parquet"))
    return [i for f in files for i in pq.read_table(f)["event_id"].to_pylist()]


def test_a_pane_becomes_one_file_named_for_its_run(tmp_path: Path) -> None:
    run_id = _run_id()
    outputs = _write(tmp_path, run_id, PORTAL_EVENT, OTHER_PORTAL)
    [path] = outputs["written"]
    assert Path(path).name.startswith(f"part-{run_id}-")
    assert len(_event_ids(tmp_path)) == 2
    assert outputs["stats"][0][st.accepted_key("portal")] == 2


def test_events_another_run_committed_are_not_written_again(tmp_path: Path) -> None:
    _write(tmp_path, _run_id(), PORTAL_EVENT)
    outputs = _write(tmp_path, _run_id(), PORTAL_EVENT, OTHER_PORTAL)
    assert sorted(_event_ids(tmp_path)) == [
        "portal:PTL-2017-000123456",
        "portal:PTL-2017-000123457",
    ]
    stats = outputs["stats"][0]
    assert stats[st.duplicate_key("portal", "in_output")] == 1
    assert stats[st.accepted_key("portal")] == 1


def test_another_runs_event_with_other_content_is_rejected_as_a_conflict(tmp_path: Path) -> None:
    _write(tmp_path, _run_id(), PORTAL_EVENT)
    outputs = _write(tmp_path, _run_id(), PORTAL_EVENT.replace(b"12500", b"13500"))
    assert outputs["written"] == []
    [block] = outputs["rejected"]
    assert block.table()["error_code"].to_pylist() == ["DUPLICATE_CONFLICT"]
    assert _event_ids(tmp_path) == ["portal:PTL-2017-000123456"]


def test_a_pane_leaves_no_staged_file_behind(tmp_path: Path) -> None:
    run_id = _run_id()
    _write(tmp_path, run_id, PORTAL_EVENT)
    assert not list((tmp_path / "_staging").rglob("*.parquet"))


def _run_id() -> str:
    return new_run_id(datetime.now(timezone.utc))


def _pane(end_minute: int, timing: str) -> LiveAggregate:
    end = (BASE_MINUTE + end_minute) * 60_000_000
    return LiveAggregate(
        end - 60_000_000, end, date(2017, 6, 30), "portal", "SUCCESS", 2, 25_000, timing, 0
    )


BASE_MINUTE = 24_999_000  # minutes since the epoch, about 2017-07-12


def test_the_watermark_lag_is_measured_from_the_latest_on_time_window() -> None:
    panes = [_pane(1, "ON_TIME"), _pane(3, "ON_TIME"), _pane(9, "EARLY")]
    now = (BASE_MINUTE + 3) * 60 + 12
    assert watermark_lag_seconds(panes, now) == 12


def test_without_an_on_time_pane_the_watermark_lag_is_unknown() -> None:
    assert watermark_lag_seconds([_pane(9, "EARLY"), _pane(1, "LATE")], 0) is None


def test_a_live_aggregate_message_carries_window_bounds_and_an_exact_amount() -> None:
    message = orjson.loads(live_json(_pane(1, "ON_TIME")))
    assert message["amount"] == "25.000"
    assert message["payments"] == 2
    assert message["window_end"].endswith("+00:00")
    assert message["pane_timing"] == "ON_TIME"


def test_rejected_rows_are_counted_by_channel_and_code() -> None:
    table = pa.table(
        {
            "channel": ["portal", "portal", None],
            "error_code": ["INVALID_AMOUNT", "INVALID_AMOUNT", "MALFORMED_JSON"],
        }
    )
    assert rejected_stats(table) == {
        st.rejected_key("portal", "INVALID_AMOUNT"): 2,
        st.rejected_key(st.UNKNOWN_CHANNEL, "MALFORMED_JSON"): 1,
    }


def test_stats_less_rejected_keep_every_other_count() -> None:
    stats = {st.read_key("kiosk"): 3, st.rejected_key("kiosk", "INVALID_AMOUNT"): 1}
    assert without_rejected(stats) == {st.read_key("kiosk"): 3}


# --- the privacy scan before a file or message is published -----------------------------------

CARD = "4111 1111 1111 1111"
CARD_DIGITS = "4111111111111111"
REFUSED = st.privacy_refused_key("files")


def _planted(table: pa.Table, column: str, value: str) -> pa.Table:
    """`table` with every value of `column` replaced: a secret the redaction let through."""
    field = table.schema.field(column)
    return table.set_column(
        table.schema.get_field_index(column), field, pa.array([value] * table.num_rows, field.type)
    )


def _write_blocks(root: Path, run_id: str, block: ArrowBlock) -> dict[str, list[Any]]:
    outputs: dict[str, list[Any]] = {"written": [], "rejected": [], "stats": []}
    for out in WritePartitionPaneFn(run_of(run_id, str(root))).process((PARTITION, [block])):
        tag = getattr(out, "tag", "written")
        outputs[tag].append(getattr(out, "value", out))
    return outputs


def _planted_pane(root: Path, run_id: str) -> dict[str, list[Any]]:
    table = _planted(_block(PORTAL_EVENT).table(), "kiosk_site", f"Isa Town {CARD}")
    return _write_blocks(root, run_id, ArrowBlock.of(table))


def _all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _stats_files(root: Path) -> list[dict[str, int]]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("runs/*/stats-*.json"))]


def test_a_pane_with_a_card_number_past_redaction_is_not_renamed_into_place(
    tmp_path: Path,
) -> None:
    outputs = _planted_pane(tmp_path, _run_id())
    assert outputs["written"] == []
    assert _all_files(tmp_path) == []  # nothing staged, nothing quarantined


def test_a_refused_pane_is_counted_and_its_rows_are_not_accepted(tmp_path: Path) -> None:
    [stats] = _planted_pane(tmp_path, _run_id())["stats"]
    assert stats[REFUSED] == 1
    assert st.accepted_key("portal") not in stats


def test_the_pane_writer_goes_on_after_a_refused_pane(tmp_path: Path) -> None:
    run_id = _run_id()
    _planted_pane(tmp_path, run_id)
    outputs = _write(tmp_path, run_id, PORTAL_EVENT)
    assert len(outputs["written"]) == 1
    assert _event_ids(tmp_path) == ["portal:PTL-2017-000123456"]


def test_a_refused_pane_is_logged_with_file_column_and_row_but_not_the_digits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="transforms.streaming.sinks"):
        _planted_pane(tmp_path, _run_id())
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = record.getMessage()
    assert "event_date=2017-06-30/part-" in message
    assert "column 'kiosk_site', row 0: a card number" in message
    assert "dropped" in message
    assert CARD_DIGITS not in message.replace(" ", "")


def test_a_rejected_pane_with_a_card_number_is_not_written_and_is_counted(tmp_path: Path) -> None:
    bad = PORTAL_EVENT.replace(b"12500", b"-12500")
    result = process_block(RawBlock("sub", [bad], message_ids=["1"]), CTX)
    table = _planted(result.rejected, "reason", f"card {CARD} is not masked")
    outputs = list(write_rejected_pane((None, [ArrowBlock.of(table)]), str(tmp_path), _run_id()))
    assert [out.value for out in outputs] == [{REFUSED: 1}]  # stats only: no path
    assert _all_files(tmp_path) == []


def _live_pane(channel: str) -> LiveAggregate:
    return _pane(1, "ON_TIME")._replace(channel=channel)


def test_a_live_aggregate_pane_with_a_card_number_is_not_written_and_is_counted(
    tmp_path: Path,
) -> None:
    written = list(write_live_pane((None, [_live_pane(CARD)]), str(tmp_path), _run_id()))
    assert written == []
    assert not list(tmp_path.glob("aggregates/**/*.parquet"))
    assert _stats_files(tmp_path) == [{REFUSED: 1}]


def test_a_live_aggregate_message_with_a_card_number_is_not_published(tmp_path: Path) -> None:
    messages = list(publishable_live_json(_live_pane(CARD), str(tmp_path), _run_id()))
    assert messages == []
    assert _stats_files(tmp_path) == [{st.privacy_refused_key("messages"): 1}]


def test_a_clean_live_aggregate_message_is_published_as_it_is(tmp_path: Path) -> None:
    pane = _live_pane("portal")
    assert list(publishable_live_json(pane, str(tmp_path), _run_id())) == [live_json(pane)]
    assert _all_files(tmp_path) == []


def test_a_stats_pane_with_a_card_number_in_a_key_is_written_as_its_refusal_alone(
    tmp_path: Path,
) -> None:
    parts = [{st.read_key("portal"): 5, st.rejected_key(CARD, "INVALID_CHANNEL"): 1}]
    [path] = write_stats_pane((None, parts), str(tmp_path), _run_id())
    assert json.loads(Path(path).read_text()) == {REFUSED: 1}


BEYOND_INT64_FILS = 20 * (10**18 - 1)  # twenty of the largest payments the old model took


def test_a_live_window_sum_beyond_int64_is_written_exactly() -> None:
    pane = _pane(1, "ON_TIME")._replace(amount_fils=BEYOND_INT64_FILS)
    [amount] = live_table([pane])["amount"].to_pylist()
    assert amount == Decimal(BEYOND_INT64_FILS).scaleb(-3)


def test_a_live_message_carries_the_exact_sum_as_text() -> None:
    pane = _pane(1, "ON_TIME")._replace(amount_fils=BEYOND_INT64_FILS)
    assert json.loads(live_json(pane))["amount"] == "19999999999999999.980"
