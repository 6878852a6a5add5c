"""The core of ingestion as a pure function: a block of raw events -> Arrow tables + stats.

Working on blocks of thousands of events keeps Beam's per-element cost (a few microseconds a
crossing) off the per-event path; see beam-notes.md for the measurements behind this choice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
import pyarrow as pa

from schemas.arrow import payment_schema, rejected_schema
from schemas.enums import Channel, QualityWarning
from schemas.records import SCHEMA_VERSION
from transforms import stats as st
from transforms.columnar import constant, decimal_from_fils
from transforms.normalise import NormalisedPayment, Normaliser
from transforms.privacy import redact_raw, redact_text
from transforms.rawblock import RawBlock
from transforms.validate import DEFAULT_MAX_EVENT_BYTES, Rejection, parse_event

_TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class RunContext:
    """What every block of one run shares: how to normalise, and the lineage to stamp."""

    normaliser: Normaliser
    run_id: str
    ingested_micros: int
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES


@dataclass
class BlockResult:
    accepted: pa.Table
    rejected: pa.Table
    stats: st.Stats = field(default_factory=Counter)


def claimed_identity(payload: bytes) -> tuple[Any, str | None, str | None]:
    """(parsed JSON or None, claimed channel, claimed event id) of a rejected payload."""
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(parsed, dict):
        return parsed, None, None
    channel = parsed.get("channel")
    ids = {
        "portal": ("txn_id",),
        "mobile_app": ("event_id",),
        "kiosk": ("kiosk_id", "seq"),
    }.get(channel if isinstance(channel, str) else "", ())
    parts = [parsed.get(name) for name in ids]
    event_id = None
    if parts and all(isinstance(p, str | int) and not isinstance(p, bool) for p in parts):
        event_id = ":".join([str(channel), *(str(p) for p in parts)])[:200]
    return parsed, channel if isinstance(channel, str) else None, event_id


def _accepted_table(
    rows: list[NormalisedPayment],
    lines: list[int] | None,
    messages: list[str] | None,
    source: str | None,
    ctx: RunContext,
) -> pa.Table:
    schema = payment_schema()
    n = len(rows)
    if n == 0:
        return schema.empty_table()
    cols = list(zip(*rows, strict=True))
    by_name = dict(zip(NormalisedPayment._fields, cols, strict=True))
    columns: dict[str, pa.Array] = {
        "amount": decimal_from_fils(by_name["amount_fils"]),
        "occurred_at": pa.array(by_name["occurred_micros"], pa.int64()).cast(_TS),
        "event_date": pa.array(by_name["event_day"], pa.int32()).cast(pa.date32()),
        "source_file": constant(source, n, pa.string()),
        "source_line": pa.array(lines, pa.int64()) if lines else constant(None, n, pa.int64()),
        "source_message_id": (
            pa.array(messages, pa.string()) if messages else constant(None, n, pa.string())
        ),
        "ingested_at": constant(ctx.ingested_micros, n, pa.int64()).cast(_TS),
        "run_id": constant(ctx.run_id, n, pa.string()),
        "schema_version": constant(SCHEMA_VERSION, n, pa.int64()),
    }
    arrays = [
        columns[f.name] if f.name in columns else pa.array(by_name[f.name], f.type) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


class RejectedInput(NamedTuple):
    """A rejection with the input it refused and where that input came from."""

    rejection: Rejection
    payload: bytes
    source_file: str | None
    source_line: int | None
    source_message_id: str | None


def rejected_table(
    rejections: Iterable[RejectedInput], run_id: str, ingested_micros: int
) -> pa.Table:
    """Rejected rows with their redacted raw input and origin."""
    schema = rejected_schema()
    rows: dict[str, list[Any]] = {name: [] for name in schema.names}
    for rejection, payload, source, line, message in rejections:
        parsed, claimed_channel, event_id = claimed_identity(payload)
        rows["error_code"].append(rejection.code.value)
        rows["reason"].append(redact_text(rejection.reason))
        rows["step"].append(rejection.step)
        rows["channel"].append(rejection.channel or claimed_channel)
        rows["event_id"].append(rejection.event_id or event_id)
        rows["raw"].append(redact_raw(payload, parsed))
        rows["raw_bytes"].append(len(payload))
        rows["source_file"].append(source)
        rows["source_line"].append(line)
        rows["source_message_id"].append(message)
        rows["ingested_at"].append(ingested_micros)
        rows["run_id"].append(run_id)
        rows["schema_version"].append(SCHEMA_VERSION)
    arrays = [
        pa.array(rows[f.name], pa.int64()).cast(_TS)
        if f.name == "ingested_at"
        else pa.array(rows[f.name], f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _accepted_stats(rows: list[NormalisedPayment]) -> st.Stats:
    """Read counts and data-quality warnings of the accepted rows, per channel."""
    stats: st.Stats = Counter()
    counts = Counter((r.channel, r.unknown_service, r.unmasked_card) for r in rows)
    for (channel, unknown_service, unmasked_card), n in counts.items():
        stats[st.read_key(channel)] += n
        if unknown_service:
            stats[st.warning_key(channel, QualityWarning.UNKNOWN_SERVICE.value)] += n
        if unmasked_card:
            stats[st.warning_key(channel, QualityWarning.UNMASKED_CARD_NUMBER.value)] += n
    return stats


def process_block(block: RawBlock, ctx: RunContext) -> BlockResult:
    """Validate and normalise every event of a block; each one is accepted or rejected."""
    rows: list[NormalisedPayment] = []
    kept: list[int] = []
    rejections: list[RejectedInput] = []
    source_file = block.source if block.line_numbers is not None else None
    normalise, max_bytes = ctx.normaliser, ctx.max_event_bytes
    for index, payload in enumerate(block.payloads):
        outcome = parse_event(payload, max_bytes)
        if isinstance(outcome, Rejection):
            line, message = block.origin(index)
            rejections.append(RejectedInput(outcome, payload, source_file, line, message))
        else:
            rows.append(normalise(outcome))
            kept.append(index)
    stats = _accepted_stats(rows)
    if block.blank_lines:
        stats[st.BLANK_LINES] += block.blank_lines
    rejected = rejected_table(rejections, ctx.run_id, ctx.ingested_micros)
    for channel, code in zip(
        rejected.column("channel").to_pylist(),
        rejected.column("error_code").to_pylist(),
        strict=True,
    ):
        known = channel if channel in _CHANNELS else st.UNKNOWN_CHANNEL
        stats[st.read_key(known)] += 1
        stats[st.rejected_key(known, code)] += 1
    lines = [block.line_numbers[i] for i in kept] if block.line_numbers is not None else None
    messages = [block.message_ids[i] for i in kept] if block.message_ids is not None else None
    accepted = _accepted_table(rows, lines, messages, source_file, ctx)
    return BlockResult(accepted, rejected, stats)


_CHANNELS = frozenset(c.value for c in Channel)
