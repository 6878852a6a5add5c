"""The privacy rule holds for all inputs: a card number or the payer's CPR injected anywhere in
an event, in any form, is never recoverable from any output value of `process_block`.

Generated classes (hypothesis): each channel's valid event; a random Luhn-valid 13-19 digit
card number and the event's own CPR; injected into a known free-text or identifier field, an
unknown extra field, a nested object or an array (split into groups over its elements); in
plain form, in groups joined by any of a dozen separators (Unicode spaces, dots, slashes…), in
five digit scripts, as JSON `\\u` escapes; the JSON optionally broken (cut short, a brace
dropped, an invalid UTF-8 byte).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.catalogue import load_catalogue
from tests.samples import TEST_KEY, run_of, sample_events
from transforms.core.blocks import BlockResult, RunContext, process_block
from transforms.core.columnar import ArrowBlock
from transforms.core.normalise import Normaliser
from transforms.core.privacy import Pseudonymiser, decode_json_escapes
from transforms.core.rawblock import RawBlock
from transforms.streaming.sinks import WritePartitionPaneFn, write_rejected_pane

CTX = RunContext(Normaliser(Pseudonymiser(TEST_KEY), load_catalogue()), "run-leaks", 0)

EVENTS: dict[str, dict[str, Any]] = sample_events()
EVENTS["kiosk"]["cpr"] = "850101234"  # the CPR is optional at kiosks: give it one to hide
# Where a secret can go: (path of keys) per channel. Free text and identifiers that are
# written, fields that are not, unknown extras, nested objects.
TARGETS: dict[str, list[tuple[str, ...]]] = {
    "portal": [
        ("txn_id",),
        ("gateway_ref",),
        ("service", "entity"),
        ("amount_fils",),
        ("channel",),
        ("note",),
        ("x", "y"),
    ],
    "mobile_app": [
        ("event_id",),
        ("app", "version"),
        ("app", "id"),
        ("payment", "amount"),
        ("note",),
        ("x", "y"),
    ],
    "kiosk": [
        ("site",),
        ("kiosk_id",),
        ("card",),
        ("amount",),
        ("local_time",),
        ("note",),
        ("x", "y"),
        ("service",),
    ],
}
SEPARATORS = [" ", "-", ".", "/", "\u00a0", "\u2009", "\u3000", "\u202f", "_", " - ", ", ", "\t"]
DIGIT_ZEROS = [0x30, 0x660, 0x6F0, 0x966, 0xFF10]  # ASCII, Arabic-Indic, Persian, Devanagari, FW


def _luhn_complete(body: str) -> str:
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char)
        if position % 2 == 0:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return body + str((10 - total % 10) % 10)


# At least four distinct digits: a CPR of nine zeros would be "found" in any run of zeros (the
# 00:00:00+00:00 of a timestamp), which says nothing about a leak.
cards = (
    st.integers(13, 19)
    .flatmap(lambda n: st.text("0123456789", min_size=n - 1, max_size=n - 1).map(_luhn_complete))
    .filter(lambda digits: len(set(digits)) >= 4)
)
cprs = st.text("0123456789", min_size=9, max_size=9).filter(lambda d: len(set(d)) >= 4)


IDENTIFIER_FIELDS = {"txn_id", "event_id", "kiosk_id"}


@st.composite
def written_forms(draw: st.DrawFn, digits: str, identifier: bool) -> tuple[Any, bool]:
    """(JSON value carrying the digits, whether to write them as \\u escapes).

    In an identifier, a card is grouped as people write one (three or more groups of at most
    six digits): a portal id is 13 digits in two groups, a UUID 8-4-4 (transforms.core.privacy).
    """
    zero = draw(st.sampled_from(DIGIT_ZEROS))
    scripted = "".join(chr(zero + int(d)) for d in digits)
    if identifier:
        cuts = list(range(4, len(digits), 4))  # 4-4-4-4(-3)
    else:
        cuts = sorted(draw(st.sets(st.integers(1, len(digits) - 1), max_size=5)))
    groups = [scripted[a:b] for a, b in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
    form = draw(st.sampled_from(["plain", "grouped", "array", "number", "in_text"]))
    escaped = draw(st.booleans())
    if form == "grouped":
        return draw(st.sampled_from(SEPARATORS)).join(groups), escaped
    if form == "array":
        return groups, escaped
    if form == "number" and zero == 0x30 and digits[0] != "0":
        return int(digits), False
    if form == "in_text":
        return f"paid by {scripted} at the counter", escaped
    return scripted, escaped


def _set(event: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = event
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def _escape_digits(text: str) -> str:
    """Every digit (any script) inside the JSON strings of `text` written as a \\u escape."""
    return re.sub(
        r'"(?:[^"\\]|\\.)*"',
        lambda s: re.sub(r"\d", lambda m: f"\\u{ord(m.group(0)):04x}", s.group(0)),
        text,
    )


@st.composite
def poisoned_events(draw: st.DrawFn) -> tuple[bytes, str, str]:
    channel = draw(st.sampled_from(sorted(EVENTS)))
    event = json.loads(json.dumps(EVENTS[channel]))
    card, cpr = draw(cards), draw(cprs)
    for key in ("payer", "user"):
        if key in event:
            event[key]["cpr"] = cpr
    if "cpr" in event:
        event["cpr"] = cpr
    escapes = False
    for secret in draw(st.sampled_from([[card], [cpr], [card, cpr]])):
        target = draw(st.sampled_from(TARGETS[channel]))
        value, escaped = draw(written_forms(secret, target[-1] in IDENTIFIER_FIELDS))
        _set(event, target, value)
        escapes = escapes or escaped
    if escapes:
        text = _escape_digits(json.dumps(event, ensure_ascii=False))
    else:
        text = json.dumps(event, ensure_ascii=draw(st.booleans()))
    payload = text.encode()
    damage = draw(st.sampled_from(["none", "none", "cut", "brace", "utf8"]))
    if damage == "cut":
        payload = payload[: draw(st.integers(1, len(payload) - 1))]
    elif damage == "brace":
        payload = payload[:-1]
    elif damage == "utf8":
        at = draw(st.integers(0, len(payload)))
        payload = payload[:at] + b"\xff" + payload[at:]
    # A CPR is the event's only while its CPR field is there: a cut may remove it, and then a
    # 9-digit identifier is an identifier.
    cpr_field = f'"cpr": "{cpr}"'
    kept_cpr = (
        cpr if cpr_field in _ascii(decode_json_escapes(payload.decode(errors="ignore"))) else ""
    )
    return payload, card, kept_cpr


def _ascii(text: str) -> str:
    return re.sub(r"\d", lambda m: str(int(m.group(0))), text)


def _normalised(text: str) -> str:
    """An output value as a reader could read it: escapes decoded, digits in ASCII,
    separators between digits removed."""
    return re.sub(r"[\W_]+", "", _ascii(decode_json_escapes(text.replace("\ufffd", ""))))


def _string_values(table: pa.Table) -> list[str]:
    values: list[str] = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_string(field.type):
            values.extend(v for v in column.to_pylist() if v is not None)
    return values


def _assert_not_recoverable(result: BlockResult, *secrets: str) -> None:
    for value in _string_values(result.accepted) + _string_values(result.rejected):
        readable = _normalised(value)
        for secret in filter(None, secrets):
            assert secret not in readable, f"secret recoverable from {value!r}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(poisoned_events())
def test_no_injected_secret_is_recoverable_from_any_output_value(
    case: tuple[bytes, str, str],
) -> None:
    payload, card, cpr = case
    result = process_block(RawBlock("landing/x.jsonl", [payload], line_numbers=[1]), CTX)
    assert result.accepted.num_rows + result.rejected.num_rows == 1
    _assert_not_recoverable(result, card, cpr)


@settings(max_examples=100, deadline=None)
@given(poisoned_events())
def test_no_injected_secret_is_recoverable_from_a_streaming_block(
    case: tuple[bytes, str, str],
) -> None:
    payload, card, cpr = case
    result = process_block(
        RawBlock("projects/p/subscriptions/s", [payload], message_ids=["1"]), CTX
    )
    assert result.accepted.num_rows + result.rejected.num_rows == 1
    _assert_not_recoverable(result, card, cpr)


@pytest.mark.parametrize("channel", sorted(EVENTS))
def test_an_event_without_secrets_elsewhere_is_accepted(channel: str) -> None:
    payload = json.dumps(EVENTS[channel]).encode()
    result = process_block(RawBlock("landing/x.jsonl", [payload], line_numbers=[1]), CTX)
    assert result.accepted.num_rows == 1


def _through_panes(root: Path, result: BlockResult) -> None:
    """Write a block's outcome the way the streaming pipeline does: each accepted partition
    through the pane writer (which also rejects conflicts), rejected rows as one pane."""
    writer = WritePartitionPaneFn(run_of("run-leaks-stream", str(root)))
    accepted = result.accepted
    rejected = [ArrowBlock.of(result.rejected)] if result.rejected.num_rows else []
    for channel, day in set(
        zip(accepted["channel"].to_pylist(), accepted["event_date"].to_pylist(), strict=True)
    ):
        rows = accepted.filter(
            pc.and_(pc.equal(accepted["channel"], channel), pc.equal(accepted["event_date"], day))
        )
        for out in writer.process(((channel, day.isoformat()), [ArrowBlock.of(rows)])):
            if getattr(out, "tag", None) == "rejected":
                rejected.append(out.value)
    if rejected:
        list(write_rejected_pane((None, rejected), str(root), "run-leaks-stream"))


@settings(max_examples=60, deadline=None)
@given(poisoned_events(), st.integers(1, 99))
def test_no_injected_secret_is_recoverable_from_streaming_pane_files(
    case: tuple[bytes, str, str], other_fils: int
) -> None:
    payload, card, cpr = case
    # The same event again with another amount: a conflict the pane writer rejects.
    variant = payload.replace(b'"amount_fils": 12500', b'"amount_fils": %d' % other_fils)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for message, body in enumerate((payload, variant)):
            block = RawBlock("projects/p/subscriptions/s", [body], message_ids=[str(message)])
            _through_panes(root, process_block(block, CTX))
        for path in root.rglob("*.parquet"):
            table = pq.read_table(path)
            for value in _string_values(table):
                readable = _normalised(value)
                assert not [s for s in (card, cpr) if s and s in readable], (path, value)
