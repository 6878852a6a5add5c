"""The privacy rule applied to Arrow columns: screening accepted rows, and the last check of
every staged file before it is published.

Both use the same two steps: a vectorised pre-filter (RE2 through `pyarrow.compute`, tens of
nanoseconds a value) keeps only the values whose digits could hold a secret, and the rule of
`transforms.privacy` decides on those few in Python.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from transforms.privacy import (
    Secrets,
    Strength,
    ascii_digits,
    find_secrets,
    raw_findings,
    redact_text,
)
from transforms.storage import read_bytes

# Columns the event_id is built from, or that the product keys by: a secret there rejects the
# event; grouped digits count as a card only in three or more groups (transforms.privacy).
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
# (transforms.privacy). RE2 compiles these Unicode classes in ~1.6 ms, which pyarrow pays on
# every call: callers pre-filter many columns in one call.
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


_PATTERNS = {
    Strength.IDENTIFIER: (_CARD_IN_IDENTIFIER, _ascii(_CARD_IN_IDENTIFIER)),
    Strength.FREE_TEXT: (_CHAIN_OF_9, _ascii(_CHAIN_OF_9)),
}


def candidates(
    values: pa.Array | pa.ChunkedArray, strength: Strength, unicode_regex: bool = True
) -> list[int]:
    """Rows whose value the rule must read (the others cannot hold a secret).

    With `unicode_regex` (the scanner: one call for many files), one Unicode pattern. Without
    (a block's columns: a call per block), ASCII values get the cheap ASCII pattern and the few
    others (Arabic site names, digits of other scripts) all go to the rule.
    """
    unicode_pattern, ascii_pattern = _PATTERNS[strength]
    if len(values) == 0:
        return []  # pyarrow 2x crashes on compute over a chunked array without chunks
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if unicode_regex:
        hit = pc.fill_null(pc.match_substring_regex(values, unicode_pattern), False)
    else:
        is_ascii = pc.fill_null(pc.string_is_ascii(values), True)
        ascii_hit = pc.fill_null(pc.match_substring_regex(values, ascii_pattern), False)
        hit = pc.or_(pc.and_(is_ascii, ascii_hit), pc.invert(is_ascii))
    return [int(i) for i in pc.indices_nonzero(hit).to_pylist()]


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
            "This is a defect of the redaction rule (transforms/privacy.py): report it with the "
            "file, column and row, which locate the input event without copying its value."
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
    return [(i % n, names[i // n]) for i in candidates(joined, strength, unicode_regex=False)]


def cpr_in_identifiers(
    cpr: str | None, event_id: str, service_code: str, kiosk_id: str | None
) -> str | None:
    """The name of the first identifier holding the payer's CPR in any form (digit groups,
    scripts), or None: the reference rule, per event, that `cprs_in_identifiers` computes a
    block at a time (and falls back to for the values it cannot vectorise)."""
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


# Digit strings up to this long are compared window by window in columns (one compute call per
# window position); the rare longer one goes to `cpr_in_identifiers`.
_MAX_VECTOR_DIGITS = 40
_CPR_DIGITS = 9


def _cpr_windows(digits: pa.Array, cprs: pa.Array, longest: int) -> pa.Array:
    """Per row: is the row's CPR one of the 9-digit windows of its digit string."""
    hit = pa.array([False] * len(digits), pa.bool_())
    for start in range(longest - _CPR_DIGITS + 1):
        window = pc.utf8_slice_codeunits(digits, start, start + _CPR_DIGITS)
        hit = pc.or_(hit, pc.fill_null(pc.equal(window, cprs), False))
    return hit


def cprs_in_identifiers(table: pa.Table, cprs: Sequence[str | None]) -> dict[int, str]:
    """{row: first identifier column holding that row's payer CPR}, for a block of accepted
    rows: what `cpr_in_identifiers` says row by row, in columns.

    No compute function tests a per-row substring, but a CPR is nine digits: it is in a digit
    string exactly when it equals one of the string's 9-digit windows, and identifiers are
    short, so a few vectorised comparisons replace a Python call per event. Values that are not
    ASCII (digits of other scripts) or have more digits than `_MAX_VECTOR_DIGITS` take the
    reference rule.
    """
    found: dict[int, str] = {}
    if table.num_rows == 0:
        return found
    wanted = pa.array(cprs, pa.string())
    has_cpr = pc.is_valid(wanted)
    for name in _IDENTIFIERS:
        values = table.column(name).combine_chunks()
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        digits = pc.replace_substring_regex(values, "[^0-9]+", "")
        length = pc.fill_null(pc.binary_length(digits), 0)
        is_ascii = pc.fill_null(pc.string_is_ascii(values), True)
        vector = pc.and_(is_ascii, pc.less_equal(length, _MAX_VECTOR_DIGITS))
        reach = pc.and_(has_cpr, pc.greater_equal(length, _CPR_DIGITS))
        longest = pc.max(pc.if_else(pc.and_(reach, vector), length, 0)).as_py() or 0
        hit = _cpr_windows(digits, wanted, longest)
        for row in pc.indices_nonzero(pc.and_(pc.and_(reach, vector), hit)).to_pylist():
            found.setdefault(row, name)
        by_rule = pc.and_(pc.and_(has_cpr, pc.is_valid(values)), pc.invert(vector))
        for row in pc.indices_nonzero(by_rule).to_pylist():
            cpr = cprs[row]
            if cpr is not None and cpr.encode() in _digits(values[row].as_py()):
                found.setdefault(row, name)
    return dict(sorted(found.items()))


def screen_accepted(table: pa.Table, cprs: Sequence[str | None]) -> tuple[pa.Table, dict[int, str]]:
    """Accepted rows with their free text redacted, and the rows to reject instead.

    Returns (table with free-text columns redacted, {row: column} of rows whose identifier
    column holds a card number or the row's payer CPR). The caller removes those rows.
    """
    if table.num_rows == 0:
        return table, {}
    rejected = cprs_in_identifiers(table, cprs)
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


def _as_large_string(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column if pa.types.is_large_string(column.type) else column.cast(pa.large_string())


def _scan_batch(
    named: Sequence[tuple[pa.Table, str]], pieces: list[tuple[int, int, str, pa.ChunkedArray]]
) -> dict[int, list[tuple[int, int, Leak]]]:
    """Leaks of one batch of columns ((table, position, name, values)), by table."""
    found: dict[int, dict[tuple[str, int], tuple[int, int, Leak]]] = {}
    by_strength: dict[Strength, list[tuple[int, int, str, pa.ChunkedArray]]] = {}
    for piece in pieces:
        strength = strength_of(piece[2])
        if strength is not None and len(piece[3]):
            by_strength.setdefault(strength, []).append(piece)
    for strength, group in by_strength.items():
        values = pa.chunked_array(
            [chunk for *_, column in group for chunk in _as_large_string(column).chunks],
            pa.large_string(),
        )
        starts = list(accumulate((len(column) for *_, column in group), initial=0))
        for hit in candidates(values, strength):
            at = bisect_right(starts, hit) - 1
            table_index, position, name, column = group[at]
            row = hit - starts[at]
            text = column[row].as_py()
            leaks = found.setdefault(table_index, {})
            found_here = raw_findings(text) if name == RAW_COLUMN else find_secrets(text, strength)
            for finding in found_here:
                file = named[table_index][1]
                leaks.setdefault((name, row), (position, row, Leak(file, name, row, finding.kind)))
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


PARQUET_MAGIC = b"PAR1"
TEXT_COLUMN = "text"


_LINEAGE_COLUMNS = frozenset({"source_file", "source_line", "source_message_id"})


def _is_text(field: pa.Field) -> bool:
    value_type = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
    return bool(pa.types.is_string(value_type) or pa.types.is_large_string(value_type))


def read_back(path: str) -> pa.Table:
    """A written file as a table (local or gs://) of what the scan reads: a Parquet file's
    string and lineage columns, any other file as text, one row per line of a `text` column.
    A file that starts like Parquet but does not read as Parquet raises: it cannot be checked."""
    data = read_bytes(path)
    if data.startswith(PARQUET_MAGIC):
        parquet = pq.ParquetFile(pa.BufferReader(data))
        schema = parquet.schema_arrow
        wanted = [f.name for f in schema if _is_text(f) or f.name in _LINEAGE_COLUMNS]
        return parquet.read(columns=wanted)
    lines = data.decode("utf-8", "replace").splitlines()
    return pa.table({TEXT_COLUMN: pa.array(lines, pa.string())})


def _file_scan(path: str, table: pa.Table, leaks: list[Leak]) -> FileScan:
    origins = {leak.row: origin_of(table, leak.row) for leak in leaks}
    return FileScan(path, table.num_rows, leaks, {r: o for r, o in origins.items() if o})


def scan_file(path: str, name: str | None = None) -> FileScan:
    """Read a written file back (`read_back`) and scan every string column (nothing written
    goes unscanned). `name` is how leaks name the file (default: its path), e.g. the final
    path of a staged file."""
    table = read_back(path)
    return _file_scan(path, table, scan_table(table, name or path))


def scan_files(
    files: Sequence[tuple[str, str]],
    read: Callable[[str], pa.Table | None] = read_back,
    threads: int = 8,
    group: int = 64,
) -> list[FileScan]:
    """`scan_file(path, name)` for each (path, name), `group` files at a time: read by
    `threads` threads (on GCS a read is mostly waiting), pre-filtered together. `read` may
    return None for a file to skip (e.g. one already published by an earlier attempt)."""
    scans: list[FileScan] = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(files), group):
            batch = files[start : start + group]
            tables = list(pool.map(read, [path for path, _ in batch]))
            kept = [(f, t) for f, t in zip(batch, tables, strict=True) if t is not None]
            leaks = scan_tables([(table, name) for (_, name), table in kept])
            scans.extend(
                _file_scan(path, table, found)
                for ((path, _), table), found in zip(kept, leaks, strict=True)
            )
    return scans


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
