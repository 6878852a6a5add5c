"""The core of ingestion as a pure function: a block of raw events -> Arrow tables + stats.

Working on blocks of thousands of events keeps Beam's per-element cost (a few microseconds a
crossing) off the per-event path; see beam-notes.md for the measurements behind this choice.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple, TypeVar

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import payment_schema, rejected_schema
from schemas.enums import Channel, QualityWarning, RejectCode, RejectStep
from schemas.raw import EVENT_ID_FIELDS, event_id
from schemas.records import SCHEMA_VERSION
from schemas.run import Run
from transforms.core import stats as st
from transforms.core.bulk import NOTHING_ACCEPTED, BulkAccepted, BulkNormaliser, business_schema
from transforms.core.columnar import constant, decimal_from_fils
from transforms.core.normalise import NormalisedPayment, Normaliser, payer_cpr
from transforms.core.privacy import Strength, event_secrets, raw_text, redact_raw, redact_text
from transforms.core.rawblock import RawBlock
from transforms.core.scanner import screen_accepted
from transforms.core.validate import DEFAULT_MAX_EVENT_BYTES, Rejection, parse_event

_TS = pa.timestamp("us", tz="UTC")
_T = TypeVar("_T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """What every block of one run shares: how to normalise, and the lineage to stamp.

    `bulk` turns on the bulk path (`transforms.core.bulk`), which accepts the canonical lines
    a block at a time and leaves the rest to the reference path; off, every event goes
    through pydantic and the Normaliser one at a time (what the differential tests compare).
    """

    normaliser: Normaliser
    run_id: str
    ingested_micros: int
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    bulk: bool = True

    @cached_property
    def bulk_normaliser(self) -> BulkNormaliser:
        return BulkNormaliser(self.normaliser.pseudonymise, self.normaliser.enrichment)

    @classmethod
    def of(
        cls, run: Run, normaliser: Normaliser, max_event_bytes: int, bulk: bool = True
    ) -> RunContext:
        """The context of one run: its id, and its clock as every row's `ingested_at`."""
        return cls(normaliser, run.run_id, run.ingested_micros, max_event_bytes, bulk)


@dataclass
class BlockResult:
    accepted: pa.Table
    rejected: pa.Table
    stats: st.Stats = field(default_factory=Counter)
    # Time the privacy rule took (screening accepted rows, redacting rejected ones, not building
    # tables): its cost, which the benchmark reports; not a stat, so equal input gives equal
    # stats.
    privacy_seconds: float = 0.0


_MAX_CLAIMED_CHARS = 200


def claimed_identity(payload: bytes) -> tuple[str | None, str | None]:
    """(claimed channel, claimed event id) of a rejected payload, as sent (redact before use)."""
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    channel = parsed.get("channel")
    if not isinstance(channel, str):
        return None, None
    parts = [parsed.get(name) for name in EVENT_ID_FIELDS.get(channel, ())]
    claimed = None
    if parts and all(isinstance(p, str | int) and not isinstance(p, bool) for p in parts):
        claimed = event_id(channel, parts)[:_MAX_CLAIMED_CHARS]
    return channel[:_MAX_CLAIMED_CHARS], claimed


def _business_table(rows: list[NormalisedPayment]) -> pa.Table:
    """The payment columns of normalised payments, without lineage (`business_schema`)."""
    schema = business_schema()
    if not rows:
        return schema.empty_table()
    by_name = dict(zip(NormalisedPayment._fields, zip(*rows, strict=True), strict=True))
    columns: dict[str, pa.Array] = {
        "amount": decimal_from_fils(by_name["amount_fils"]),
        "occurred_at": pa.array(by_name["occurred_micros"], pa.int64()).cast(_TS),
        "event_date": pa.array(by_name["event_day"], pa.int32()).cast(pa.date32()),
    }
    arrays = [
        columns[f.name] if f.name in columns else pa.array(by_name[f.name], f.type) for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _with_lineage(
    business: pa.Table,
    lines: list[int] | None,
    messages: list[str] | None,
    source: str | list[str] | None,
    ctx: RunContext,
) -> pa.Table:
    """Accepted rows with where each came from (one file, or each row's own in a packed block)
    and which run wrote it (`payment_schema`)."""
    schema = payment_schema()
    n = business.num_rows
    if n == 0:
        return schema.empty_table()
    columns: dict[str, pa.Array] = {
        "source_file": (
            pa.array(source, pa.string())
            if isinstance(source, list)
            else constant(source, n, pa.string())
        ),
        "source_line": pa.array(lines, pa.int64()) if lines else constant(None, n, pa.int64()),
        "source_message_id": (
            pa.array(messages, pa.string()) if messages else constant(None, n, pa.string())
        ),
        "ingested_at": constant(ctx.ingested_micros, n, pa.int64()).cast(_TS),
        "run_id": constant(ctx.run_id, n, pa.string()),
        "schema_version": constant(SCHEMA_VERSION, n, pa.int64()),
    }
    arrays = [
        columns[f.name] if f.name in columns else business.column(f.name).combine_chunks()
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


class RejectedInput(NamedTuple):
    """A rejection with the input it refused and where that input came from."""

    rejection: Rejection
    payload: bytes
    source_file: str | None
    source_line: int | None
    source_message_id: str | None


def _unredactable(err: Exception) -> str:
    return f"<raw event not shown: redaction failed with {type(err).__name__}>"


def _redacted_columns(
    rejection: Rejection, payload: bytes
) -> tuple[str, str | None, str | None, str]:
    """(reason, channel, event_id, raw) of a rejected row under the privacy rule.

    Everything the event claims is read as the producer's text: the secrets the payload
    carries are masked wherever they recur; identifiers and reasons keep their digits
    otherwise (a rejected row must stay traceable, and a reason keeps the model's bounds).
    """
    # A line over the event size limit is refused unread: its reason quotes nothing, and its raw
    # is cut long before that.
    secrets = event_secrets(raw_text(payload[:DEFAULT_MAX_EVENT_BYTES]))
    claimed_channel, claimed_id = claimed_identity(payload)
    channel = rejection.channel or claimed_channel
    event_id = rejection.event_id or claimed_id
    return (
        redact_text(rejection.reason, Strength.IDENTIFIER, secrets),
        redact_text(channel, Strength.FREE_TEXT, secrets) if channel else None,
        redact_text(event_id, Strength.IDENTIFIER, secrets) if event_id else None,
        redact_raw(payload, secrets),
    )


class RedactedRejection(NamedTuple):
    """A rejected row's columns under the privacy rule, and where its input came from."""

    rejection: Rejection
    reason: str
    channel: str | None
    event_id: str | None
    raw: str
    raw_bytes: int
    source_file: str | None
    source_line: int | None
    source_message_id: str | None


def redacted(rejected: RejectedInput) -> RedactedRejection:
    """What a rejected row may show of its input (`_redacted_columns`); never raises."""
    rejection, payload, source, line, message = rejected
    try:
        reason, channel, event_id, raw = _redacted_columns(rejection, payload)
    except Exception as err:  # one event must never stop the run
        # Nothing the event sent is written: only what the product itself knows.
        reason, channel, event_id = rejection.code.value, None, None
        raw = _unredactable(err)
    return RedactedRejection(
        rejection, reason, channel, event_id, raw, len(payload), source, line, message
    )


def rejected_table(
    rejections: Iterable[RejectedInput], run_id: str, ingested_micros: int
) -> pa.Table:
    """Rejected rows with their redacted raw input and origin."""
    return redacted_table([redacted(r) for r in rejections], run_id, ingested_micros)


def redacted_table(
    rows: Sequence[RedactedRejection], run_id: str, ingested_micros: int
) -> pa.Table:
    """The rejected table of rows already redacted."""
    schema = rejected_schema()
    n = len(rows)
    columns: dict[str, list[Any]] = {
        "error_code": [r.rejection.code.value for r in rows],
        "reason": [r.reason for r in rows],
        "step": [r.rejection.step.value for r in rows],
        "channel": [r.channel for r in rows],
        "event_id": [r.event_id for r in rows],
        "raw": [r.raw for r in rows],
        "raw_bytes": [r.raw_bytes for r in rows],
        "source_file": [r.source_file for r in rows],
        "source_line": [r.source_line for r in rows],
        "source_message_id": [r.source_message_id for r in rows],
        "ingested_at": [ingested_micros] * n,
        "run_id": [run_id] * n,
        "schema_version": [SCHEMA_VERSION] * n,
    }
    arrays = [
        pa.array(columns[f.name], pa.int64()).cast(_TS)
        if f.name == "ingested_at"
        else pa.array(columns[f.name], f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _accepted_stats(
    channels: pa.ChunkedArray, unknown_service: Sequence[bool], unmasked_card: Sequence[bool]
) -> st.Stats:
    """Read counts and data-quality warnings of the accepted rows, per channel: counted in
    numpy, a few calls a block (a Counter over each row's tuple cost ~0.4 µs a row)."""
    stats: st.Stats = Counter()
    names = pc.unique(channels)
    if len(names) == 0:
        return stats
    codes = pc.index_in(channels, value_set=names).to_numpy(zero_copy_only=False)
    unknown = np.asarray(unknown_service, dtype=bool)
    unmasked = np.asarray(unmasked_card, dtype=bool)
    for code, channel in enumerate(names.to_pylist()):
        mine = codes == code
        stats[st.read_key(channel)] += int(mine.sum())
        for warning, flagged in (
            (QualityWarning.UNKNOWN_SERVICE, unknown),
            (QualityWarning.UNMASKED_CARD_NUMBER, unmasked),
        ):
            if count := int(np.count_nonzero(mine & flagged)):
                stats[st.warning_key(channel, warning.value)] += count
    return stats


def unprocessable(err: BaseException, step: RejectStep) -> Rejection:
    """The rejection of an event whose processing raised: the class says what broke."""
    return Rejection(
        RejectCode.UNPROCESSABLE, f"{step.value} failed with {type(err).__name__}", step
    )


def _identifier_rejection(column: str) -> Rejection:
    reason = f"{column} holds a card number or the payer's CPR; it cannot be written"
    return Rejection(RejectCode.PERSONAL_DATA_IN_ID, reason, RejectStep.VALIDATE)


def _validated(
    payload: bytes, normalise: Normaliser, max_bytes: int
) -> tuple[NormalisedPayment, str | None] | Rejection:
    """(normalised payment, payer CPR) or a rejection; never raises for any input."""
    try:
        outcome = parse_event(payload, max_bytes)
    except (Exception, RecursionError) as err:  # one event never fails a run
        return unprocessable(err, RejectStep.PARSE)
    if isinstance(outcome, Rejection):
        return outcome
    try:
        return normalise(outcome), payer_cpr(outcome)
    except Exception as err:
        return unprocessable(err, RejectStep.NORMALISE)


def _bulk(block: RawBlock, ctx: RunContext) -> BulkAccepted:
    """What the bulk path accepts of a block; nothing (every event to the reference path) when
    it is off, or if it fails: a block never fails for its sake."""
    if not ctx.bulk:
        return NOTHING_ACCEPTED
    try:
        return ctx.bulk_normaliser(block.payloads, ctx.max_event_bytes)
    except Exception as err:
        # Where it failed, but not the error's message: Arrow's errors quote the values they
        # could not read, and logs are output the privacy rule covers too.
        log.warning(
            "bulk path failed on a block of %s with %s; validating it event by event\n%s",
            block.source,
            type(err).__name__,
            "".join(traceback.format_tb(err.__traceback__)),
        )
        return NOTHING_ACCEPTED


def process_block(block: RawBlock, ctx: RunContext) -> BlockResult:
    """Validate and normalise every event of a block; each one is accepted or rejected.

    The bulk path takes the canonical lines; the reference path (pydantic, then the
    Normaliser) every other one, in block order, so both give one table in line order."""
    bulk = _bulk(block, ctx)
    rows: list[NormalisedPayment] = []
    cprs: list[str | None] = []
    kept: list[int] = []
    rejections: list[RejectedInput] = []
    batch = block.line_numbers is not None  # streaming rows name their message, not a file
    normalise, max_bytes = ctx.normaliser, ctx.max_event_bytes
    left = np.ones(len(block.payloads), dtype=bool)
    left[bulk.rows] = False
    for index in np.flatnonzero(left).tolist():
        payload = block.payloads[index]
        outcome = _validated(payload, normalise, max_bytes)
        if isinstance(outcome, Rejection):
            line, message = block.origin(index)
            source = block.source_of(index) if batch else None
            rejections.append(RejectedInput(outcome, payload, source, line, message))
        else:
            rows.append(outcome[0])
            cprs.append(outcome[1])
            kept.append(index)
    business = _business_table(rows)
    unknown = [r.unknown_service for r in rows]
    unmasked = [r.unmasked_card for r in rows]
    if bulk.rows and not rows:  # the usual block: the bulk path's rows are all there is
        business, kept, cprs = bulk.table, bulk.rows, bulk.cprs
        unknown, unmasked = bulk.unknown_service, bulk.unmasked_card
    elif bulk.rows:
        order = np.argsort(np.asarray(bulk.rows + kept, dtype=np.int64), kind="stable").tolist()
        business = pa.concat_tables([bulk.table, business]).take(pa.array(order, pa.int64()))
        kept, cprs = _ordered(bulk.rows + kept, order), _ordered(bulk.cprs + cprs, order)
        unknown = _ordered(bulk.unknown_service + unknown, order)
        unmasked = _ordered(bulk.unmasked_card + unmasked, order)
    lines = [block.line_numbers[i] for i in kept] if block.line_numbers is not None else None
    messages = [block.message_ids[i] for i in kept] if block.message_ids is not None else None
    sources = (block.sources_of(kept) if block.source_starts else block.source) if batch else None
    accepted = _with_lineage(business, lines, messages, sources, ctx)
    screening_started = time.thread_time()  # CPU time of this thread: the cost, not waits
    accepted, holding_secrets = screen_accepted(accepted, cprs)
    if holding_secrets:
        for row, column in sorted(holding_secrets.items()):
            index = kept[row]
            line, message = block.origin(index)
            rejection = _identifier_rejection(column)
            source = block.source_of(index) if batch else None
            rejections.append(
                RejectedInput(rejection, block.payloads[index], source, line, message)
            )
        keep = [row for row in range(len(kept)) if row not in holding_secrets]
        accepted = accepted.take(pa.array(keep, pa.int64()))
        unknown, unmasked = _ordered(unknown, keep), _ordered(unmasked, keep)
    rows_shown = [redacted(r) for r in rejections]
    privacy_seconds = time.thread_time() - screening_started
    rejected = redacted_table(rows_shown, ctx.run_id, ctx.ingested_micros)
    stats = _accepted_stats(accepted.column("channel"), unknown, unmasked)
    if block.blank_lines:
        stats[st.BLANK_LINES] += block.blank_lines
    for channel, code in zip(
        rejected.column("channel").to_pylist(),
        rejected.column("error_code").to_pylist(),
        strict=True,
    ):
        known = channel if channel in _CHANNELS else st.UNKNOWN_CHANNEL
        stats[st.read_key(known)] += 1
        stats[st.rejected_key(known, code)] += 1
    return BlockResult(accepted, rejected, stats, privacy_seconds)


def _ordered(values: list[_T], order: Sequence[int]) -> list[_T]:
    return [values[i] for i in order]


_CHANNELS = frozenset(c.value for c in Channel)
