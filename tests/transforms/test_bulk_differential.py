"""The bulk path and the reference path are one contract.

`process_block` with the bulk path on must give exactly what it gives with every event through
pydantic and the Normaliser: the same accepted rows in every column, the same rejected rows
(same codes, reasons, redacted raw), the same stats. Checked on every kind of line the
generator writes (each invalid kind included), the adversarial corpus, the privacy work's
property-based events, and mutations of valid events (bytes flipped, inserted and deleted;
fields removed, repeated, retyped, reordered, re-spaced, escaped).

Bounded in CI; `BULK_DIFFERENTIAL_EXAMPLES=20000` (or more) runs the mutation search longer.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.catalogue import load_catalogue
from tests.adversarial import adversarial_lines
from tests.samples import KIOSK_EVENT, MOBILE_EVENT, PORTAL_EVENT, TEST_KEY, sample_events
from tests.transforms.test_no_secret_leaks import poisoned_events
from transforms.core.blocks import BlockResult, RunContext, process_block
from transforms.core.normalise import Normaliser
from transforms.core.privacy import Pseudonymiser
from transforms.core.rawblock import RawBlock

BULK = RunContext(Normaliser(Pseudonymiser(TEST_KEY), load_catalogue()), "run-diff", 1_000)
REFERENCE = replace(BULK, bulk=False)
EXAMPLES = int(os.environ.get("BULK_DIFFERENTIAL_EXAMPLES", "300"))
VALID = [PORTAL_EVENT, MOBILE_EVENT, KIOSK_EVENT]


def _both(payloads: list[bytes], streaming: bool = False) -> tuple[BlockResult, BlockResult]:
    if streaming:
        block = RawBlock("sub", payloads, message_ids=[str(i) for i in range(len(payloads))])
    else:
        block = RawBlock("in.jsonl", payloads, line_numbers=list(range(1, len(payloads) + 1)))
    return process_block(block, BULK), process_block(block, REFERENCE)


def _assert_one_contract(payloads: list[bytes], streaming: bool = False) -> BlockResult:
    bulk, reference = _both(payloads, streaming)
    assert bulk.accepted.schema.equals(reference.accepted.schema)
    assert bulk.accepted.to_pylist() == reference.accepted.to_pylist()
    assert bulk.rejected.to_pylist() == reference.rejected.to_pylist()
    assert dict(bulk.stats) == dict(reference.stats)
    return bulk


# --- what the generator writes ------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """A generated week with every defect the generator makes: invalid lines of each kind,
    redeliveries, conflicts, late events, full card numbers."""
    out = tmp_path_factory.mktemp("generated")
    command = [sys.executable, "-m", "tools.generate", "--out", str(out), "--profile", "sample"]
    command += ["--days", "2", "--invalid-rate", "0.2", "--full-pan-rate", "0.2"]
    subprocess.run(command, check=True, capture_output=True)
    paths = sorted(out.glob("*/*.jsonl"))
    return [line for path in paths for line in path.read_bytes().split(b"\n")]


def test_every_generated_line_gets_one_outcome_from_both_paths(generated: list[bytes]) -> None:
    lines = [line for line in generated if line.strip()]
    for start in range(0, len(lines), 2000):
        _assert_one_contract(lines[start : start + 2000])


def test_the_bulk_path_takes_the_generators_valid_lines(generated: list[bytes]) -> None:
    """Not a correctness promise (the reference path would accept them too): the bulk path
    must actually carry the everyday lines, or it is only a cost."""
    lines = [line for line in generated if line.strip()][:2000]
    block = RawBlock("in.jsonl", lines, line_numbers=list(range(1, len(lines) + 1)))
    taken = BULK.bulk_normaliser(block.payloads, BULK.max_event_bytes)
    accepted = process_block(block, REFERENCE).accepted.num_rows
    assert len(taken.rows) >= 0.95 * accepted


def test_a_streaming_block_gets_one_outcome_from_both_paths(generated: list[bytes]) -> None:
    _assert_one_contract([line for line in generated if line.strip()][:1500], streaming=True)


# --- the corpora ---------------------------------------------------------------------------


def test_the_adversarial_corpus_gets_one_outcome_from_both_paths() -> None:
    _assert_one_contract(adversarial_lines())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(poisoned_events())
def test_events_carrying_secrets_get_one_outcome_from_both_paths(
    poisoned: tuple[bytes, str, str],
) -> None:
    payload, _, _ = poisoned
    _assert_one_contract([PORTAL_EVENT, payload, KIOSK_EVENT])


# --- mutations of valid events -------------------------------------------------------------

_EVENTS = sample_events()
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "0",
            "12.500",
            "12.5000",
            "-1",
            "BHD",
            "bhd",
            "2017-06-30T21:15:03+03:00",
            "2017-06-30T21:15:03.5+03:00",
            "2017-02-29T10:00:00Z",
            "2016-02-29T10:00:00Z",
            "2017-06-30T24:00:00+03:00",
            "2017-06-30t21:15:03+03:00",
            "2017-06-30T21:15:03+14:01",
            "2017-06-30T21:15:03-12:00",
            "1999-12-31T23:59:59+00:00",
            "2100-01-01T00:00:00+03:00",
            "2017-06-30 21:15:03",
            "2017-13-01 00:00:00",
            "1999-12-31 23:59:59",
            "2099-12-31 23:59:59",
            "850101234",
            "85010123",
            "٨٥٠١٠١٢٣٤",
            "************1234",
            "4539578763621486",
            "x" * 128,
            "x" * 129,
            "é" * 128,
            "GDT-FINE",
            "gdt-fine",
            "UNKNOWN-SERVICE",
            "a" * 65,
            "PAID",
            "paid",
            "success",
            "OK",
        ]
    ),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _paths(event: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    if isinstance(event, dict):
        for key, value in event.items():
            found.append((*prefix, key))
            found.extend(_paths(value, (*prefix, key)))
    return found


def _set(event: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        event = event[key]
    event[path[-1]] = value


def _delete(event: dict[str, Any], path: tuple[str, ...]) -> None:
    for key in path[:-1]:
        event = event[key]
    del event[path[-1]]


@st.composite
def field_mutations(draw: st.DrawFn) -> bytes:
    """A valid event of some channel with one to three fields changed, removed or added, then
    written compact, spaced, with keys reordered, escaped or repeated."""
    event = json.loads(json.dumps(_EVENTS[draw(st.sampled_from(sorted(_EVENTS)))]))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(event)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["set", "set", "set", "delete", "add"]))
        try:
            if action == "set":
                _set(event, path, draw(_VALUES))
            elif action == "delete":
                _delete(event, path)
            else:
                _set(event, (*path[:-1], draw(st.text(min_size=1, max_size=8))), draw(_VALUES))
        except (TypeError, KeyError):
            pass
    style = draw(st.sampled_from(["compact", "spaced", "sorted", "ascii", "repeat", "crlf"]))
    if style == "repeat" and isinstance(event, dict) and event:
        key = draw(st.sampled_from(sorted(event)))
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        extra = json.dumps({key: draw(_VALUES)}, separators=(",", ":"))[1:-1]
        return (text[:-1] + "," + extra + "}").encode()
    if style == "spaced":
        return json.dumps(event, ensure_ascii=False).encode()
    if style == "sorted":
        return json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
    if style == "ascii":
        return json.dumps(event, separators=(",", ":"), ensure_ascii=True).encode()
    if style == "crlf":
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode() + b"\r"
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    """A valid event's bytes with a few bytes flipped, inserted or deleted."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "insert" or not data:
            data[at:at] = bytes([draw(st.integers(0, 255))])
        elif action == "flip":
            at = min(at, len(data) - 1)
            data[at] ^= 1 << draw(st.integers(0, 7))
        else:
            del data[min(at, len(data) - 1)]
    return bytes(data)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(field_mutations(), min_size=1, max_size=6))
def test_field_mutations_of_valid_events_get_one_outcome_from_both_paths(
    payloads: list[bytes],
) -> None:
    _assert_one_contract([PORTAL_EVENT, *payloads, KIOSK_EVENT])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(byte_mutations(), min_size=1, max_size=6))
def test_byte_mutations_of_valid_events_get_one_outcome_from_both_paths(
    payloads: list[bytes],
) -> None:
    _assert_one_contract([MOBILE_EVENT, *payloads, PORTAL_EVENT])


# --- edges the grammar must leave to pydantic ----------------------------------------------


def _portal(**fields: Any) -> bytes:
    return _written({**_EVENTS["portal"], **fields})


def _app(**payment: Any) -> bytes:
    event = json.loads(json.dumps(_EVENTS["mobile_app"]))
    event["payment"].update(payment)
    return _written(event)


def _app_at(ts: Any) -> bytes:
    return _written({**_EVENTS["mobile_app"], "ts": ts})


def _kiosk(**fields: Any) -> bytes:
    return _written({**_EVENTS["kiosk"], **fields})


def _written(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


# 2000-01-01T00:00:00+03:00 and 2100-01-01T00:00:00+03:00 in epoch milliseconds (schemas.raw).
_EARLIEST_MS, _LATEST_MS = 946_674_000_000, 4_102_434_000_000


@pytest.mark.parametrize(
    "payload",
    [
        _portal(paid_at="2017-02-29T10:00:00+03:00"),  # no such day
        _portal(paid_at="2016-02-29T10:00:00+03:00"),  # a leap day
        _portal(paid_at="2017-06-30T23:59:60+03:00"),  # a leap second
        _portal(paid_at="2017-06-30T24:00:00+03:00"),
        _portal(paid_at="2017-06-30T23:60:00+03:00"),
        _portal(paid_at="2017-06-30T23:00:00+03:60"),
        _portal(paid_at="2017-00-10T23:00:00+03:00"),
        _portal(paid_at="2017-06-00T23:00:00+03:00"),
        _portal(paid_at="2017-06-31T23:00:00+03:00"),
        _portal(paid_at="2017-06-30T23:00:00Z"),
        _portal(paid_at="2017-06-30T23:00:00-14:00"),
        _portal(paid_at="2017-06-30T23:00:00+14:00"),
        _portal(paid_at="2017-06-30T23:00:00+14:30"),
        _portal(paid_at="2000-01-01T00:00:00+03:00"),  # the first instant the model takes
        _portal(paid_at="1999-12-31T23:59:59-01:00"),  # the year as written counts
        _portal(paid_at="2099-12-31T23:59:59-05:00"),
        _portal(paid_at="2017-06-30T10:00:00+23:59"),  # an offset past the bulk path's range
        _portal(amount_fils=999_999_999_999),  # the largest payment
        _portal(amount_fils=1_000_000_000_000),
        _portal(txn_id="x" * 128),
        _portal(txn_id="x" * 129),
        _portal(txn_id="é" * 128),
        _portal(txn_id="é" * 129),
        _portal(txn_id="𝟘" * 65),  # four bytes each: 65 code points, 260 bytes
        _portal(txn_id=""),
        _portal(amount_fils=0),
        _portal(amount_fils=1),
        _portal(amount_fils=True),
        _portal(amount_fils=12500.0),
        _portal(currency="bhd"),
        _portal(status="paid"),
        _app(amount="0.000"),
        _app(amount="000.001"),
        _app(amount="12.5"),
        _app(amount="12."),
        _app(amount=".5"),
        _app(amount="999999999.999"),
        _app(amount="1000000000.000"),
        _app(amount="0000000000001.000"),
        _app(amount="12.5000"),
        _app(amount=12.5),
        _app_at(_EARLIEST_MS - 1),
        _app_at(_EARLIEST_MS),
        _app_at(_LATEST_MS - 1),
        _app_at(_LATEST_MS),
        _kiosk(seq=0),
        _kiosk(seq=-1),
        _kiosk(seq=2**63),
        _kiosk(seq=10**18),
        _kiosk(local_time="2017-06-30 24:00:00"),
        _kiosk(local_time="2017-02-29 10:00:00"),
        _kiosk(local_time="2000-01-01 00:00:00"),
        _kiosk(local_time="1999-12-31 23:59:59"),
        _kiosk(local_time="2099-12-31 23:59:59"),
        _kiosk(local_time="2100-01-01 00:00:00"),
        _kiosk(card=None),
        _kiosk(card=""),
        _kiosk(card="x" * 65),
        _kiosk(card="4539 5787 6362 1486"),
        _kiosk(card="**** **** **** 1486"),
        _kiosk(card="************١٤٨٦"),
        _kiosk(cpr=None),
        _kiosk(site="مجمع السيف"),
        _portal(service={"code": "a" * 64, "entity": "GDT"}),
        _portal(service={"code": "a" * 65, "entity": "GDT"}),
        _portal(gateway_ref=None),
        _portal(payer={"cpr": "850101234", "cpr2": "1"}),
        b'{"channel":"portal","txn_id":"PTL-1","txn_id":"PTL-2"}',
        _portal(txn_id="PTL-850101234"),  # the payer's CPR in an identifier
    ],
)
def test_an_edge_of_the_contract_gets_one_outcome_from_both_paths(payload: bytes) -> None:
    _assert_one_contract([payload])


def test_a_block_the_bulk_path_cannot_read_is_left_to_the_reference_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: Any) -> Any:
        raise ValueError("simulated")

    monkeypatch.setattr(type(BULK.bulk_normaliser), "__call__", broken)
    result = _assert_one_contract([PORTAL_EVENT, b"{", KIOSK_EVENT])
    assert result.accepted.num_rows == 2


def test_a_failing_bulk_path_logs_where_it_failed_but_not_the_values_in_its_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cpr = "8501" + "01234"  # not in the source line the traceback shows

    def broken(*_: Any) -> Any:
        raise ValueError(f"Failed to parse string: '{cpr}' as int64")

    monkeypatch.setattr(type(BULK.bulk_normaliser), "__call__", broken)
    with caplog.at_level(logging.WARNING):
        _assert_one_contract([PORTAL_EVENT])
    assert "bulk path failed" in caplog.text
    assert "ValueError" in caplog.text
    assert "in broken" in caplog.text  # the traceback's frames
    assert "850101234" not in caplog.text
