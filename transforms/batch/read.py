"""Read newline-delimited raw events as blocks, splitting large files into byte ranges.

A plain file is cut into ranges so many workers share it (on Dataflow a Reshuffle spreads the
ranges); a gzip file cannot be entered mid-stream, so it is one range. A range owns the lines
that *start* inside it, so every line is read exactly once whatever the range size.

A UTF-8 byte-order mark at the very start of a file (what Windows tools write) is skipped; it
can only be in the range that starts at byte 0 (of the decompressed stream, for gzip). A mark
anywhere else stays part of its line, which is then rejected as malformed JSON.

A compressed file is taken whole or not at all. Beam's own reader takes a gzip file cut off
mid-transfer for a complete one (it never checks that the stream ended), so compressed files
are decompressed here, over Beam's filesystems, by a reader that requires every member to end
with a valid end-of-stream marker (for gzip: its CRC-32 and length checked). Each one is first
decompressed once to the end without emitting anything: a truncated or corrupt file, or one
not in the format its name says, is quarantined (counted as an incomplete input with its
fault, none of its lines read) while the other files of the run go on. Only a file that
passed is read for its events, by the same checking reader: if it fails then (rewritten while
the run read it), the run fails and commits nothing.
"""

from __future__ import annotations

import bz2
import io
import logging
import lzma
import zlib
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import IO, Any, NamedTuple, cast

import apache_beam as beam
import zstandard
from apache_beam import pvalue
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.enums import InputFault
from transforms.core import stats as st
from transforms.core.outputs import Output
from transforms.core.rawblock import RawBlock

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
# Compressed bytes read at a time. gzip and deflate are inflated at most _CHUNK at a time, so a
# highly compressible stream cannot balloon in memory.
_RAW_CHUNK = 1024 * 1024
# Inflated at a time when checking a file: the output of the call that meets a fault is lost,
# so this bounds how far short of the truth `lines_before_fault` can fall.
_CHECK_CHUNK = 256 * 1024
# The bytes each format starts with, where it has any: a file without them is not that format.
_MAGIC = {
    CompressionTypes.GZIP: b"\x1f\x8b",
    CompressionTypes.BZIP2: b"BZh",
    CompressionTypes.ZSTD: b"\x28\xb5\x2f\xfd",
}
_ZLIB_FORMATS = (CompressionTypes.GZIP, CompressionTypes.DEFLATE)
_DECOMPRESSION_ERRORS = (zlib.error, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError)
# What zlib's terse messages mean for a gzip file.
_GZIP_CHECKS = {
    "incorrect data check": "its CRC-32 does not match the one in its gzip trailer",
    "incorrect length check": "its length does not match the one (ISIZE) in its gzip trailer",
}
# The manifest's explanation of each fault, what an operator reads.


@dataclass(frozen=True)
class ByteRange:
    """Lines of `path` starting in [start, end); end None means to the end of the file."""

    path: str
    start: int
    end: int | None
    compressed: bool


@dataclass(frozen=True)
class FilePack:
    """Whole small files read as one work item, their lines packed into full blocks: each block
    costs the same ~4 ms whatever its size, and a landing folder of a channel's small files a
    day would otherwise be hundreds of nearly empty blocks (benchmarks/RESULTS.md, #11)."""

    ranges: tuple[ByteRange, ...]


def compression_of(path: str) -> str:
    """The CompressionTypes value a file's name says it has (UNCOMPRESSED for none)."""
    return str(CompressionTypes.detect_compression_type(path))


def is_compressed(path: str) -> bool:
    return bool(compression_of(path) != CompressionTypes.UNCOMPRESSED)


class CompressedStreamError(Exception):
    """A compressed stream without a valid end: truncated, corrupt or not in its format."""

    def __init__(self, fault: InputFault, detail: str) -> None:
        super().__init__(f"{fault.value}: {detail}")
        self.fault = fault
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return CompressedStreamError, (self.fault, self.detail)


class InputChanged(RuntimeError):
    """A compressed input that passed its completeness check failed when read for its events:
    some of its events may already be downstream, so the run must fail, committing nothing."""


@dataclass(frozen=True)
class IncompleteInput:
    """A compressed input quarantined whole: why, and how many lines it held before the fault
    (decompressed, never read as events)."""

    path: str
    fault: InputFault
    detail: str
    lines_before_fault: int

    def stats(self) -> dict[str, int]:
        """How the run's statistics carry it to the manifest (transforms.core.stats)."""
        return {
            st.incomplete_key(self.fault.value, self.path): 1,
            st.incomplete_lines_key(self.path): self.lines_before_fault,
        }


def _decompressor(compression: str) -> Any:
    if compression == CompressionTypes.GZIP:
        return zlib.decompressobj(zlib.MAX_WBITS | 16)  # checks the trailer's CRC-32 and ISIZE
    if compression == CompressionTypes.DEFLATE:
        return zlib.decompressobj()
    if compression == CompressionTypes.BZIP2:
        return bz2.BZ2Decompressor()
    if compression == CompressionTypes.LZMA:
        return lzma.LZMADecompressor()
    if compression == CompressionTypes.ZSTD:
        # Beam's own bound on the window (a larger one can exhaust a worker's memory).
        return zstandard.ZstdDecompressor(max_window_size=2**31).decompressobj()
    raise ValueError(f"not a compression type: {compression!r}")


def _corrupt(compression: str, error: Exception) -> CompressedStreamError:
    text = str(error)
    known = next((v for k, v in _GZIP_CHECKS.items() if k in text), None)
    if compression == CompressionTypes.GZIP and known:
        return CompressedStreamError(InputFault.CORRUPT, known)
    return CompressedStreamError(InputFault.CORRUPT, f"invalid {compression} data ({text})")


def decompressed_chunks(raw: IO[bytes], compression: str, chunk: int = _CHUNK) -> Iterator[bytes]:
    """The decompressed bytes of a compressed stream, in chunks of at most `chunk` for gzip.

    Raises CompressedStreamError, once the chunks before the fault are out, unless every
    member of the stream (concatenated members are one stream, as gzip and Beam read them)
    ends with a valid end-of-stream marker; an empty file is truncated."""
    decompressor = _decompressor(compression)
    bounded = compression in _ZLIB_FORMATS
    started = False
    data = b""
    while True:
        if not data:
            data = raw.read(_RAW_CHUNK)
            if not data:
                break
            if not started:
                magic = _MAGIC.get(compression, b"")
                if not data.startswith(magic[: len(data)]):
                    detail = f"it does not start as {compression} data does"
                    raise CompressedStreamError(InputFault.NOT_COMPRESSED, detail)
                started = True
        if decompressor.eof:  # a member ended: what follows is the next member
            if compression == CompressionTypes.GZIP:
                data = data.lstrip(b"\0")  # NUL padding after a member (gzip(1) allows it)
                if not data:
                    continue
            decompressor = _decompressor(compression)
        try:
            out = decompressor.decompress(data, chunk) if bounded else decompressor.decompress(data)
        except _DECOMPRESSION_ERRORS as error:
            raise _corrupt(compression, error) from error
        if decompressor.eof:
            data = decompressor.unused_data
        else:
            data = decompressor.unconsumed_tail if bounded else b""
        if out:
            yield out
    if bounded and not decompressor.eof:
        try:  # output zlib held back for want of room, and the end marker, if it came
            out = decompressor.flush()
        except _DECOMPRESSION_ERRORS as error:
            raise _corrupt(compression, error) from error
        if out:
            yield out
    if not started:
        raise CompressedStreamError(InputFault.TRUNCATED, "the file is empty")
    if not decompressor.eof:
        detail = "the compressed stream ends before its end-of-stream marker"
        raise CompressedStreamError(InputFault.TRUNCATED, detail)


class _DecompressedReader(io.RawIOBase):
    """A readable stream over decompressed chunks, for iter_lines."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if not self._pending:
            self._pending = next(self._chunks, b"")
        if size is None or size < 0 or size >= len(self._pending):
            out, self._pending = self._pending, b""
        else:
            out, self._pending = self._pending[:size], self._pending[size:]
        return out


def check_complete(path: str) -> IncompleteInput | None:
    """Decompress a compressed file to its end: None if it is complete, else why not."""
    lines, tail = 0, b"\n"
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        try:
            for chunk in decompressed_chunks(raw, compression_of(path), _CHECK_CHUNK):
                lines += chunk.count(b"\n")
                tail = chunk[-1:]
        except CompressedStreamError as error:
            partial = 0 if tail == b"\n" else 1  # a last line cut short is a line too
            return IncompleteInput(path, error.fault, error.detail, lines + partial)
    return None


def plan_ranges(path: str, size: int, range_bytes: int = DEFAULT_RANGE_BYTES) -> list[ByteRange]:
    """Byte ranges covering a file: one for compressed or small files, several otherwise."""
    if is_compressed(path) or size <= range_bytes:
        return [ByteRange(path, 0, None, is_compressed(path))]
    starts = list(range(0, size, range_bytes))
    ends: list[int | None] = [*starts[1:], None]
    return [ByteRange(path, s, e, False) for s, e in zip(starts, ends, strict=True)]


def plan_work(
    files: Iterable[tuple[str, int]], range_bytes: int = DEFAULT_RANGE_BYTES
) -> list[ByteRange | FilePack]:
    """The read's work items: the ranges of each large file (`plan_ranges`), and the files
    read whole packed together, in listing order, up to `range_bytes` a pack."""
    work: list[ByteRange | FilePack] = []
    pack: list[ByteRange] = []
    packed_bytes = 0

    def close_pack() -> None:
        if pack:
            work.append(pack[0] if len(pack) == 1 else FilePack(tuple(pack)))
            pack.clear()

    for path, size in files:
        ranges = plan_ranges(path, size, range_bytes)
        if len(ranges) > 1:
            work.extend(ranges)
            continue
        if packed_bytes + size > range_bytes:
            close_pack()
            packed_bytes = 0
        pack.append(ranges[0])
        packed_bytes += size
    close_pack()
    return work


def _cut(block: RawBlock, count: int) -> tuple[RawBlock, RawBlock | None]:
    """The first `count` payloads of a one-file block (with its blank lines), and the rest."""
    if count >= len(block.payloads):
        return block, None
    numbers = block.line_numbers or []
    head = RawBlock(
        block.source, block.payloads[:count], numbers[:count], blank_lines=block.blank_lines
    )
    return head, RawBlock(block.source, block.payloads[count:], numbers[count:])


def packed_blocks(items: Iterable[Any], block_events: int) -> Iterator[Any]:
    """Blocks of consecutive files' lines, `block_events` payloads each but the last; anything
    else among `items` (a quarantined file's stats) passes through."""
    pending: list[RawBlock] = []
    count = 0
    for item in items:
        if not isinstance(item, RawBlock):
            yield item
            continue
        rest: RawBlock | None = item
        while rest is not None:
            head, rest = _cut(rest, block_events - count)
            pending.append(head)
            count += len(head.payloads)
            if count >= block_events:
                yield RawBlock.packed(pending)
                pending, count = [], 0
    if pending:
        yield RawBlock.packed(pending)


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
    for first, lines in iter_line_runs(handle, start, end, newlines_before):
        yield from enumerate(lines, first)


def _bounded(lines: list[bytes]) -> list[bytes]:
    """Lines over MAX_HELD_LINE_BYTES cut to one byte past it: rejected as too long, unread."""
    if max(map(len, lines)) <= MAX_HELD_LINE_BYTES:
        return lines
    return [line[: MAX_HELD_LINE_BYTES + 1] for line in lines]


def _line_starts(first: int, position: int, pieces: list[bytes]) -> list[int]:
    """Where each ended line of a chunk read at `position` starts: the first where it began
    (`first`, in an earlier chunk when it was held), the others after each newline."""
    starts = list(accumulate((len(piece) + 1 for piece in pieces[:-1]), initial=position))
    starts[0] = first
    return starts


def iter_line_runs(
    handle: IO[bytes], start: int, end: int | None, newlines_before: int | None = None
) -> Iterator[tuple[int, list[bytes]]]:
    """The lines of `iter_lines` as runs of consecutive lines: (number of the first, lines).

    A run is the whole lines of one read chunk, split by `bytes.split` and cut at `end` by
    their offsets, so no Python code runs per line: reading a line one at a time cost ~1.2 µs
    (issue #11), about a tenth of all the work the bulk path then does on it.
    """
    if newlines_before is None:
        newlines, position, last = _skip_to(handle, start)
    else:
        newlines, position, last = newlines_before, start, _seek_to(handle, start)
    line_no = newlines + 1
    skipping_partial = start > 0 and last != b"\n"  # the previous range owns that line
    held = b""  # the line begun and not ended yet, at most one byte past the limit
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
        tail = pieces.pop()  # not ended by a newline in this chunk
        if pieces:
            first_start, line_start = line_start, position + len(chunk) - len(tail)
            last_start = first_start if len(pieces) == 1 else line_start - len(pieces[-1]) - 1
            cut = len(pieces)  # the ended lines that start before `end`
            if end is not None and last_start >= end:
                cut = bisect_left(_line_starts(first_start, position, pieces), end)
            pieces[0] = held + pieces[0]
            held = b""
            skip = int(skipping_partial)  # the previous range owns the first line
            skipping_partial = False
            cut = max(cut, skip)
            if cut > skip:
                yield (
                    line_no + skip,
                    _bounded(pieces if cut - skip == len(pieces) else pieces[skip:cut]),
                )
            line_no += cut
            if cut < len(pieces):
                return
        held += tail
        if len(held) > MAX_HELD_LINE_BYTES:
            held = held[: MAX_HELD_LINE_BYTES + 1]
        position += len(chunk)
    if held and not skipping_partial and (end is None or line_start < end):
        yield line_no, [held]


def _non_blank_runs(first: int, lines: list[bytes]) -> Iterator[tuple[int, int, list[bytes]]]:
    """(blank lines before, number of the first, consecutive non-blank lines) of a run, in
    order; the last may hold no line (the blanks that end the run). A run without a blank
    line, nearly every one, is itself: no Python code runs per line."""
    if all(map(bytes.strip, lines)):
        yield 0, first, lines
        return
    blanks, start = 0, 0
    for index, line in enumerate(lines):
        if not line.strip():
            if index > start:
                yield blanks, first + start, lines[start:index]
                blanks = 0
            blanks += 1
            start = index + 1
    yield blanks, first + start, lines[start:]


def read_blocks(
    rng: ByteRange, block_events: int = DEFAULT_BLOCK_EVENTS, newlines_before: int | None = None
) -> Iterator[RawBlock]:
    """Raw blocks of at most `block_events` non-blank lines from one byte range. A compressed
    file without a valid end of stream raises CompressedStreamError after its last block."""
    payloads: list[bytes] = []
    numbers: list[int] = []
    blank = 0
    with FileSystems.open(rng.path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
        handle = (
            cast(IO[bytes], _DecompressedReader(decompressed_chunks(raw, compression_of(rng.path))))
            if rng.compressed
            else raw
        )
        for first, lines in iter_line_runs(handle, rng.start, rng.end, newlines_before):
            for blanks, number, run in _non_blank_runs(first, lines):
                blank += blanks  # a blank line holds no event; counted, not rejected
                taken = 0
                while taken < len(run):
                    room = min(block_events - len(payloads), len(run) - taken)
                    payloads += run[taken : taken + room]
                    numbers += range(number + taken, number + taken + room)
                    taken += room
                    if len(payloads) >= block_events:
                        yield RawBlock(rng.path, payloads, line_numbers=numbers, blank_lines=blank)
                        payloads, numbers, blank = [], [], 0
    if payloads or blank:
        yield RawBlock(rng.path, payloads, line_numbers=numbers, blank_lines=blank)


FILE_STATS = Output.FILE_STATS.value


class ReadRangeFn(beam.DoFn):  # type: ignore[misc]
    """ByteRange or FilePack -> RawBlocks, logging progress per range; the stats of a
    compressed file quarantined as incomplete (tagged FILE_STATS) instead of any block of it."""

    def __init__(self, block_events: int) -> None:
        self._block_events = block_events

    def process(
        self, work: ByteRange | FilePack, newlines_before: Mapping[tuple[str, int], int]
    ) -> Iterator[Any]:
        if isinstance(work, ByteRange):
            yield from self._read(work, newlines_before)
            return
        files = (item for rng in work.ranges for item in self._read(rng, newlines_before))
        yield from packed_blocks(files, self._block_events)

    def _read(
        self, rng: ByteRange, newlines_before: Mapping[tuple[str, int], int]
    ) -> Iterator[Any]:
        if rng.compressed:
            incomplete = check_complete(rng.path)
            if incomplete is not None:
                log.error(
                    "input %s quarantined, none of it read: %s: %s (%s lines before the "
                    "fault are not counted); the run goes on without it. Have the file "
                    "delivered again, then re-run its day.",
                    rng.path,
                    incomplete.fault.value,
                    incomplete.detail,
                    f"{incomplete.lines_before_fault:,}",
                )
                beam.metrics.Metrics.counter("read", "incomplete_files").inc()
                yield pvalue.TaggedOutput(FILE_STATS, incomplete.stats())
                return
        events = 0
        known = newlines_before.get((rng.path, rng.start)) if rng.start else 0
        try:
            for block in read_blocks(rng, self._block_events, known):
                events += len(block.payloads)
                yield block
        except CompressedStreamError as error:
            raise InputChanged(
                f"{rng.path}: {error} when read for its events, after it had passed its "
                "completeness check: was it rewritten while the run read it? The run "
                "commits nothing; re-run it"
            ) from error
        log.info("read %s events from %s [%s, %s)", f"{events:,}", rng.path, rng.start, rng.end)
        beam.metrics.Metrics.counter("read", "events").inc(events)


class ReadResult(NamedTuple):
    blocks: beam.PCollection  # RawBlocks
    stats: beam.PCollection  # stats of the compressed files quarantined as incomplete


class ReadRawBlocks(beam.PTransform):  # type: ignore[misc]
    """Matched input files -> RawBlocks, spread over workers by byte range, and the stats of
    the compressed files quarantined as incomplete."""

    def __init__(
        self,
        files: list[tuple[str, int]],
        range_bytes: int = DEFAULT_RANGE_BYTES,
        block_events: int = DEFAULT_BLOCK_EVENTS,
    ) -> None:
        super().__init__()
        self._work = plan_work(files, range_bytes)
        self._block_events = block_events

    def expand(self, pbegin: beam.pvalue.PBegin) -> ReadResult:
        ranges = (
            pbegin | "ByteRanges" >> beam.Create(self._work) | "SpreadRanges" >> (beam.Reshuffle())
        )
        # Line numbers for ranges that start mid-file: every range counts its own newlines
        # (in parallel, one pass over the file), and the counts of the ranges before it add up
        # to its first line number. Counting from the file start in each range would read the
        # file over and over, a real cost on GCS.
        newlines_before = (
            ranges
            | "CountNewlines" >> beam.FlatMap(_own_newlines)
            | "GroupCountsByFile" >> beam.GroupByKey()
            | "LinesBeforeRange" >> beam.FlatMap(_lines_before_each_range)
        )
        read = ranges | "ReadBlocks" >> beam.ParDo(
            ReadRangeFn(self._block_events), newlines_before=beam.pvalue.AsDict(newlines_before)
        ).with_outputs(FILE_STATS, main=Output.BLOCKS.value)
        return ReadResult(read.blocks, read[FILE_STATS])


def _own_newlines(work: ByteRange | FilePack) -> list[tuple[str, tuple[int, int]]]:
    """(path, (end, newlines in it)) of a range that ends mid-file; nothing for a range to the
    end of its file, or a pack of whole files (they start at line 1)."""
    if isinstance(work, FilePack) or work.end is None:
        return []
    return [(work.path, (work.end, count_newlines(work.path, work.start, work.end)))]


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
