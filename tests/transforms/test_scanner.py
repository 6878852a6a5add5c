"""The scanner's read-back of written output: files, stats keys, messages, and the refusal's
text read back by a launcher that only sees the text of a worker's error."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core import scanner
from transforms.core.privacy import Strength, find_secrets, raw_findings
from transforms.core.scanner import (
    Leak,
    SecretInOutput,
    candidates,
    leaks_in_text,
    origin_of,
    scan_message,
    scan_texts,
)
from transforms.storage import readback
from transforms.storage.readback import scan_file
from transforms.streaming.live import LiveAggregate
from transforms.streaming.sinks import live_json

CARD = "4111 1111 1111 1111"
CARD_DIGITS = "4111111111111111"


def _rows(sites: list[str | None]) -> pa.Table:
    return pa.table(
        {
            "kiosk_site": pa.array(sites, pa.string()),
            "source_file": pa.array([f"landing/{n}.jsonl" for n in range(len(sites))]),
            "source_line": pa.array([n + 10 for n in range(len(sites))], pa.int64()),
            "amount": pa.array([1] * len(sites), pa.int64()),
        }
    )


def _parquet(tmp_path: Path, table: pa.Table) -> str:
    path = tmp_path / "part-00000.parquet"
    pq.write_table(table, path)
    return str(path)


def test_a_card_number_in_a_written_file_is_found_at_its_column_and_row(tmp_path: Path) -> None:
    path = _parquet(tmp_path, _rows(["Isa Town", None, f"Riffa {CARD}"]))
    scan = scan_file(path)
    assert scan.leaks == [Leak(path, "kiosk_site", 2, "card")]


def test_a_file_scan_counts_its_rows(tmp_path: Path) -> None:
    assert scan_file(_parquet(tmp_path, _rows(["Isa Town", "Riffa", None]))).rows == 3


def test_a_clean_file_has_no_leaks(tmp_path: Path) -> None:
    scan = scan_file(_parquet(tmp_path, _rows(["Isa Town", "Hamad Town 2017-06-30", "12.500"])))
    assert scan.leaks == []


def test_leaks_name_the_file_as_given(tmp_path: Path) -> None:
    path = _parquet(tmp_path, _rows([CARD]))
    [leak] = scan_file(path, "out/payments/part-1.parquet").leaks
    assert leak.file == "out/payments/part-1.parquet"


def test_a_leaking_row_is_traced_to_its_input_file_and_line(tmp_path: Path) -> None:
    scan = scan_file(_parquet(tmp_path, _rows(["Isa Town", "850101234"])))
    assert scan.origins == {1: "input landing/1.jsonl line 11"}


def test_a_streamed_row_is_traced_to_its_message() -> None:
    table = pa.table({"source_file": pa.array([None], pa.string()), "source_message_id": ["77"]})
    assert origin_of(table, 0) == "message 77"


def test_stats_keys_with_a_card_number_are_found() -> None:
    keys = ["read:portal", f"rejected:{CARD}:INVALID_CHANNEL"]
    assert scan_texts(keys, "stats.json", "stats key") == [
        Leak("stats.json", "stats key", 1, "card")
    ]


def test_a_live_aggregate_message_is_clean() -> None:
    pane = LiveAggregate(
        1_498_846_440_000_000,
        1_498_846_500_000_000,
        date(2017, 6, 30),
        "portal",
        "SUCCESS",
        123_456_789,
        123_456_789_500,
        "ON_TIME",
        0,
    )
    assert scan_message(live_json(pane), "topic", frozenset({"amount"})) == []


def test_a_card_number_in_a_message_value_is_found_under_its_key() -> None:
    message = b'{"channel": "portal", "status": "' + CARD.encode() + b'", "payments": 2}'
    assert scan_message(message, "topic") == [Leak("topic", "status", 0, "card")]


def test_a_card_number_in_a_nested_message_value_is_found_under_its_path() -> None:
    message = b'{"pane": {"notes": ["ok", "' + CARD.encode() + b'"]}}'
    assert [leak.column for leak in scan_message(message, "topic")] == ["pane.notes[1]"]


def test_a_message_that_is_not_json_is_scanned_whole() -> None:
    assert scan_message(f"site {CARD}".encode(), "topic") == [Leak("topic", "message", 0, "card")]


def test_the_leaks_of_a_refusal_are_read_back_from_its_message() -> None:
    leaks = [Leak("out/rejected/part-1.parquet", "reason", 4, "card")]
    assert leaks_in_text(str(SecretInOutput(leaks))) == leaks


def test_the_leaks_of_a_refusal_are_read_back_from_a_wrapped_traceback() -> None:
    leaks = [Leak("out/a.parquet", "kiosk_site", 0, "cpr"), Leak("out/b.parquet", "raw", 9, "card")]
    text = (
        "Traceback (most recent call last):\n  File x\ntransforms.commit.PublishRefused: "
        f"{SecretInOutput(leaks)} [while running 'Commit/PublishRun']\n\nDuring handling…"
    )
    assert leaks_in_text(text) == leaks


def test_other_errors_name_no_leaks() -> None:
    assert leaks_in_text("RuntimeError: disk full [while running 'Commit/PublishRun']") == []


def test_a_refusal_names_file_column_and_row_but_never_the_digits(tmp_path: Path) -> None:
    path = _parquet(tmp_path, _rows([CARD]))
    message = str(SecretInOutput(scan_file(path).leaks))
    assert f"{path}: column 'kiosk_site', row 0: a card number" in message
    assert CARD_DIGITS not in message.replace(" ", "")


def test_a_file_that_is_not_parquet_is_scanned_as_text_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text(f"all fine\ncard {CARD}\n")
    assert scan_file(str(path)).leaks == [Leak(str(path), "text", 1, "card")]


def test_a_file_that_starts_like_parquet_but_does_not_read_cannot_be_checked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "part-00000.parquet"
    path.write_bytes(b"PAR1 truncated")
    with pytest.raises(pa.ArrowInvalid):
        scan_file(str(path))


def _mixed(n: int) -> pa.Table:
    return pa.table(
        {
            "event_id": [f"kiosk:KSK-{n}:{n}", "portal:PTL-4111-1111-1111-1111"],
            "kiosk_site": [f"Riffa {CARD}" if n % 2 else "Isa Town", "850101234"],
            "raw": ['{"card": "' + CARD + '"}', '{"channel": "kiosk"}'],
            "payer_key": ["123456789012345678901234567890ab", None],
            "reason": pa.array(["ok", None], pa.large_string()),
        }
    )


@pytest.mark.parametrize("batch_values", [1, 3, 1_000_000])
def test_tables_scanned_together_find_what_each_scan_finds_alone(
    monkeypatch: pytest.MonkeyPatch, batch_values: int
) -> None:
    monkeypatch.setattr(scanner, "_BATCH_VALUES", batch_values)
    named = [(_mixed(n), f"file-{n}") for n in range(4)]
    assert scanner.scan_tables(named) == [scanner.scan_table(t, name) for t, name in named]


def test_files_scanned_together_skip_what_the_reader_skips(tmp_path: Path) -> None:
    clean = _parquet(tmp_path, _rows(["Isa Town"]))
    leaky = str(tmp_path / "leaky.parquet")
    pq.write_table(_rows([CARD]), leaky)
    scans = readback.scan_files(
        [(clean, "a"), ("gone", "b"), (leaky, "c")],
        read=lambda path: None if path == "gone" else readback.read_back(path),
    )
    assert [(s.path, s.rows, s.leaks) for s in scans] == [
        (clean, 1, []),
        (leaky, 1, [Leak("c", "kiosk_site", 0, "card")]),
    ]


_PIECES = st.sampled_from(
    [
        "4111", "1", "12", "123456", "1234567", "-", " ", ".", "a", "x9", "٤", "\u00a0",
        "\n", "ب", "\\u0034", "\\u0031", "\\u0661",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.lists(_PIECES, max_size=14).map("".join),
    st.sampled_from([Strength.FREE_TEXT, Strength.IDENTIFIER]),
)
def test_the_pre_filter_keeps_every_value_the_rule_would_flag(
    text: str, strength: Strength
) -> None:
    if find_secrets(text, strength):
        assert candidates(pa.array([text]), strength) == [0]


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=14).map("".join))
def test_the_scan_of_a_raw_column_finds_whatever_the_rule_finds(text: str) -> None:
    raw = '{"card": "' + text + '"}'
    leaks = scanner.scan_table(pa.table({"raw": [raw]}), "rejected.parquet")
    assert bool(leaks) == bool(raw_findings(raw))


def test_a_card_spelled_in_json_escapes_in_a_rejected_raw_is_found() -> None:
    escaped = "".join(f"\\u{ord(c):04x}" for c in CARD_DIGITS)
    table = pa.table({"raw": [f'{{"card": "{escaped}"}}']})
    assert [leak.kind for leak in scanner.scan_table(table, "rejected.parquet")] == ["card"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_PIECES, max_size=8).map("".join), max_size=20))
def test_a_dictionary_encoded_column_is_scanned_as_its_plain_values_are(
    sites: list[str],
) -> None:
    plain = pa.table({"kiosk_site": pa.array(sites, pa.string())})
    encoded = pa.table({"kiosk_site": pc.dictionary_encode(plain["kiosk_site"])})
    assert scanner.scan_table(encoded, "f") == scanner.scan_table(plain, "f")


def test_a_card_repeated_in_a_dictionary_column_is_found_at_every_row_holding_it(
    tmp_path: Path,
) -> None:
    path = _parquet(tmp_path, _rows(["Isa Town", CARD, "Riffa", CARD]))
    assert [leak.row for leak in scan_file(path).leaks] == [1, 3]


_CPR = "850101234"
_ID_PIECES = st.sampled_from(
    ["PTL-", "2017-", _CPR, "85010", "1234", "-", " ", "٨٥٠١٠١٢٣٤", "x", "9", "0" * 30, "٣"]
)
_IDENTIFIER = st.lists(_ID_PIECES, max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.just(_CPR), st.text("0123456789", min_size=9, max_size=9)),
            _IDENTIFIER,
            _IDENTIFIER,
            st.one_of(st.none(), _IDENTIFIER),
        ),
        max_size=12,
    )
)
def test_the_block_cpr_check_finds_what_the_per_row_rule_finds(
    rows: list[tuple[str | None, str, str, str | None]],
) -> None:
    table = pa.table(
        {
            "event_id": pa.array([r[1] for r in rows], pa.string()),
            "service_code": pa.array([r[2] for r in rows], pa.string()),
            "kiosk_id": pa.array([r[3] for r in rows], pa.string()),
        }
    )
    expected = {
        row: column
        for row, (cpr, event_id, service, kiosk) in enumerate(rows)
        if (column := scanner.cpr_in_identifiers(cpr, event_id, service, kiosk)) is not None
    }
    assert scanner.cprs_in_identifiers(table, [r[0] for r in rows]) == expected


def test_the_block_cpr_check_reads_a_sliced_table() -> None:
    table = pa.table(
        {
            "event_id": ["PTL-2017-000000001", f"PTL-{_CPR}", "x"],
            "service_code": ["A", "B", "C"],
            "kiosk_id": pa.nulls(3, pa.string()),
        }
    ).slice(1)
    assert scanner.cprs_in_identifiers(table, [_CPR, _CPR]) == {0: "event_id"}
