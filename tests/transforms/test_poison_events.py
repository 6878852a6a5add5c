"""No single event can stop a run: any bytes on a line give one accepted or one rejected row."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.catalogue import load_catalogue
from schemas.enums import RejectCode
from tests.samples import TEST_KEY
from tests.transforms.test_no_secret_leaks import EVENTS
from transforms.core import blocks
from transforms.core.blocks import BlockResult, RunContext, process_block
from transforms.core.normalise import Normaliser
from transforms.core.privacy import Pseudonymiser
from transforms.core.rawblock import RawBlock
from transforms.core.scanner import scan_table

CTX = RunContext(Normaliser(Pseudonymiser(TEST_KEY), load_catalogue()), "run-poison", 0)
# One line of each depth class: within pydantic's limit, beyond it, beyond orjson's (1024),
# beyond Python's recursion limit, and far beyond.
DEPTHS = [1, 2, 50, 199, 200, 201, 255, 256, 300, 500, 1023, 1024, 1025, 5000, 100_000]


def _run(*payloads: bytes) -> BlockResult:
    lines = list(range(1, len(payloads) + 1))
    return process_block(RawBlock("landing/poison.jsonl", list(payloads), line_numbers=lines), CTX)


def _one_row_each(result: BlockResult, count: int) -> None:
    assert result.accepted.num_rows + result.rejected.num_rows == count


def _nested(depth: int, container: str) -> bytes:
    if container == "array":
        return b"[" * depth + b"]" * depth
    inner = b'{"a":' * depth + b"1" + b"}" * depth
    return b'{"channel": "portal", "x": ' + inner + b"}"


@pytest.mark.parametrize("container", ["array", "object"])
@pytest.mark.parametrize("depth", DEPTHS)
def test_an_event_nested_to_any_depth_is_one_row(depth: int, container: str) -> None:
    _one_row_each(_run(_nested(depth, container), json.dumps(EVENTS["portal"]).encode()), 2)


@pytest.mark.parametrize("depth", [300, 500, 1000])
def test_a_deep_event_holding_a_card_number_is_rejected_without_it(depth: int) -> None:
    payload = b'{"card": "4111 1111 1111 1111", "x": ' + b"[" * depth + b"]" * depth + b"}"
    rejected = _run(payload).rejected
    assert rejected.num_rows == 1
    assert "4111 1111" not in rejected.column("raw")[0].as_py()


@pytest.mark.parametrize("at", range(2030, 2050))
def test_a_long_line_cut_inside_digit_groups_is_a_row_the_scan_lets_through(at: int) -> None:
    # The rejected row's raw is cut at 2,048 characters; cut there, `12345 6789 55` read as a
    # CPR to the scan of the written file, which refused to publish the whole run.
    payload = ('{"note": "' + "x" * (at - 11) + " 12345 6789 55 4444 " + "y" * 1000 + '"}').encode()
    rejected = _run(payload).rejected
    assert rejected.num_rows == 1
    assert scan_table(rejected, "rejected.parquet") == []


def test_a_huge_number_is_one_rejected_row() -> None:
    event = dict(EVENTS["portal"])
    payload = json.dumps(event).replace("12500", "9" * 4000).encode()
    result = _run(payload)
    assert result.rejected.column("error_code").to_pylist() == [RejectCode.INVALID_AMOUNT.value]


def test_a_huge_string_is_one_rejected_row() -> None:
    event = dict(EVENTS["kiosk"], site="x" * 60_000)
    _one_row_each(_run(json.dumps(event).encode()), 1)


def test_an_exception_inside_processing_becomes_an_unprocessable_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*_: Any) -> Any:
        raise MemoryError("simulated")

    # Both paths raise: the bulk path's block falls back to the reference path, which books it.
    monkeypatch.setattr(blocks.BulkNormaliser, "__call__", explode)
    monkeypatch.setattr(blocks, "parse_event", explode)
    result = _run(json.dumps(EVENTS["portal"]).encode())
    row = result.rejected.to_pylist()[0]
    assert (row["error_code"], row["reason"]) == ("UNPROCESSABLE", "parse failed with MemoryError")
    assert row["source_line"] == 1


def test_an_exception_inside_redaction_still_gives_a_rejected_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*_: Any) -> str:
        raise RecursionError

    monkeypatch.setattr(blocks, "redact_raw", explode)
    row = _run(b'{"card": "4111111111111111"').rejected.to_pylist()[0]
    assert row["error_code"] == RejectCode.MALFORMED_JSON.value
    assert "4111" not in row["raw"]
    assert "RecursionError" in row["raw"]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def events_with_any_value_in_any_field(draw: st.DrawFn) -> bytes:
    channel = draw(st.sampled_from(sorted(EVENTS)))
    event = json.loads(json.dumps(EVENTS[channel]))
    for key in draw(st.lists(st.sampled_from(sorted(event)), min_size=1, max_size=3)):
        event[key] = draw(json_values)
    return json.dumps(event).encode()


@settings(max_examples=300, deadline=None)
@given(events_with_any_value_in_any_field())
def test_any_json_type_in_any_field_gives_one_row(payload: bytes) -> None:
    _one_row_each(_run(payload), 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_one_row(payload: bytes) -> None:
    _one_row_each(_run(payload), 1)
