"""Typed columns of canonical JSON lines, read from where their quotes are.

The bulk path (`transforms.core.bulk`) hands over only lines its grammar has proven: one
channel's members in the contract's order, strings without escapes or quotes inside, integers
as plain digits, whitespace only between tokens. Split at its quotes, such a line has a fixed
shape: every key and every string value is one quoted token, in an order the schema alone
decides, and an integer sits in the unquoted token after its key. So no JSON parse is needed:
numpy finds the block's quotes once, and each column is one Arrow `take` of the even values of
a string array over the block's own bytes whose values alternate between that column's
ranges and the gaps between them. On the benchmark's portal lines this took 2.0-2.7 µs a line
where Arrow's JSON reader, which it replaces on that path, took 3.1-4.0 (same process,
interleaved, issue #11). `tests/transforms/test_canonical.py` holds it equal to that reader.

Optional members (trailing, nullable strings: the portal's `gateway_ref`, a kiosk's `card` and
`cpr`) are told apart by their keys, each absent, `null` or a string.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_QUOTE = ord('"')
# What surrounds an integer in its token: the colon, whitespace, the comma or brace after it.
_AROUND_INTEGER = " \t\r:,{}"


@dataclass(frozen=True)
class _Column:
    """Where one leaf column is: the token holding its value (odd: a quoted string; even: the
    unquoted token after its key, for an integer)."""

    path: tuple[str, ...]
    token: int
    type: pa.DataType


def _leaves(schema: pa.Schema | pa.StructType, first_key: int) -> tuple[list[_Column], int]:
    """Each leaf's token, walking the members in order from the key at token `first_key`; and
    the token the next key would take."""
    leaves: list[_Column] = []
    key = first_key
    for field in schema:
        if pa.types.is_struct(field.type):
            inner, key = _leaves(field.type, key + 2)
            leaves += [_Column((field.name, *c.path), c.token, c.type) for c in inner]
        elif pa.types.is_string(field.type):
            leaves.append(_Column((field.name,), key + 2, field.type))
            key += 4
        else:  # an integer: no quotes of its own
            leaves.append(_Column((field.name,), key + 1, field.type))
            key += 2
    return leaves, key


@dataclass
class _Lines:
    """A block of lines as bytes, with the position of each quote and each line's first one."""

    data: np.ndarray
    buffer: pa.Buffer  # the same bytes, as Arrow holds them
    quotes: np.ndarray  # byte offset of every quote in `data`
    first: np.ndarray  # index in `quotes` of each line's first quote
    count: np.ndarray  # quotes in each line
    ends: np.ndarray  # byte offset after each line

    @classmethod
    def of(cls, lines: pa.Array) -> _Lines:
        _, offsets_buffer, data_buffer = lines.buffers()
        offsets = np.frombuffer(offsets_buffer, np.int32, len(lines) + 1, lines.offset * 4)
        if data_buffer is None:  # every value empty: no canonical line, but still read
            data_buffer = pa.py_buffer(b"")
        data = np.frombuffer(data_buffer, np.uint8)
        quotes = np.flatnonzero(data == _QUOTE)
        bounds = np.searchsorted(quotes, offsets)
        ends = offsets[1:].astype(np.int64)
        return cls(data, data_buffer, quotes, bounds[:-1], np.diff(bounds), ends)

    def span(self, token: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) byte offsets of token number `token` of each line: between its quotes
        `token - 1` and `token`; a last unquoted token ends with its line. A token a line does
        not have is the empty range at the line's end."""
        if isinstance(token, int) and 1 <= token < self.fewest:
            # Every line has this token and a quote after it (a required member's).
            return self.quotes[self.first + (token - 1)] + 1, self.quotes[self.first + token]
        token = np.broadcast_to(np.asarray(token, np.int64), self.first.shape)
        last = len(self.quotes) - 1
        start = self.quotes[np.clip(self.first + token - 1, 0, last)] + 1
        end_quote = self.quotes[np.clip(self.first + token, 0, last)]
        end = np.where(token < self.count, end_quote, self.ends)
        exists = (token >= 1) & (token <= self.count)
        return np.where(exists, start, self.ends), np.where(exists, end, self.ends)

    def strings(self, start: np.ndarray, end: np.ndarray) -> pa.Array:
        """The byte ranges as strings (ranges in line order, as every token column's are): a
        string array over the block's own bytes whose even values are the ranges and odd ones
        the gaps between them, then Arrow's `take` of the even ones (one copy, in C++)."""
        bounds = np.empty(2 * len(start), np.int32)
        bounds[0::2], bounds[1::2] = start, end
        spans = pa.StringArray.from_buffers(
            max(len(bounds) - 1, 0), pa.py_buffer(bounds), self.buffer
        )
        return spans.take(self.evens)

    @functools.cached_property
    def fewest(self) -> int:
        """The fewest quotes any line has: a token below it is in every line."""
        return int(self.count.min())

    @functools.cached_property
    def evens(self) -> pa.Array:
        return pa.array(np.arange(0, 2 * len(self.first), 2))

    def holds(self, start: np.ndarray, end: np.ndarray, word: bytes) -> np.ndarray:
        """Whether each range is exactly `word`."""
        same: np.ndarray = (end - start) == len(word)
        for i, byte in enumerate(word):
            same &= self.data[np.minimum(start + i, len(self.data) - 1)] == byte
        return same


def _integers(lines: _Lines, token: int, type: pa.DataType) -> pa.Array:
    """An integer of its unquoted token (`: 123 ,`): the digits alone, parsed by Arrow."""
    return pc.utf8_trim(lines.strings(*lines.span(token)), _AROUND_INTEGER).cast(type)


def _optional(lines: _Lines, names: list[str], key: int) -> dict[str, pa.Array]:
    """The trailing optional members, each in its turn: absent, `null`, or a string."""
    at = np.full(len(lines.first), key, np.int64)
    columns: dict[str, pa.Array] = {}
    for name in names:
        present = (at < lines.count) & lines.holds(*lines.span(at), name.encode())
        after_key = lines.strings(*lines.span(np.where(present, at + 1, -1)))
        null = present & np.asarray(
            pc.match_substring(after_key, "null").to_numpy(zero_copy_only=False), dtype=bool
        )
        text = present & ~null
        values = lines.strings(*lines.span(np.where(text, at + 2, -1)))
        columns[name] = pc.if_else(pa.array(text), values, pa.scalar(None, pa.string()))
        at = at + np.where(text, 4, np.where(null, 2, 0))
    return columns


def read_canonical(lines: pa.Array, schema: pa.Schema, optional: int = 0) -> pa.Table:
    """The lines as a table of `schema` (string, integer and struct members); its last
    `optional` members are optional nullable strings. Every line must be canonical."""
    if len(lines) == 0:
        return schema.empty_table()
    block = _Lines.of(lines)
    required = pa.schema(list(schema)[: len(schema) - optional])
    leaves, next_key = _leaves(required, 1)
    values: dict[tuple[str, ...], pa.Array] = {}
    for leaf in leaves:
        if pa.types.is_string(leaf.type):
            values[leaf.path] = block.strings(*block.span(leaf.token))
        else:
            values[leaf.path] = _integers(block, leaf.token, leaf.type)
    trailing = [f.name for f in list(schema)[len(schema) - optional :]]
    for name, column in _optional(block, trailing, next_key).items():
        values[(name,)] = column
    return pa.Table.from_arrays([_assembled(f, (), values) for f in schema], schema=schema)


def _assembled(
    field: pa.Field, prefix: tuple[str, ...], values: dict[tuple[str, ...], pa.Array]
) -> pa.Array:
    path = (*prefix, field.name)
    if not pa.types.is_struct(field.type):
        return values[path]
    children = [_assembled(child, path, values) for child in field.type]
    return pa.StructArray.from_arrays(children, fields=list(field.type))
