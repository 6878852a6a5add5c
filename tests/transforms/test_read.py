"""transforms.batch.read: byte ranges over files, every line read once, long lines held bounded."""

from __future__ import annotations

import bz2
import gzip
import io
import itertools
import lzma
import pickle
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast
from unittest import mock

import pytest
import zstandard
from apache_beam.pvalue import TaggedOutput
from hypothesis import given
from hypothesis import strategies as st

from schemas.enums import InputFault, RejectCode
from transforms.batch import read
from transforms.batch.read import (
    MAX_HELD_LINE_BYTES,
    ByteRange,
    iter_lines,
    plan_ranges,
    read_blocks,
)
from transforms.core.rawblock import RawBlock
from transforms.core.validate import Rejection, parse_event

PORTAL = (
    b'{"channel": "portal", "txn_id": "PTL-2017-000123456",'
    b' "service": {"code": "GDT-FINE", "entity": "GDT"},'
    b' "amount_fils": 12500, "currency": "BHD", "status": "PAID",'
    b' "paid_at": "2017-06-30T21:15:03+03:00", "payer": {"cpr": "850101234"},'
    b' "method": "DEBIT_CARD", "gateway_ref": "BNF8823410"}'
)
# Lines of different lengths, blank lines among them (1-based line numbers in comments).
SMALL_LINES = [b"a", b"", b"bb", b"ccc", b"", b"", b"dddd", b"e"]
SMALL_FILES = {
    "trailing_newline": b"\n".join(SMALL_LINES) + b"\n",
    "no_trailing_newline": b"\n".join(SMALL_LINES),
    "leading_blank": b"\n" + b"\n".join(SMALL_LINES) + b"\n",
    "one_line": b"only",
    "one_line_newline": b"only\n",
}


def _expected(data: bytes) -> list[tuple[int, bytes]]:
    """Every line with its 1-based number; a final newline does not start another line."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return list(enumerate(lines, start=1))


def _read_split(data: bytes, cuts: tuple[int, ...]) -> list[tuple[int, bytes]]:
    """All lines of `data` read as consecutive ranges cut at `cuts`."""
    bounds = [0, *cuts, None]
    out: list[tuple[int, bytes]] = []
    for start, end in itertools.pairwise(bounds):
        assert start is not None
        out.extend(iter_lines(io.BytesIO(data), start, end))
    return out


class _EndlessLine(io.RawIOBase):
    """A stream of one `size`-byte line and then a short line, produced as it is read."""

    def __init__(self, size: int, tail: bytes) -> None:
        self._left = size
        self._tail = tail
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        assert n > 0, "the reader asked for the whole stream at once"
        self.largest_read = max(self.largest_read, n)
        if self._left > 0:
            size = min(n, self._left)
            self._left -= size
            return b"x" * size
        tail, self._tail = self._tail[:n], self._tail[n:]
        return tail


def test_small_file_is_one_range() -> None:
    assert plan_ranges("in/a.jsonl", 100, range_bytes=100) == [
        ByteRange("in/a.jsonl", 0, None, False)
    ]


def test_gzip_file_is_one_range_whatever_its_size() -> None:
    assert plan_ranges("in/a.jsonl.gz", 10_000, range_bytes=100) == [
        ByteRange("in/a.jsonl.gz", 0, None, True)
    ]


@pytest.mark.parametrize(("size", "range_bytes"), [(101, 100), (1000, 100), (1001, 7), (10, 3)])
def test_large_file_ranges_are_contiguous_and_cover_it(size: int, range_bytes: int) -> None:
    ranges = plan_ranges("in/a.jsonl", size, range_bytes=range_bytes)
    assert len(ranges) > 1
    assert ranges[0].start == 0
    assert ranges[-1].end is None
    assert ranges[-1].start < size
    for before, after in itertools.pairwise(ranges):
        assert before.end == after.start
        assert before.end is not None
        assert before.end - before.start == range_bytes
    assert not any(r.compressed for r in ranges)


@pytest.mark.parametrize("name", sorted(SMALL_FILES))
def test_whole_file_yields_every_line_with_its_number(name: str) -> None:
    data = SMALL_FILES[name]
    assert list(iter_lines(io.BytesIO(data), 0, None)) == _expected(data)


@pytest.mark.parametrize("name", sorted(SMALL_FILES))
def test_every_split_point_yields_each_line_once(name: str) -> None:
    data = SMALL_FILES[name]
    for cut in range(len(data) + 1):
        assert _read_split(data, (cut,)) == _expected(data), cut


@pytest.mark.parametrize("name", ["trailing_newline", "no_trailing_newline"])
def test_every_pair_of_split_points_yields_each_line_once(name: str) -> None:
    data = SMALL_FILES[name]
    for first, second in itertools.combinations(range(len(data) + 1), 2):
        assert _read_split(data, (first, second)) == _expected(data), (first, second)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
def test_lines_across_read_chunks_are_whole(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(read, "_CHUNK", chunk)
    data = SMALL_FILES["no_trailing_newline"]
    for cut in range(len(data) + 1):
        assert _read_split(data, (cut,)) == _expected(data), cut


def test_split_ranges_over_plan_ranges_read_each_line_once() -> None:
    data = b"\n".join([PORTAL] * 7 + [b""] + [PORTAL] * 3) + b"\n"
    lines: list[tuple[int, bytes]] = []
    for rng in plan_ranges("f.jsonl", len(data), range_bytes=97):
        lines.extend(iter_lines(io.BytesIO(data), rng.start, rng.end))
    assert lines == _expected(data)


def test_carriage_return_is_kept_at_the_end_of_a_crlf_line() -> None:
    data = b"a\r\n\r\nbb\r\n"
    assert list(iter_lines(io.BytesIO(data), 0, None)) == [(1, b"a\r"), (2, b"\r"), (3, b"bb\r")]


def test_crlf_split_points_yield_each_line_once() -> None:
    data = b"a\r\n\r\nbb\r\nccc"
    for cut in range(len(data) + 1):
        assert _read_split(data, (cut,)) == _expected(data), cut


def test_range_starting_past_the_end_yields_nothing() -> None:
    data = SMALL_FILES["trailing_newline"]
    assert list(iter_lines(io.BytesIO(data), len(data) + 5, None)) == []


def _write(path: Path, data: bytes) -> str:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return str(path)


FILE_LINES = [PORTAL, b"", PORTAL, PORTAL, b"   ", PORTAL, b"\r", PORTAL, b"", PORTAL]
FILE_DATA = b"\n".join(FILE_LINES) + b"\n"
# Lines 2, 5, 7 and 9 are blank (whitespace and a lone CR count as blank).
EVENT_LINES = [1, 3, 4, 6, 8, 10]


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_read_blocks_gives_payloads_with_their_line_numbers(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, FILE_DATA)
    (rng,) = plan_ranges(path, len(FILE_DATA))
    blocks = list(read_blocks(rng, block_events=100))
    assert len(blocks) == 1
    assert blocks[0].line_numbers == EVENT_LINES
    assert blocks[0].payloads == [PORTAL] * len(EVENT_LINES)
    assert blocks[0].source == path
    assert blocks[0].message_ids is None


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_read_blocks_counts_blank_lines(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, FILE_DATA)
    (rng,) = plan_ranges(path, len(FILE_DATA))
    assert sum(b.blank_lines for b in read_blocks(rng, block_events=2)) == 4


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_read_blocks_holds_at_most_block_events_payloads(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, FILE_DATA)
    (rng,) = plan_ranges(path, len(FILE_DATA))
    blocks = list(read_blocks(rng, block_events=4))
    assert [len(b.payloads) for b in blocks] == [4, 2]
    assert [n for b in blocks for n in b.line_numbers or []] == EVENT_LINES


def test_read_blocks_over_split_ranges_reads_each_event_once(tmp_path: Path) -> None:
    path = _write(tmp_path / "events.jsonl", FILE_DATA)
    numbers: list[int] = []
    blank = 0
    for rng in plan_ranges(path, len(FILE_DATA), range_bytes=150):
        for block in read_blocks(rng, block_events=3):
            assert len(block.payloads) <= 3
            numbers.extend(block.line_numbers or [])
            blank += block.blank_lines
    assert numbers == EVENT_LINES
    assert blank == 4


def test_read_blocks_of_a_blank_only_file_reports_the_blanks(tmp_path: Path) -> None:
    path = _write(tmp_path / "blank.jsonl", b"\n\n  \n")
    (rng,) = plan_ranges(path, 5)
    blocks = list(read_blocks(rng))
    assert [(b.payloads, b.blank_lines) for b in blocks] == [([], 3)]


def test_read_blocks_of_an_empty_file_yields_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.jsonl", b"")
    (rng,) = plan_ranges(path, 0)
    assert list(read_blocks(rng)) == []


def test_line_longer_than_a_read_chunk_is_truncated_to_one_byte_over_the_limit() -> None:
    data = b"x" * (read._CHUNK + MAX_HELD_LINE_BYTES) + b"\n" + PORTAL + b"\n"
    lines = list(iter_lines(io.BytesIO(data), 0, None))
    assert [(n, len(line)) for n, line in lines] == [(1, MAX_HELD_LINE_BYTES + 1), (2, len(PORTAL))]


def test_unterminated_long_last_line_is_truncated() -> None:
    data = PORTAL + b"\n" + b"x" * (read._CHUNK + 10)
    lines = list(iter_lines(io.BytesIO(data), 0, None))
    assert [(n, len(line)) for n, line in lines] == [(1, len(PORTAL)), (2, MAX_HELD_LINE_BYTES + 1)]


def test_long_line_inside_one_read_chunk_is_truncated() -> None:
    data = b"x" * (2 * MAX_HELD_LINE_BYTES) + b"\n" + PORTAL + b"\n"
    lines = list(iter_lines(io.BytesIO(data), 0, None))
    assert [(n, len(line)) for n, line in lines] == [(1, MAX_HELD_LINE_BYTES + 1), (2, len(PORTAL))]


def test_huge_line_is_read_in_chunks_without_holding_it() -> None:
    size = 64 * 1024 * 1024
    stream = _EndlessLine(size, b"\n" + PORTAL + b"\n")
    tracemalloc.start()
    try:
        lines = [(n, len(line)) for n, line in iter_lines(cast(IO[bytes], stream), 0, None)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == [(1, MAX_HELD_LINE_BYTES + 1), (2, len(PORTAL))]
    assert stream.largest_read <= read._CHUNK
    assert peak < size // 2


def test_truncated_line_is_rejected_as_too_long(tmp_path: Path) -> None:
    path = _write(tmp_path / "long.jsonl", b"x" * (read._CHUNK + 1) + b"\n")
    (rng,) = plan_ranges(path, read._CHUNK + 2)
    (block,) = list(read_blocks(rng))
    outcome = parse_event(block.payloads[0])
    assert isinstance(outcome, Rejection)
    assert outcome.code is RejectCode.LINE_TOO_LONG


def test_entering_a_range_with_its_newline_count_gives_the_same_lines() -> None:
    data = b'{"a":1}\n\n{"b":22}\nlonger line here\nx\n'
    whole = list(iter_lines(io.BytesIO(data), 0, None))
    for cut in range(1, len(data)):
        before = data[:cut].count(b"\n")
        first = list(iter_lines(io.BytesIO(data), 0, cut))
        second = list(iter_lines(io.BytesIO(data), cut, None, newlines_before=before))
        assert first + second == whole, cut


BOM = read.UTF8_BOM


class _Trickle(io.RawIOBase):
    """`data`, handed out at most one byte per read, as a slow stream might."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        size = 1 if n < 0 else min(n, 1)
        piece, self._data = self._data[:size], self._data[size:]
        return piece


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_bom_at_the_start_of_a_file_is_skipped_and_its_event_accepted_at_line_1(
    tmp_path: Path, name: str
) -> None:
    path = _write(tmp_path / name, BOM + FILE_DATA)
    (rng,) = plan_ranges(path, len(BOM + FILE_DATA))
    (block,) = list(read_blocks(rng, block_events=100))
    assert block.line_numbers == EVENT_LINES
    assert block.payloads == [PORTAL] * len(EVENT_LINES)
    assert not isinstance(parse_event(block.payloads[0]), Rejection)


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_bom_in_the_middle_of_a_file_is_not_stripped(tmp_path: Path, name: str) -> None:
    data = PORTAL + b"\n" + BOM + PORTAL + b"\n"
    path = _write(tmp_path / name, data)
    (rng,) = plan_ranges(path, len(data))
    (block,) = list(read_blocks(rng))
    assert block.payloads == [PORTAL, BOM + PORTAL]
    outcome = parse_event(block.payloads[1])
    assert isinstance(outcome, Rejection)
    assert outcome.code is RejectCode.MALFORMED_JSON


def test_bom_file_split_at_every_point_yields_each_line_once_with_its_number() -> None:
    data = BOM + SMALL_FILES["trailing_newline"]
    expected = _expected(SMALL_FILES["trailing_newline"])
    for cut in range(len(data) + 1):
        assert _read_split(data, (cut,)) == expected, cut


def test_bom_file_entered_with_its_newline_count_gives_the_same_lines() -> None:
    data = BOM + b'{"a":1}\n\n{"b":22}\n'
    expected = _expected(data[len(BOM) :])
    for cut in range(1, len(data)):
        before = data[:cut].count(b"\n")
        first = list(iter_lines(io.BytesIO(data), 0, cut, newlines_before=0))
        second = list(iter_lines(io.BytesIO(data), cut, None, newlines_before=before))
        assert first + second == expected, cut


def test_bom_is_skipped_from_a_stream_that_reads_one_byte_at_a_time() -> None:
    data = BOM + b"a\nbb\n"
    lines = list(iter_lines(cast(IO[bytes], _Trickle(data)), 0, None))
    assert lines == [(1, b"a"), (2, b"bb")]


@pytest.mark.parametrize("start", [BOM[:1], BOM[:2], b"\xbb\xbf", b" " + BOM])
def test_anything_short_of_a_whole_leading_bom_is_kept(start: bytes) -> None:
    lines = list(iter_lines(io.BytesIO(start + b"a\n"), 0, None))
    assert lines == [(1, start + b"a")]


def test_file_of_only_a_bom_holds_no_line() -> None:
    assert list(iter_lines(io.BytesIO(BOM), 0, None)) == []


# --- compressed files: whole, or not at all ----------------------------------------------------

# Enough distinct lines that gzip needs many deflate blocks and the check many output chunks.
MANY_LINES = b"".join(
    b'{"n": %d, "ref": "%08x"}\n' % (n, n * 2654435761 % 2**32) for n in range(60_000)
)
GZIPPED = gzip.compress(MANY_LINES)


def _flipped(data: bytes, position: int) -> bytes:
    damaged = bytearray(data)
    damaged[position] ^= 0x01
    return bytes(damaged)


def _check(tmp_path: Path, name: str, data: bytes) -> read.IncompleteInput | None:
    path = tmp_path / name
    path.write_bytes(data)
    return read.check_complete(str(path))


def test_a_whole_gzip_file_is_complete(tmp_path: Path) -> None:
    assert _check(tmp_path, "a.jsonl.gz", GZIPPED) is None


def test_a_gzip_file_cut_in_half_is_truncated_with_the_lines_it_held(tmp_path: Path) -> None:
    found = _check(tmp_path, "a.jsonl.gz", GZIPPED[: len(GZIPPED) // 2])
    assert found is not None
    assert found.fault is InputFault.TRUNCATED
    assert found.detail == "the compressed stream ends before its end-of-stream marker"
    whole = MANY_LINES.count(b"\n")
    assert whole * 0.4 < found.lines_before_fault < whole * 0.6


def test_a_gzip_file_missing_only_its_trailer_is_truncated(tmp_path: Path) -> None:
    found = _check(tmp_path, "a.jsonl.gz", GZIPPED[:-8])
    assert found is not None
    assert found.fault is InputFault.TRUNCATED


def test_a_flipped_byte_in_the_middle_of_a_gzip_file_is_corrupt(tmp_path: Path) -> None:
    found = _check(tmp_path, "a.jsonl.gz", _flipped(GZIPPED, len(GZIPPED) // 2))
    assert found is not None
    assert found.fault is InputFault.CORRUPT


def test_a_wrong_crc_in_the_gzip_trailer_is_named(tmp_path: Path) -> None:
    found = _check(tmp_path, "a.jsonl.gz", _flipped(GZIPPED, len(GZIPPED) - 6))
    assert found is not None
    assert (found.fault, found.detail) == (
        InputFault.CORRUPT,
        "its CRC-32 does not match the one in its gzip trailer",
    )


def test_a_wrong_length_in_the_gzip_trailer_is_named(tmp_path: Path) -> None:
    found = _check(tmp_path, "a.jsonl.gz", _flipped(GZIPPED, len(GZIPPED) - 2))
    assert found is not None
    assert found.detail == "its length does not match the one (ISIZE) in its gzip trailer"


def test_a_gz_that_is_not_gzip_is_not_compressed(tmp_path: Path) -> None:
    found = _check(tmp_path, "a.jsonl.gz", MANY_LINES)
    assert found is not None
    assert (found.fault, found.lines_before_fault) == (InputFault.NOT_COMPRESSED, 0)


def test_an_empty_gz_is_truncated(tmp_path: Path) -> None:
    found = _check(tmp_path, "a.jsonl.gz", b"")
    assert found is not None
    assert (found.fault, found.detail) == (InputFault.TRUNCATED, "the file is empty")


def test_concatenated_gzip_members_are_one_complete_file(tmp_path: Path) -> None:
    data = gzip.compress(b"a\nb\n") + gzip.compress(b"c\n")
    path = _write_raw(tmp_path / "a.jsonl.gz", data)
    assert read.check_complete(path) is None
    (rng,) = plan_ranges(path, len(data))
    assert [n for b in read_blocks(rng) for n in b.payloads] == [b"a", b"b", b"c"]


def test_nul_padding_after_a_gzip_member_is_allowed_as_gzip_allows_it(tmp_path: Path) -> None:
    assert _check(tmp_path, "a.jsonl.gz", GZIPPED + b"\0" * 512) is None


def test_garbage_after_a_gzip_member_is_corrupt(tmp_path: Path) -> None:
    found = _check(tmp_path, "a.jsonl.gz", GZIPPED + b"trailing garbage")
    assert found is not None
    assert found.fault is InputFault.CORRUPT


def test_a_second_member_cut_short_is_truncated(tmp_path: Path) -> None:
    found = _check(tmp_path, "a.jsonl.gz", GZIPPED + GZIPPED[:100])
    assert found is not None
    assert found.fault is InputFault.TRUNCATED


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [
        (".bz2", bz2.compress),
        (".xz", lzma.compress),
        (".zst", lambda data: zstandard.ZstdCompressor().compress(data)),
        (".deflate", zlib.compress),
    ],
)
def test_other_compressed_formats_are_checked_to_their_end_too(
    tmp_path: Path, suffix: str, compress: Callable[[bytes], bytes]
) -> None:
    data = compress(MANY_LINES)
    assert _check(tmp_path, f"whole.jsonl{suffix}", data) is None
    cut = _check(tmp_path, f"cut.jsonl{suffix}", data[: len(data) // 2])
    assert cut is not None
    assert cut.fault is InputFault.TRUNCATED


def _write_raw(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_reading_a_truncated_gzip_file_raises_after_its_last_whole_block(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "a.jsonl.gz", GZIPPED[: len(GZIPPED) // 2])
    (rng,) = plan_ranges(path, 1)
    with pytest.raises(read.CompressedStreamError, match="TRUNCATED"):
        list(read_blocks(rng))


def test_a_whole_gzip_file_reads_every_line(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "a.jsonl.gz", GZIPPED)
    (rng,) = plan_ranges(path, 1)
    payloads = [p for b in read_blocks(rng, block_events=7_000) for p in b.payloads]
    assert payloads == MANY_LINES.splitlines()


def _process(path: str) -> list[Any]:
    (rng,) = plan_ranges(path, 1)
    return list(read.ReadRangeFn(1000).process(rng, {}))


def test_a_truncated_gzip_input_yields_its_quarantine_stats_and_no_block(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "a.jsonl.gz", GZIPPED[: len(GZIPPED) // 2])
    [out] = _process(path)
    assert isinstance(out, TaggedOutput)
    assert out.tag == read.FILE_STATS
    assert set(out.value) == {f"incomplete:TRUNCATED:{path}", f"incomplete_lines:{path}"}
    assert out.value[f"incomplete:TRUNCATED:{path}"] == 1


def test_a_complete_gzip_input_yields_blocks_only(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "a.jsonl.gz", GZIPPED)
    blocks = _process(path)
    assert all(isinstance(b, RawBlock) for b in blocks)
    assert sum(len(b.payloads) for b in blocks) == MANY_LINES.count(b"\n")


def test_an_input_that_fails_after_passing_its_check_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if the file were rewritten, cut short, between its check and its reading."""
    path = _write_raw(tmp_path / "a.jsonl.gz", GZIPPED[: len(GZIPPED) // 2])
    monkeypatch.setattr(read, "check_complete", lambda _path: None)
    with pytest.raises(read.InputChanged, match="after it had passed its completeness check"):
        _process(path)


def test_a_compressed_stream_error_survives_pickling() -> None:
    error = read.CompressedStreamError(InputFault.CORRUPT, "bad")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.fault, copy.detail, str(copy)) == (InputFault.CORRUPT, "bad", "CORRUPT: bad")


# --- small files packed into full blocks -------------------------------------------------------


def _small_files(tmp_path: Path, lines_per_file: list[int]) -> list[tuple[str, int]]:
    """Files of `n` numbered lines each (a blank line after every third), as (path, size)."""
    files = []
    for f, n in enumerate(lines_per_file):
        body = b"".join(
            b'{"file": %d, "n": %d}\n' % (f, i) + (b"\n" if i % 3 == 2 else b"") for i in range(n)
        )
        path = tmp_path / f"{f:03d}.jsonl"
        path.write_bytes(body)
        files.append((str(path), len(body)))
    return files


def test_plan_work_packs_whole_small_files_in_listing_order_up_to_the_range_size() -> None:
    files = [("a", 40), ("b", 40), ("c", 40), ("d", 10)]
    work = read.plan_work(files, range_bytes=100)
    assert work == [
        read.FilePack((ByteRange("a", 0, None, False), ByteRange("b", 0, None, False))),
        read.FilePack((ByteRange("c", 0, None, False), ByteRange("d", 0, None, False))),
    ]


def test_plan_work_keeps_the_ranges_of_a_large_file_and_a_lone_small_file_as_a_range() -> None:
    work = read.plan_work([("big", 250), ("small", 10)], range_bytes=100)
    assert work == [*plan_ranges("big", 250, range_bytes=100), ByteRange("small", 0, None, False)]


def test_plan_work_packs_small_compressed_files_whole() -> None:
    work = read.plan_work([("a.jsonl.gz", 30), ("b.jsonl", 30)], range_bytes=100)
    assert work == [
        read.FilePack(
            (ByteRange("a.jsonl.gz", 0, None, True), ByteRange("b.jsonl", 0, None, False))
        )
    ]


def test_a_pack_gives_full_blocks_whose_payloads_keep_their_own_file_and_line(
    tmp_path: Path,
) -> None:
    files = _small_files(tmp_path, [7, 1, 0, 12, 5])
    (pack,) = read.plan_work(files, range_bytes=10_000)
    blocks = list(read.ReadRangeFn(10).process(pack, {}))
    assert [len(b.payloads) for b in blocks] == [10, 10, 5]
    seen = [
        (b.source_of(i), b.line_numbers[i], p)
        for b in blocks
        for i, p in enumerate(b.payloads)
        if b.line_numbers is not None
    ]
    expected = [
        (path, number, line)
        for path, _ in files
        for number, line in _expected(Path(path).read_bytes())
        if line.strip()
    ]
    assert seen == expected


def test_a_pack_counts_every_blank_line_of_its_files(tmp_path: Path) -> None:
    files = _small_files(tmp_path, [7, 1, 0, 12, 5])
    (pack,) = read.plan_work(files, range_bytes=10_000)
    blocks = list(read.ReadRangeFn(4).process(pack, {}))
    assert sum(b.blank_lines for b in blocks) == sum(
        Path(p).read_bytes().count(b"\n\n") for p, _ in files
    )


def test_a_truncated_gzip_file_in_a_pack_is_quarantined_and_the_others_read(
    tmp_path: Path,
) -> None:
    plain = _small_files(tmp_path, [5])[0]
    bad = _write_raw(tmp_path / "b.jsonl.gz", GZIPPED[: len(GZIPPED) // 2])
    (pack,) = read.plan_work([plain, (bad, 100)], range_bytes=10_000)
    out = list(read.ReadRangeFn(1000).process(pack, {}))
    stats = [o for o in out if isinstance(o, TaggedOutput)]
    blocks = [o for o in out if isinstance(o, RawBlock)]
    assert [s.value[f"incomplete:TRUNCATED:{bad}"] for s in stats] == [1]
    assert [b.source_of(i) for b in blocks for i in range(len(b.payloads))] == [plain[0]] * 5


def test_a_packed_block_pickles_with_its_files() -> None:
    block = RawBlock.packed(
        [RawBlock("a", [b"1", b"2"], [1, 2]), RawBlock("b", [b"3"], [1], blank_lines=2)]
    )
    again = pickle.loads(pickle.dumps(block))
    assert [again.source_of(i) for i in range(3)] == ["a", "a", "b"]
    assert again.sources_of([2, 0]) == ["b", "a"]
    assert again.blank_lines == 2


# --- runs of lines, for any bytes, chunking, ranges and limit ------------------------------


def _lines_starting_in(data: bytes, start: int, end: int | None, limit: int) -> list[Any]:
    """The contract of `iter_lines`, from the whole data at once: each line that starts in
    [start, end) with its number, a leading BOM left out of line 1, a line over `limit` cut to
    one byte past it."""
    bom = len(read.UTF8_BOM) if data.startswith(read.UTF8_BOM) else 0
    out, at = [], 0
    pieces = data.split(b"\n")
    for number, piece in enumerate(pieces, start=1):
        last = number == len(pieces)
        if last and piece == b"":
            break  # a final newline does not start another line
        line = piece[bom:] if number == 1 else piece
        if start <= at and (end is None or at < end) and not (last and line == b""):
            out.append((number, line[: limit + 1] if len(line) > limit else line))
        at += len(piece) + 1
    return out


@given(
    data=st.lists(
        st.sampled_from([b"a", b"bc", b"\n", b"\n", b" ", b"\r", b"\xef\xbb"]), max_size=40
    ).map(b"".join),
    bom=st.booleans(),
    chunk=st.integers(1, 9),
    limit=st.integers(1, 12),
    cut=st.tuples(st.integers(0, 70), st.integers(0, 70)),
    counted=st.booleans(),
)
def test_runs_of_lines_are_the_lines_each_range_owns_for_any_bytes_chunks_and_limit(
    data: bytes, bom: bool, chunk: int, limit: int, cut: tuple[int, int], counted: bool
) -> None:
    data = (read.UTF8_BOM if bom else b"") + data
    start, end = min(cut), max(cut)
    known = data[:start].count(b"\n") if counted else None
    with (
        mock.patch.object(read, "_CHUNK", chunk),
        mock.patch.object(read, "MAX_HELD_LINE_BYTES", limit),
    ):
        for stop in (end, None):
            runs = list(read.iter_line_runs(io.BytesIO(data), start, stop, known))
            lines = [(first + i, line) for first, run in runs for i, line in enumerate(run)]
            assert all(run for _, run in runs)
            assert lines == _lines_starting_in(data, start, stop, limit)


def _blocks_line_by_line(path: str, data: bytes, block_events: int) -> list[RawBlock]:
    """read_blocks' contract, one line at a time: a blank line counts in the block being
    filled, a block is given as soon as it is full."""
    blocks, payloads, numbers, blank = [], [], [], 0
    for number, line in iter_lines(io.BytesIO(data), 0, None):
        if not line.strip():
            blank += 1
            continue
        payloads.append(line)
        numbers.append(number)
        if len(payloads) >= block_events:
            blocks.append(RawBlock(path, payloads, line_numbers=numbers, blank_lines=blank))
            payloads, numbers, blank = [], [], 0
    if payloads or blank:
        blocks.append(RawBlock(path, payloads, line_numbers=numbers, blank_lines=blank))
    return blocks


@given(
    lines=st.lists(st.sampled_from([b"a", b"bc", b"", b" ", b"\r", b"d"]), max_size=30),
    block_events=st.integers(1, 5),
    chunk=st.integers(1, 9),
)
def test_blocks_hold_the_lines_and_blank_counts_a_line_by_line_reading_gives(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], block_events: int, chunk: int
) -> None:
    data = b"\n".join(lines)
    path = tmp_path_factory.mktemp("blocks") / "in.jsonl"
    path.write_bytes(data)
    rng = ByteRange(str(path), 0, None, False)
    with mock.patch.object(read, "_CHUNK", chunk):
        assert list(read_blocks(rng, block_events)) == _blocks_line_by_line(
            str(path), data, block_events
        )
