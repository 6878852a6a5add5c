"""Read newline-delimited raw events as blocks, splitting large files into byte ranges.

A plain file is cut into ranges so many workers share it (on Dataflow a Reshuffle spreads the
ranges); a gzip file cannot be entered mid-stream, so it is one range. A range owns the lines
that *start* inside it, so every line is read exactly once whatever the range size.

A UTF-8 byte-order mark at the very start of a file (what Windows tools write) is skipped; it
can only be in the range that starts at byte 0 (of the decompressed stream, for gzip). A mark
anywhere else stays part of its line, which is then rejected as malformed JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.rawblock import RawBlock

log = logging.getLogger(__name__)

# Small enough that a large file spreads evenly over workers (64 MiB left one of two idle
# for a third of a 333 MB file), large enough that a range is worth a work item.
DEFAULT_RANGE_BYTES = 16 * 1024 * 1024
DEFAULT_BLOCK_EVENTS = 5_000
_CHUNK = 4 * 1024 * 1024
# A line longer than this is kept only up to here: it will be rejected as too long anyway, and
# holding a runaway multi-gigabyte "line" would exhaust the worker.
MAX_HELD_LINE_BYTES = 1024 * 1024
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class ByteRange:
    """Lines of `path` starting in [start, end); end None means to the end of the file."""

    path: str
    start: int
    end: int | None
    compressed: bool


def is_compressed(path: str) -> bool:
    return bool(CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED)


def plan_ranges(path: str, size: int, range_bytes: int = DEFAULT_RANGE_BYTES) -> list[ByteRange]:
    """Byte ranges covering a file: one for compressed or small files, several otherwise."""
    if is_compressed(path) or size <= range_bytes:
        return [ByteRange(path, 0, None, is_compressed(path))]
    starts = list(range(0, size, range_bytes))
    ends: list[int | None] = [*starts[1:], None]
    return [ByteRange(path, s, e, False) for s, e in zip(starts, ends, strict=True)]


def _read_counting(handle: IO[bytes], position: int, end: int) -> tuple[int, int, bytes]:
    """Read from `position` up to `end`: (newlines read, position reached, last byte read)."""
    newlines, last = 0, b"\n"
    while position < end:
        chunk = handle.read(min(_CHUNK, end - position))
        if not chunk:
            break
        newlines += chunk.count(b"\n")
        position += len(chunk)
        last = chunk[-1:]
    return newlines, position, last


def _skip_to(handle: IO[bytes], start: int) -> tuple[int, int, bytes]:
    """Advance to `start`; return (newlines before it, position, last byte before it)."""
    return _read_counting(handle, 0, start)


def _read_at_least(handle: IO[bytes], size: int) -> bytes:
    """The next `size` bytes of `handle` (fewer only at its end), however short its reads."""
    data = b""
    while len(data) < size:
        chunk = handle.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _seek_to(handle: IO[bytes], start: int) -> bytes:
    """Seek to `start`; return the byte before it (a newline at the start of the file)."""
    if start == 0:
        return b"\n"
    handle.seek(start - 1)
    return handle.read(1)


def count_newlines(path: str, start: int, end: int) -> int:
    """Newlines in bytes [start, end) of an uncompressed file."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.seek(start)
        newlines, _, _ = _read_counting(handle, start, end)
    return newlines


def iter_lines(
    handle: IO[bytes], start: int, end: int | None, newlines_before: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its newline) of each line starting in [start, end).

    `newlines_before` (newlines in bytes [0, start)) lets a seekable file be entered at `start`
    directly; without it the bytes before `start` are read and counted.
    """
    if newlines_before is None:
        newlines, position, last = _skip_to(handle, start)
    else:
        newlines, position, last = newlines_before, start, _seek_to(handle, start)
    line_no = newlines + 1
    skipping_partial = start > 0 and last != b"\n"  # the previous range owns that line
    held = b""
    held_overflow = False
    line_start = position
    # A byte-order mark can only open the file; line 1 still starts at byte 0.
    pending = _read_at_least(handle, len(UTF8_BOM)) if start == 0 else b""
    if pending.startswith(UTF8_BOM):
        pending = pending[len(UTF8_BOM) :]
        position += len(UTF8_BOM)
    while True:
        chunk, pending = pending or handle.read(_CHUNK), b""
        if not chunk:
            break
        pieces = chunk.split(b"\n")
        offset = position  # where the current piece starts
        for i, piece in enumerate(pieces):
            if i < len(pieces) - 1:  # this piece ends a line
                line = held + piece
                held, overflow, held_overflow = b"", held_overflow, False
                if skipping_partial:
                    skipping_partial = False
                    line_no += 1
                else:
                    if end is not None and line_start >= end:
                        return
                    if overflow or len(line) > MAX_HELD_LINE_BYTES:
                        line = line[: MAX_HELD_LINE_BYTES + 1]
                    yield line_no, line
                    line_no += 1
                offset += len(piece) + 1
                line_start = offset
            else:
                held += piece
                if len(held) > MAX_HELD_LINE_BYTES:
                    held, held_overflow = held[: MAX_HELD_LINE_BYTES + 1], True
        position += len(chunk)
    if held and not skipping_partial and (end is None or line_start < end):
        yield line_no, held


def read_blocks(
    rng: ByteRange, block_events: int = DEFAULT_BLOCK_EVENTS, newlines_before: int | None = None
) -> Iterator[RawBlock]:
    """Raw blocks of at most `block_events` non-blank lines from one byte range."""
    compression = CompressionTypes.AUTO if rng.compressed else CompressionTypes.UNCOMPRESSED
    payloads: list[bytes] = []
    numbers: list[int] = []
    blank = 0
    with FileSystems.open(rng.path, compression_type=compression) as handle:
        for line_no, line in iter_lines(handle, rng.start, rng.end, newlines_before):
            if not line.strip():
                blank += 1  # a blank line holds no event; counted, not rejected
                continue
            payloads.append(line)
            numbers.append(line_no)
            if len(payloads) >= block_events:
                yield RawBlock(rng.path, payloads, line_numbers=numbers, blank_lines=blank)
                payloads, numbers, blank = [], [], 0
    if payloads or blank:
        yield RawBlock(rng.path, payloads, line_numbers=numbers, blank_lines=blank)


class ReadRangeFn(beam.DoFn):  # type: ignore[misc]
    """ByteRange -> RawBlocks, logging progress per range."""

    def __init__(self, block_events: int) -> None:
        self._block_events = block_events

    def process(
        self, rng: ByteRange, newlines_before: Mapping[tuple[str, int], int]
    ) -> Iterator[RawBlock]:
        events = 0
        known = newlines_before.get((rng.path, rng.start)) if rng.start else 0
        for block in read_blocks(rng, self._block_events, known):
            events += len(block.payloads)
            yield block
        log.info("read %s events from %s [%s, %s)", f"{events:,}", rng.path, rng.start, rng.end)
        beam.metrics.Metrics.counter("read", "events").inc(events)


class ReadRawBlocks(beam.PTransform):  # type: ignore[misc]
    """Matched input files -> RawBlocks, spread over workers by byte range."""

    def __init__(
        self,
        files: list[tuple[str, int]],
        range_bytes: int = DEFAULT_RANGE_BYTES,
        block_events: int = DEFAULT_BLOCK_EVENTS,
    ) -> None:
        super().__init__()
        self._ranges = [r for path, size in files for r in plan_ranges(path, size, range_bytes)]
        self._block_events = block_events

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        ranges = (
            pbegin
            | "ByteRanges" >> beam.Create(self._ranges)
            | "SpreadRanges" >> (beam.Reshuffle())
        )
        # Line numbers for ranges that start mid-file: every range counts its own newlines
        # (in parallel, one pass over the file), and the counts of the ranges before it add up
        # to its first line number. Counting from the file start in each range would read the
        # file over and over, a real cost on GCS.
        newlines_before = (
            ranges
            | "CountNewlines"
            >> beam.FlatMap(
                lambda r: (
                    [(r.path, (r.end, count_newlines(r.path, r.start, r.end)))]
                    if r.end is not None
                    else []
                )
            )
            | "GroupCountsByFile" >> beam.GroupByKey()
            | "LinesBeforeRange" >> beam.FlatMap(_lines_before_each_range)
        )
        return ranges | "ReadBlocks" >> beam.ParDo(
            ReadRangeFn(self._block_events), newlines_before=beam.pvalue.AsDict(newlines_before)
        )


def _lines_before_each_range(
    element: tuple[str, Iterable[tuple[int, int]]],
) -> Iterator[tuple[tuple[str, int], int]]:
    """((path, range start), newlines before it) from each range's (end, own newline count):
    ranges are contiguous, so where one ends the next starts."""
    path, counts = element
    before = 0
    for end, newlines in sorted(counts):
        before += newlines
        yield (path, end), before
