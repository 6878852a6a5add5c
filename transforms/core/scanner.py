"""The privacy rule applied to Arrow columns: screening accepted rows, and the last check of
every staged file before it is published.

Both use the same two steps: a vectorised pre-filter (RE2 through `pyarrow.compute`, tens of
nanoseconds a value) keeps only the values whose digits could hold a secret, and the rule of
`transforms.core.privacy` decides on those few in Python.
"""

from __future__ import annotations

import functools
import json
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.core.privacy import (
    Finding,
    Secrets,
    Strength,
    ascii_digits,
    find_secrets,
    raw_findings,
    redact_text,
)

# Columns the event_id is built from, or that the product keys by: a secret there rejects the
# event; grouped digits count as a card only in three or more groups (transforms.core.privacy).
IDENTIFIER_COLUMNS = frozenset({"event_id", "service_code", "kiosk_id", "reason"})
# Written by the product itself, never from what a producer sent: a keyed hash (32 hex
# characters, which hold 9-digit runs by chance), Pub/Sub's numeric message ids, the run id.
SYSTEM_COLUMNS = frozenset({"payer_key", "source_file", "source_message_id", "run_id"})
RAW_COLUMN = "raw"
# Free text of accepted payments that comes from the producer, redacted in place.
FREE_TEXT_COLUMNS = ("kiosk_site", "app_id", "app_version")
_IDENTIFIERS = ("event_id", "service_code", "kiosk_id")

# A chain of at least 9 digits joined only by non-alphanumeric characters: the shortest that
# can hold a CPR; 13 digits in one run, or three groups: the least a card in an identifier has
# (transforms.core.privacy). The pre-filter runs them over ASCII values only (`_ascii`).
_CHAIN_OF_9 = r"\p{Nd}(?:[^\p{L}\p{N}]*\p{Nd}){8}"
# In an identifier the groups must also stand alone (not glued to letters) and be at most six
# digits long: a UUID's 8-4-4 decimal-hex runs, one UUID in five, no longer need Python.
_CARD_IN_IDENTIFIER = (
    r"\p{Nd}{13}"
    r"|(?:^|[^\p{L}\p{N}])\p{Nd}{1,6}(?:[^\p{L}\p{N}]+\p{Nd}{1,6}){2,}(?:$|[^\p{L}\p{N}])"
)
_NOT_ASCII_DIGITS = bytes(c for c in range(256) if not 0x30 <= c <= 0x39)


def strength_of(column: str) -> Strength | None:
    """How a column is read by the rule; None for columns the product itself writes."""
    if column in SYSTEM_COLUMNS:
        return None
    if column in IDENTIFIER_COLUMNS:
        return Strength.IDENTIFIER
    return Strength.FREE_TEXT


def _ascii(pattern: str) -> str:
    """The same pattern over ASCII text: [0-9] for digits, [A-Za-z0-9] for alphanumerics. RE2
    compiles Unicode classes in ~4 ms, which pyarrow pays on every call; these in ~0.1 ms."""
    return pattern.replace(r"[^\p{L}\p{N}]", "[^A-Za-z0-9]").replace(r"\p{Nd}", "[0-9]")


_ASCII = {
    Strength.IDENTIFIER: _ascii(_CARD_IN_IDENTIFIER),
    Strength.FREE_TEXT: _ascii(_CHAIN_OF_9),
}
_NINE_DIGITS = r"(?s)(?:\p{Nd}.*){9}"


def candidates(values: pa.Array | pa.ChunkedArray, strength: Strength) -> list[int]:
    """Rows whose value the rule must read (the others cannot hold a secret).

    One regex call per kind of value, each cheap to compile (RE2 compiles the strengths'
    Unicode patterns in ~4 ms, which pyarrow pays on every call: more than scanning a file):
    - ASCII values: the strength's pattern over [0-9] and [A-Za-z0-9] (~0.06 ms to compile);
    - other values (Arabic names, digits of other scripts): those with at least nine digits
      of any script, the fewest any secret has (~0.3 ms);
    - any value with a `\\u` escape, which can spell any digit (the rule decodes them).
    """
    if len(values) == 0:
        return []  # pyarrow 2x crashes on compute over a chunked array without chunks
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    is_ascii = pc.fill_null(pc.string_is_ascii(values), True)
    hit = pc.and_(is_ascii, pc.fill_null(pc.match_substring_regex(values, _ASCII[strength]), False))
    if not pc.all(is_ascii).as_py():
        many_digits = pc.fill_null(pc.match_substring_regex(values, _NINE_DIGITS), False)
        hit = pc.or_(hit, pc.and_(pc.invert(is_ascii), many_digits))
    escaped = pc.fill_null(pc.match_substring(values, "\\u"), False)
    return [int(i) for i in pc.indices_nonzero(pc.or_(hit, escaped)).to_pylist()]


@dataclass(frozen=True)
class Leak:
    """Where the scanner saw a secret: never the value itself."""

    file: str
    column: str
    row: int
    kind: str

    def __str__(self) -> str:
        return f"{self.file}: column {self.column!r}, row {self.row}: a {self.kind} number"


def string_columns(table: pa.Table) -> Iterator[tuple[str, pa.ChunkedArray]]:
    for field, column in zip(table.schema, table.columns, strict=True):
        value_type = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
            yield field.name, column


def scan_table(table: pa.Table, file: str) -> list[Leak]:
    """Every secret the rule sees in the string columns of one table (one per row and column)."""
    return scan_tables([(table, file)])[0]


class SecretInOutput(RuntimeError):
    """Staged output holds what the privacy rule forbids: the run must not publish it."""

    def __init__(self, leaks: Sequence[Leak]) -> None:
        shown = "; ".join(str(leak) for leak in leaks[:10])
        more = f" (and {len(leaks) - 10} more)" if len(leaks) > 10 else ""
        super().__init__(
            f"refusing to publish: the privacy scanner found {len(leaks)} secret(s) past "
            f"redaction: {shown}{more}. Nothing was published; the earlier output is intact. "
            "This is a defect of the redaction rule (transforms/core/privacy.py): report it with "
            "the file, column and row, which locate the input event without copying its value."
        )
        self.leaks = list(leaks)


# --- accepted rows ---------------------------------------------------------------------------


def _digits(text: str) -> bytes:
    """The digits of `text`, any script, as ASCII bytes (a C-level table walk when ASCII)."""
    if text.isascii():
        return text.encode().translate(None, _NOT_ASCII_DIGITS)
    return ascii_digits(text).encode()


def _candidates_in(
    table: pa.Table, names: Sequence[str], strength: Strength
) -> list[tuple[int, str]]:
    """(row, column) of the values of `names` the rule must read, in one pre-filter call."""
    n = table.num_rows
    joined = pa.concat_arrays([table.column(name).combine_chunks() for name in names])
    return [(i % n, names[i // n]) for i in candidates(joined, strength)]


def cpr_in_identifiers(
    cpr: str | None, event_id: str, service_code: str, kiosk_id: str | None
) -> str | None:
    """The name of the first identifier holding the payer's CPR in any form (digit groups,
    scripts), or None. No vectorised per-row substring test exists, so this runs per row: a
    byte-table walk a value (~0.3 µs; a version in columns, comparing the 9-digit windows of
    each value's digits to the row's CPR, measured 3x slower: pyarrow's regex replace that
    takes the digits alone costs ~0.4 µs a value)."""
    if cpr is None:
        return None
    wanted = cpr.encode()
    if wanted in _digits(event_id):
        return "event_id"
    if wanted in _digits(service_code):
        return "service_code"
    if kiosk_id is not None and wanted in _digits(kiosk_id):
        return "kiosk_id"
    return None


_CPR_DIGITS = 9


def _utf8_of(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(the UTF-8 bytes of every value, concatenated; each value's offsets into them), read
    straight from the string array's buffers, without a copy."""
    values = values.cast(pa.string()) if not pa.types.is_string(values.type) else values
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32, len(values) + 1, values.offset * 4)
    data = (
        np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.empty(0, np.uint8)
    )
    return data[offsets[0] : offsets[-1]], offsets - offsets[0]


def _ascii_digits_of(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(the ASCII digits of every value, concatenated; each value's offsets into them): a few
    vectorised passes over the values' bytes."""
    text, offsets = _utf8_of(values)
    is_digit = (text >= 0x30) & (text <= 0x39)
    before = np.concatenate(([0], np.cumsum(is_digit)))
    return text[is_digit], before[offsets]


def cprs_in_identifiers(table: pa.Table, cprs: Sequence[str | None]) -> dict[int, str]:
    """{row: first identifier column holding that row's payer CPR}: `cpr_in_identifiers` for a
    whole block, in numpy (measured ~4x faster than the per-row walk it replaces).

    A CPR is nine digits, so it is in a value's digits exactly when it equals one of their
    9-digit windows: every window of every value is compared with its row's CPR at once.
    Values that are not ASCII (digits of other scripts) take the per-row rule.
    """
    found: dict[int, str] = {}
    n = table.num_rows
    given = pa.array(cprs, pa.string())
    nine = pc.and_(pc.equal(pc.binary_length(given), _CPR_DIGITS), pc.string_is_ascii(given))
    regular = pc.fill_null(nine, False)
    has_cpr = regular.to_numpy(zero_copy_only=False)
    # Every row nine bytes (a placeholder where there is no CPR): one n x 9 matrix.
    padded = pc.if_else(regular, given, "-" * _CPR_DIGITS)
    cpr_bytes, _ = _utf8_of(padded)
    cpr_matrix = cpr_bytes.reshape(n, _CPR_DIGITS)
    odd = np.flatnonzero(pc.is_valid(given).to_numpy(zero_copy_only=False) & ~has_cpr).tolist()
    for name in _IDENTIFIERS:
        values = table.column(name).combine_chunks()
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        is_ascii = pc.fill_null(pc.string_is_ascii(values), True).to_numpy(zero_copy_only=False)
        valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
        digits, offsets = _ascii_digits_of(values)
        windows = np.where(has_cpr & valid & is_ascii, offsets[1:] - offsets[:-1] - 8, 0)
        windows = np.maximum(windows, 0)
        rows = np.repeat(np.arange(n), windows)
        first = np.repeat(offsets[:-1] - (np.cumsum(windows) - windows), windows)
        starts = first + np.arange(len(rows))
        match = np.ones(len(rows), bool)
        for k in range(_CPR_DIGITS):
            match &= digits[starts + k] == cpr_matrix[rows, k]
        for row in np.unique(rows[match]).tolist():
            found.setdefault(int(row), name)
        by_rule = np.flatnonzero(has_cpr & valid & ~is_ascii).tolist() + odd
        for row in by_rule:
            text = values[row].as_py()
            if text is not None and cpr_in_identifiers(cprs[row], text, "", None):
                found.setdefault(int(row), name)
    return dict(sorted(found.items()))


def screen_accepted(table: pa.Table, cprs: Sequence[str | None]) -> tuple[pa.Table, dict[int, str]]:
    """Accepted rows with their free text redacted, and the rows to reject instead.

    Returns (table with free-text columns redacted, {row: column} of rows whose identifier
    column holds the row's payer CPR (`cpr_in_identifiers`) or a card number). The caller
    removes those rows.
    """
    rejected: dict[int, str] = {}
    if table.num_rows == 0:
        return table, rejected
    rejected.update(cprs_in_identifiers(table, cprs))
    for row, name in _candidates_in(table, _IDENTIFIERS, Strength.IDENTIFIER):
        if find_secrets(table.column(name)[row].as_py(), Strength.IDENTIFIER):
            rejected.setdefault(row, name)
    free_text = _candidates_in(table, FREE_TEXT_COLUMNS, Strength.FREE_TEXT)
    for name in FREE_TEXT_COLUMNS:
        rows = [row for row, column in free_text if column == name]
        if not rows:
            continue
        column = table.column(name)
        values = column.to_pylist()
        for row in rows:
            cpr = cprs[row]
            known = Secrets(cprs={cpr}) if cpr else None
            values[row] = redact_text(values[row], Strength.FREE_TEXT, known)
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(name), pa.array(values, column.type))
    return table, rejected


# --- the last check of output before it is published ------------------------------------------


@dataclass(frozen=True)
class FileScan:
    """What reading one file back found: its rows, and the secrets in them."""

    path: str
    rows: int
    leaks: list[Leak]
    origins: dict[int, str]  # leaking row -> where its event came from (input file and line)


def origin_of(table: pa.Table, row: int) -> str | None:
    """Where a row's event came from, from the lineage columns the product writes itself
    (never a producer's value): `input FILE line N` or `message ID`. None without lineage."""
    names = set(table.column_names)
    if "source_file" in names and table["source_file"][row].as_py() is not None:
        line = table["source_line"][row].as_py() if "source_line" in names else None
        where = f"input {table['source_file'][row].as_py()}"
        return f"{where} line {line}" if line is not None else where
    if "source_message_id" in names and table["source_message_id"][row].as_py() is not None:
        return f"message {table['source_message_id'][row].as_py()}"
    return None


# Values pre-filtered together: RE2 compiles the pre-filter pattern on every pyarrow call
# (~3 ms, more than scanning 30,000 values), so columns and files are scanned in batches.
_BATCH_VALUES = 1_000_000


def _as_large_string(values: pa.Array) -> pa.Array:
    return values if pa.types.is_large_string(values.type) else values.cast(pa.large_string())


@dataclass(frozen=True)
class _Segment:
    """One chunk of a column as the scan reads it: its distinct values when the chunk is
    dictionary-encoded (as `read_back` reads Parquet: each value is checked once, however many
    rows repeat it), else its values, one per row."""

    piece: tuple[int, int, str]  # (table index, column position, column name)
    first_row: int  # the chunk's first row in its column
    values: pa.Array
    indices: pa.Array | None  # row -> value, for a dictionary chunk

    def rows_of(self, value: int) -> list[int]:
        if self.indices is None:
            return [self.first_row + value]
        rows = pc.indices_nonzero(pc.fill_null(pc.equal(self.indices, value), False))
        # A dictionary entry no row uses is still in the file: it is reported at its first row
        # (the chunk's) so that the file is refused all the same.
        return [self.first_row + int(r) for r in rows.to_pylist()] or [self.first_row]


def _segments(piece: tuple[int, int, str], column: pa.ChunkedArray) -> Iterator[_Segment]:
    first_row = 0
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            yield _Segment(piece, first_row, _as_large_string(chunk.dictionary), chunk.indices)
        else:
            yield _Segment(piece, first_row, _as_large_string(chunk), None)
        first_row += len(chunk)


def _scan_batch(
    named: Sequence[tuple[pa.Table, str]], pieces: list[tuple[int, int, str, pa.ChunkedArray]]
) -> dict[int, list[tuple[int, int, Leak]]]:
    """Leaks of one batch of columns ((table, position, name, values)), by table."""
    found: dict[int, dict[tuple[str, int], tuple[int, int, Leak]]] = {}
    by_strength: dict[Strength | str, list[_Segment]] = {}
    for table_index, position, name, column in pieces:
        strength: Strength | str | None = RAW_COLUMN if name == RAW_COLUMN else strength_of(name)
        if strength is not None:
            segments = by_strength.setdefault(strength, [])
            segments.extend(_segments((table_index, position, name), column))
    for strength, segments in by_strength.items():
        segments = [segment for segment in segments if len(segment.values)]
        if not segments:
            continue
        values = pa.chunked_array([segment.values for segment in segments], pa.large_string())
        starts = list(accumulate((len(segment.values) for segment in segments), initial=0))
        # A rejected row's raw text is read whole by the rule (its keys mask card and CPR
        # fields of any length, which no digit pattern pre-filters); such rows are few.
        rule: Callable[[str], list[Finding]] = raw_findings
        hits: Iterable[int] = range(len(values))
        if isinstance(strength, Strength):
            rule = functools.partial(find_secrets, strength=strength)
            hits = candidates(values, strength)
        for hit in hits:
            at = bisect_right(starts, hit) - 1
            segment = segments[at]
            value = hit - starts[at]
            text = segment.values[value].as_py()
            findings = rule(text) if text is not None else []
            if not findings:
                continue
            table_index, position, name = segment.piece
            leaks = found.setdefault(table_index, {})
            file = named[table_index][1]
            for row in segment.rows_of(value):
                for finding in findings:
                    leak = Leak(file, name, row, finding.kind)
                    leaks.setdefault((name, row), (position, row, leak))
    return {index: list(leaks.values()) for index, leaks in found.items()}


def scan_tables(named: Sequence[tuple[pa.Table, str]]) -> list[list[Leak]]:
    """`scan_table(table, name)` for each (table, name): the same leaks in the same order, with
    one pre-filter call per strength for a whole batch of columns and tables."""
    results: list[list[tuple[int, int, Leak]]] = [[] for _ in named]
    pieces: list[tuple[int, int, str, pa.ChunkedArray]] = []
    size = 0

    def flush() -> None:
        for index, leaks in _scan_batch(named, pieces).items():
            results[index].extend(leaks)
        pieces.clear()

    for index, (table, _) in enumerate(named):
        for position, (name, column) in enumerate(string_columns(table)):
            pieces.append((index, position, name, column))
            size += len(column)
            if size >= _BATCH_VALUES:
                flush()
                size = 0
    flush()
    return [[leak for *_, leak in sorted(leaks, key=lambda x: x[:2])] for leaks in results]


def scan_texts(texts: Sequence[str], file: str, column: str) -> list[Leak]:
    """Secrets in free text that is not a table column (the keys of a stats file), as leaks of
    one column whose rows are the texts' positions."""
    return scan_table(pa.table({column: pa.array(list(texts), pa.string())}), file)


def scan_message(data: bytes, origin: str, figures: frozenset[str] = frozenset()) -> list[Leak]:
    """Secrets in the text of one published message: every string value of a JSON object
    (`figures`: keys whose strings the product formats from numbers, e.g. an amount), or the
    whole text when it is not a JSON object. Leaks name the key as their column, row 0."""
    text = data.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return scan_table(pa.table({"message": pa.array([text], pa.string())}), origin)
    strings: dict[str, str] = {}

    def walk(value: object, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]")
        elif isinstance(value, str) and key not in figures:
            strings[key] = value

    walk(parsed, "")
    leaks = scan_texts(list(strings), origin, "message key")
    if strings:
        table = pa.table({k: pa.array([v], pa.string()) for k, v in strings.items()})
        leaks.extend(scan_table(table, origin))
    return leaks


_LEAK_TEXT = re.compile(
    r"(?P<file>\S+): column '(?P<column>[^']*)', row (?P<row>\d+): a (?P<kind>\w+) number"
)
REFUSAL_TEXT = "refusing to publish: the privacy scanner found"


def leaks_in_text(text: str) -> list[Leak]:
    """The leaks a SecretInOutput message names (at most ten of them), read back from its text:
    what a runner that passes on only the text of a worker's error still tells."""
    start = text.find(REFUSAL_TEXT)
    if start < 0:
        return []
    line = text[start:].split("\n", 1)[0]
    return [
        Leak(m["file"], m["column"], int(m["row"]), m["kind"]) for m in _LEAK_TEXT.finditer(line)
    ]
