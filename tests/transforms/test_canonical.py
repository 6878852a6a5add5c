"""Reading canonical lines by their quotes gives what Arrow's JSON reader gives.

`read_canonical` replaced `pyarrow.json.read_json` on the bulk path (issue #11); the JSON reader
stays the reference here. Lines are generated from each channel's own schema, the way the
bulk grammar admits them: any string without a quote, a backslash or a control character (any
script), plain non-negative integers, whitespace between any two tokens, and each optional
member absent, `null` or a string.
"""

from __future__ import annotations

import io
import os

import pyarrow as pa
import pyarrow.json as pj
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core.bulk import _OPTIONAL_MEMBERS, _SCHEMAS
from transforms.core.canonical import read_canonical

EXAMPLES = int(os.environ.get("CANONICAL_EXAMPLES", "150"))
_WHITESPACE = st.text(alphabet=" \t\r", max_size=3)
_TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",), blacklist_characters='"\\' + "".join(map(chr, range(32)))
    ),
    min_size=1,
    max_size=12,
)


def _reference(lines: list[bytes], schema: pa.Schema) -> pa.Table:
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    data = b"\n".join(lines)
    read = pj.ReadOptions(use_threads=False, block_size=len(data) + 1)
    return pj.read_json(io.BytesIO(data), read_options=read, parse_options=options)


@st.composite
def _value(draw: st.DrawFn, type: pa.DataType) -> str:
    ws = draw(_WHITESPACE)
    if pa.types.is_struct(type):
        return _object(draw, list(type), 0)
    if pa.types.is_string(type):
        return '"' + draw(_TEXT) + '"' + ws
    return str(draw(st.integers(0, 2**62))) + ws


def _object(draw: st.DrawFn, fields: list[pa.Field], optional: int) -> str:
    members = []
    for position, field in enumerate(fields):
        ws = [draw(_WHITESPACE) for _ in range(3)]
        if position >= len(fields) - optional:
            choice = draw(st.sampled_from(["absent", "null", "text"]))
            if choice == "absent":
                continue
            value = "null" if choice == "null" else '"' + draw(_TEXT) + '"'
        else:
            value = draw(_value(field.type))
        members.append(f'{ws[0]}"{field.name}"{ws[1]}:{ws[2]}{value}')
    return "{" + ",".join(members) + draw(_WHITESPACE) + "}"


@st.composite
def _lines(draw: st.DrawFn, channel: str) -> list[bytes]:
    schema = _SCHEMAS[channel]
    count = draw(st.integers(1, 8))
    return [
        (draw(_WHITESPACE) + _object(draw, list(schema), _OPTIONAL_MEMBERS[channel])).encode()
        for _ in range(count)
    ]


def _read(lines: list[bytes], channel: str) -> pa.Table:
    return read_canonical(
        pa.array(lines, pa.binary()).cast(pa.string()),
        _SCHEMAS[channel],
        _OPTIONAL_MEMBERS[channel],
    )


@pytest.mark.parametrize("channel", sorted(_SCHEMAS))
@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_canonical_lines_read_as_the_json_reader_reads_them(
    channel: str, data: st.DataObject
) -> None:
    lines = data.draw(_lines(channel))
    assert _read(lines, channel).to_pylist() == _reference(lines, _SCHEMAS[channel]).to_pylist()


def test_a_slice_of_a_larger_array_is_read_from_its_own_lines() -> None:
    lines = [
        b'{"channel":"kiosk","kiosk_id":"K-%d","seq":%d,"site":"S","service":"X","amount":"1",'
        b'"local_time":"t","result":"OK","card":null,"cpr":"850101234"}' % (i, i)
        for i in range(5)
    ]
    sliced = pa.array(lines, pa.binary()).cast(pa.string()).slice(2, 2)
    table = read_canonical(sliced, _SCHEMAS["kiosk"], _OPTIONAL_MEMBERS["kiosk"])
    assert table.to_pylist() == _reference(lines[2:4], _SCHEMAS["kiosk"]).to_pylist()


def test_no_lines_read_as_an_empty_table() -> None:
    empty = read_canonical(pa.array([], pa.string()), _SCHEMAS["portal"], 1)
    assert empty.num_rows == 0
    assert empty.schema.equals(_SCHEMAS["portal"])
