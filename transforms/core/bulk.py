"""The bulk path of validation and normalisation: the lines producers send every day, checked
and normalised a column at a time.

pydantic (`transforms.core.validate`) stays the schema of record: it defines what is valid,
the reject codes and the contract's JSON Schema. This path only *accepts*: a row it accepts is
one pydantic accepts, normalised exactly as `Normaliser` would; every other row (malformed,
another key order, an extra or a missing field, an escape, a value at an edge) is left to the
reference path, which accepts or rejects it with its reason. So it can be narrow without being
wrong; `tests/transforms/test_bulk_differential.py` holds it to that on every generated kind of
event, the test corpora and mutations of valid events.

How: a line is taken here only if it is a channel's canonical JSON, the keys of the contract
in the order producers write them, each once, whitespace allowed between tokens, strings
without escapes or control characters, numbers as plain integers. One regular expression per
channel recognises that (RE2's DFA, no backtracking: microseconds per line), and so proves
there is no repeated key, no unknown field and no lookalike type; those lines then fix where
every token is, so `transforms.core.canonical` reads them into typed columns from the
positions of their quotes, with no JSON parse. Each line is tried first against the
expression of the channel it starts with. What pydantic checks
beyond the grammar (lengths in code points, calendar dates, ranges, the money rule) and what
the Normaliser does (ids, statuses, UTC instants, Bahrain days, the catalogue, pseudonyms,
card digits) run over the columns of a whole block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import payment_schema
from schemas.enums import Channel, PaymentMethod
from schemas.money import CURRENCY, MAX_FILS
from schemas.raw import (
    CARD_MAX_CHARS,
    CODE_MAX_CHARS,
    EARLIEST,
    EARLIEST_MS,
    IDENTIFIER_MAX_CHARS,
    LATEST,
    LATEST_MS,
    AppMethod,
    AppOs,
    PortalMethod,
)
from schemas.timekeeping import BAHRAIN_UTC_OFFSET
from transforms.core.canonical import read_canonical
from transforms.core.columnar import decimal_from_fils
from transforms.core.normalise import APP_STATUS, KIOSK_STATUS, PORTAL_STATUS
from transforms.core.privacy import Pseudonymiser, card_last4

_MICROS_PER_SECOND = 1_000_000
_MICROS_PER_DAY = 86_400 * _MICROS_PER_SECOND
_BAHRAIN_OFFSET_SECONDS = int(BAHRAIN_UTC_OFFSET.total_seconds())
_FIRST_YEAR, _LAST_YEAR = EARLIEST.year, LATEST.year - 1
# Offsets the bulk path reads: every zone in use lies within -12:00..+14:00. A wider one (which
# pydantic may take or refuse) goes to the reference path.
_MAX_OFFSET_SECONDS = 14 * 3600

_PORTAL = Channel.PORTAL.value
_MOBILE_APP = Channel.MOBILE_APP.value
_KIOSK = Channel.KIOSK.value
_KIOSK_METHOD = PaymentMethod.CARD.value


# --- the canonical lines ---------------------------------------------------------------------

_WS = r"[ \t\r]*"  # JSON whitespace a line can hold
_TEXT = r'"[^"\\\x00-\x1f]+"'  # a string with no escape and no control character
_CODE = r'"[A-Za-z0-9][A-Za-z0-9_.-]*"'  # schemas.raw.CODE_PATTERN, its length checked after
_CPR = r'"[0-9]{9}"'  # schemas.raw.CPR_PATTERN
_POSITIVE = r"[1-9][0-9]{0,11}"  # 1..MAX_FILS, as JSON writes an integer
_COUNT = r"(?:0|[1-9][0-9]{0,17})"  # a non-negative integer within int64
_AMOUNT = r'"[0-9]{1,15}(?:\.[0-9]{1,3})?"'  # decimal text, the money rule checked after
_OFFSET_TIME = r'"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:Z|[+-][0-9]{2}:[0-9]{2})"'
_WALL_CLOCK = r'"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"'
# A kiosk card as the firmware masks it: the last four digits are all there is to keep.
_MASKED_CARD = r"^\*{12}[0-9]{4}$"


def _one_of(*words: str) -> str:
    return '"(?:' + "|".join(words) + ')"'


def _key(name: str, value: str) -> str:
    return f'{_WS}"{name}"{_WS}:{_WS}{value}{_WS}'


def _object(*members: str, optional: Sequence[str] = ()) -> str:
    """A JSON object of these members in this order, then each optional one, if present, in
    its turn."""
    body = ",".join(members) + "".join(f"(?:,{m})?" for m in optional)
    return r"\{" + body + r"\}"


def _line(shape: str) -> str:
    return f"^{_WS}{shape}{_WS}$"


_NULLABLE_TEXT = f"(?:{_TEXT}|null)"
_LINES = {
    _PORTAL: _line(
        _object(
            _key("channel", '"portal"'),
            _key("txn_id", _TEXT),
            _key("service", _object(_key("code", _CODE), _key("entity", _TEXT))),
            _key("amount_fils", _POSITIVE),
            _key("currency", '"BHD"'),
            _key("status", _one_of(*PORTAL_STATUS)),
            _key("paid_at", _OFFSET_TIME),
            _key("payer", _object(_key("cpr", _CPR))),
            _key("method", _one_of(*get_args(PortalMethod))),
            optional=[_key("gateway_ref", _NULLABLE_TEXT)],
        )
    ),
    _MOBILE_APP: _line(
        _object(
            _key("channel", '"mobile_app"'),
            _key("event_id", _TEXT),
            _key(
                "app",
                _object(
                    _key("id", _TEXT),
                    _key("version", _TEXT),
                    _key("os", _one_of(*get_args(AppOs))),
                ),
            ),
            _key("service_code", _CODE),
            _key(
                "payment",
                _object(
                    _key("amount", _AMOUNT),
                    _key("currency", '"BHD"'),
                    _key("method", _one_of(*get_args(AppMethod))),
                    _key("outcome", _one_of(*APP_STATUS)),
                ),
            ),
            _key("ts", r"[1-9][0-9]{0,15}"),
            _key("user", _object(_key("cpr", _CPR))),
        )
    ),
    _KIOSK: _line(
        _object(
            _key("channel", '"kiosk"'),
            _key("kiosk_id", _TEXT),
            _key("seq", _COUNT),
            _key("site", _TEXT),
            _key("service", _CODE),
            _key("amount", _AMOUNT),
            _key("local_time", _WALL_CLOCK),
            _key("result", _one_of(*KIOSK_STATUS)),
            optional=[_key("card", _NULLABLE_TEXT), _key("cpr", f"(?:{_CPR}|null)")],
        )
    ),
}
# How producers start a line (no whitespace): a line that starts so can only be its channel's
# (each expression fixes the channel's value first), so it is tried against that one alone.
_COMPACT_STARTS = {channel: f'{{"channel":"{channel}",' for channel in _LINES}


def _candidates(lines: pa.Array) -> dict[str, np.ndarray]:
    """The rows to try against each channel's expression: its compact lines, and every line
    that starts some other way (whitespace, another key first), which are tried against all
    three. A prefix test is a memcmp (~25 ns a line); an expression that fails takes RE2 into
    the line first (three passes over every line cost ~2 µs a line, measured)."""
    compact = {c: _flags(pc.starts_with(lines, start)) for c, start in _COMPACT_STARTS.items()}
    other = ~np.logical_or.reduce(list(compact.values()))
    return {channel: np.flatnonzero(rows | other) for channel, rows in compact.items()}


_S = pa.string()
_SCHEMAS = {
    _PORTAL: pa.schema(
        [
            ("channel", _S),
            ("txn_id", _S),
            ("service", pa.struct([("code", _S), ("entity", _S)])),
            ("amount_fils", pa.int64()),
            ("currency", _S),
            ("status", _S),
            ("paid_at", _S),
            ("payer", pa.struct([("cpr", _S)])),
            ("method", _S),
            ("gateway_ref", _S),
        ]
    ),
    _MOBILE_APP: pa.schema(
        [
            ("channel", _S),
            ("event_id", _S),
            ("app", pa.struct([("id", _S), ("version", _S), ("os", _S)])),
            ("service_code", _S),
            (
                "payment",
                pa.struct([("amount", _S), ("currency", _S), ("method", _S), ("outcome", _S)]),
            ),
            ("ts", pa.int64()),
            ("user", pa.struct([("cpr", _S)])),
        ]
    ),
    _KIOSK: pa.schema(
        [
            ("channel", _S),
            ("kiosk_id", _S),
            ("seq", pa.int64()),
            ("site", _S),
            ("service", _S),
            ("amount", _S),
            ("local_time", _S),
            ("result", _S),
            ("card", _S),
            ("cpr", _S),
        ]
    ),
}


# How many of each schema's last members are optional (the grammar's `optional=` ones).
_OPTIONAL_MEMBERS = {_PORTAL: 1, _MOBILE_APP: 0, _KIOSK: 2}


@dataclass(frozen=True)
class BulkAccepted:
    """The rows of a block the bulk path accepted, in block order.

    `rows` are their indices in the block; `table` their payment columns (`business_schema`:
    the lineage is the caller's); `cprs` each payer's CPR (for the privacy screen);
    `unknown_service` and `unmasked_card` the warnings the reference path would count.
    """

    rows: list[int]
    table: pa.Table
    cprs: list[str | None]
    unknown_service: list[bool]
    unmasked_card: list[bool]


_BUSINESS_COLUMNS = [
    "event_id",
    "channel",
    "service_code",
    "service_name_en",
    "service_name_ar",
    "service_entity",
    "amount",
    "currency",
    "status",
    "payment_method",
    "occurred_at",
    "event_date",
    "payer_key",
    "card_last4",
    "kiosk_id",
    "kiosk_site",
    "app_id",
    "app_version",
    "app_os",
]


def business_schema() -> pa.Schema:
    """The payment columns a normaliser fills (the rest is lineage)."""
    schema = payment_schema()
    return pa.schema([schema.field(name) for name in _BUSINESS_COLUMNS])


NOTHING_ACCEPTED = BulkAccepted([], business_schema().empty_table(), [], [], [])


class BulkNormaliser:
    """Accepts and normalises, a block at a time, the canonical lines it can prove valid."""

    def __init__(
        self,
        pseudonymise: Pseudonymiser,
        enrichment: Mapping[str, tuple[str, str, str]],
    ) -> None:
        """`pseudonymise` and `enrichment` are the Normaliser's own (`Normaliser.pseudonymise`,
        `Normaliser.enrichment`): one pseudonym rule, one catalogue lookup."""
        self._pseudonymise = pseudonymise
        self._codes = pa.array(list(enrichment), _S)
        names_en, names_ar, entities = zip(*enrichment.values(), strict=True) or ((), (), ())
        self._names_en = pa.array(list(names_en), _S)
        self._names_ar = pa.array(list(names_ar), _S)
        self._entities = pa.array(list(entities), _S)

    def __call__(self, payloads: Sequence[bytes], max_bytes: int) -> BulkAccepted:
        lines = _text(payloads, max_bytes)
        if lines is None:
            return NOTHING_ACCEPTED
        parts = []
        for channel, tried in _candidates(lines).items():
            if not len(tried):
                continue
            picked = lines.take(pa.array(tried))
            matched = _flags(pc.match_substring_regex(picked, _LINES[channel]))
            rows = tried[matched]
            if not len(rows):
                continue
            table = read_canonical(
                picked.filter(matched), _SCHEMAS[channel], _OPTIONAL_MEMBERS[channel]
            )
            build = {_PORTAL: self._portal, _MOBILE_APP: self._app, _KIOSK: self._kiosk}
            columns, ok = build[channel](table)
            keep = pa.array(np.flatnonzero(ok))
            columns = {name: column.take(keep) for name, column in columns.items()}
            parts.append(self._finish(channel, rows[ok], columns))
        if not parts:
            return NOTHING_ACCEPTED
        rows = np.concatenate([p[0] for p in parts])
        order = np.argsort(rows, kind="stable")
        taken = pa.array(order)
        table = pa.concat_tables([p[1] for p in parts]).take(taken)
        cprs = pa.concat_arrays([p[2] for p in parts]).take(taken)
        unknown = np.concatenate([p[3] for p in parts])[order]
        unmasked = np.concatenate([p[4] for p in parts])[order]
        return BulkAccepted(
            rows[order].tolist(), table, cprs.to_pylist(), unknown.tolist(), unmasked.tolist()
        )

    # --- what pydantic checks beyond the grammar, and the normalised columns ------------------

    def _portal(self, t: pa.Table) -> tuple[dict[str, pa.Array], np.ndarray]:
        service, payer = t["service"].combine_chunks(), t["payer"].combine_chunks()
        txn, ref = _column(t, "txn_id"), _column(t, "gateway_ref")
        code, entity = service.field("code"), service.field("entity")
        ok = _identifier(txn) & _identifier(entity) & _identifier(ref, nullable=True)
        ok &= _at_most(code, CODE_MAX_CHARS)
        micros, valid = _offset_instants(_column(t, "paid_at"))
        ok &= valid
        columns = {
            "event_id": _prefixed(_PORTAL + ":", txn),
            "service_code": code,
            "amount_fils": _column(t, "amount_fils"),
            "status": _mapped(_column(t, "status"), PORTAL_STATUS),
            "payment_method": _column(t, "method"),
            "occurred_micros": pa.array(micros, pa.int64()),
            "cpr": payer.field("cpr"),
            "card": pa.nulls(t.num_rows, _S),
        }
        return columns, ok

    def _app(self, t: pa.Table) -> tuple[dict[str, pa.Array], np.ndarray]:
        app, payment = t["app"].combine_chunks(), t["payment"].combine_chunks()
        event_id, code = _column(t, "event_id"), _column(t, "service_code")
        app_id, version = app.field("id"), app.field("version")
        ok = _identifier(event_id) & _identifier(app_id) & _identifier(version)
        ok &= _at_most(code, CODE_MAX_CHARS)
        ts = _column(t, "ts").to_numpy(zero_copy_only=False)
        ok &= (ts >= EARLIEST_MS) & (ts < LATEST_MS)
        fils, valid = _amounts(payment.field("amount"))
        ok &= valid
        columns = {
            "event_id": _prefixed(_MOBILE_APP + ":", event_id),
            "service_code": code,
            "amount_fils": pa.array(fils, pa.int64()),
            "status": _mapped(payment.field("outcome"), APP_STATUS),
            "payment_method": payment.field("method"),
            "occurred_micros": pa.array(ts * 1000, pa.int64()),
            "cpr": t["user"].combine_chunks().field("cpr"),
            "card": pa.nulls(t.num_rows, _S),
            "app_id": app_id,
            "app_version": version,
            "app_os": app.field("os"),
        }
        return columns, ok

    def _kiosk(self, t: pa.Table) -> tuple[dict[str, pa.Array], np.ndarray]:
        kiosk_id, site, code = _column(t, "kiosk_id"), _column(t, "site"), _column(t, "service")
        card = _column(t, "card")
        ok = _identifier(kiosk_id) & _identifier(site) & _at_most(code, CODE_MAX_CHARS)
        ok &= _at_most(card, CARD_MAX_CHARS, nullable=True)
        fils, valid = _amounts(_column(t, "amount"))
        ok &= valid
        micros, valid = _wall_clock_instants(_column(t, "local_time"))
        ok &= valid
        seq = _column(t, "seq").cast(_S)
        columns = {
            "event_id": pc.binary_join_element_wise(_KIOSK, kiosk_id, seq, ":"),
            "service_code": code,
            "amount_fils": pa.array(fils, pa.int64()),
            "status": _mapped(_column(t, "result"), KIOSK_STATUS),
            "payment_method": pa.array([_KIOSK_METHOD] * t.num_rows, _S),
            "occurred_micros": pa.array(micros, pa.int64()),
            "cpr": _column(t, "cpr"),
            "card": card,
            "kiosk_id": kiosk_id,
            "kiosk_site": site,
        }
        return columns, ok

    def _finish(
        self, channel: str, rows: np.ndarray, columns: dict[str, pa.Array]
    ) -> tuple[np.ndarray, pa.Table, pa.Array, np.ndarray, np.ndarray]:
        """The normalised columns every channel shares: upper-case service codes with the
        catalogue's names, BHD amounts, UTC instants and Bahrain days, pseudonyms, cards."""
        n = len(rows)
        code = pc.utf8_upper(columns["service_code"])  # ASCII by CODE_PATTERN
        at = pc.index_in(code, value_set=self._codes)
        micros = columns["occurred_micros"].to_numpy(zero_copy_only=False)
        days = (micros + _BAHRAIN_OFFSET_SECONDS * _MICROS_PER_SECOND) // _MICROS_PER_DAY
        last4, unmasked = _cards(columns["card"])
        absent = pa.nulls(n, _S)
        names_en = self._names_en.take(at)
        out = {
            "event_id": columns["event_id"],
            "channel": pa.array([channel] * n, _S),
            "service_code": code,
            "service_name_en": names_en,
            "service_name_ar": self._names_ar.take(at),
            "service_entity": self._entities.take(at),
            "amount": decimal_from_fils(columns["amount_fils"].to_numpy(zero_copy_only=False)),
            "currency": pa.array([CURRENCY] * n, _S),
            "status": columns["status"],
            "payment_method": columns["payment_method"],
            "occurred_at": pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "event_date": pa.array(days.astype(np.int32), pa.int32()).cast(pa.date32()),
            "payer_key": self._pseudonyms(columns["cpr"]),
            "card_last4": last4,
            "kiosk_id": columns.get("kiosk_id", absent),
            "kiosk_site": columns.get("kiosk_site", absent),
            "app_id": columns.get("app_id", absent),
            "app_version": columns.get("app_version", absent),
            "app_os": columns.get("app_os", absent),
        }
        schema = business_schema()
        table = pa.Table.from_arrays([out[f.name] for f in schema], schema=schema)
        return rows, table, columns["cpr"], _flags(pc.is_null(names_en)), unmasked

    def _pseudonyms(self, cprs: pa.Array) -> pa.Array:
        """The payer key of each CPR, each distinct CPR keyed once (residents pay again)."""
        distinct = pc.unique(cprs)
        keys = pa.array(self._pseudonymise.of_each(distinct.to_pylist()), _S)
        return keys.take(pc.index_in(cprs, value_set=distinct, skip_nulls=False))


# --- Arrow helpers ---------------------------------------------------------------------------


def _text(payloads: Sequence[bytes], max_bytes: int) -> pa.Array | None:
    """The block as a string column: a line over the size limit or not UTF-8 as an empty
    string, which no channel's line matches (the reference path rejects it)."""
    if not payloads:
        return None
    sized = [p if len(p) <= max_bytes else b"" for p in payloads]
    raw = pa.array(sized, pa.binary())
    try:
        return raw.cast(_S)  # Arrow checks UTF-8 itself, in one pass over the block
    except pa.ArrowInvalid:
        usable = [p if _utf8(p) else b"" for p in sized]
        # Every value is valid UTF-8 by now: the cast need not check it again.
        return pa.array(usable, pa.binary()).cast(_S, safe=False)


def _utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _column(table: pa.Table, name: str) -> pa.Array:
    return table[name].combine_chunks()


def _flags(array: pa.Array | pa.ChunkedArray, nullable: bool = False) -> np.ndarray:
    """A boolean column as numpy, a null counting as `nullable` (an absent optional field)."""
    return np.asarray(pc.fill_null(array, nullable).to_numpy(zero_copy_only=False), dtype=bool)


def _identifier(values: pa.Array, nullable: bool = False) -> np.ndarray:
    length = pc.utf8_length(values)  # code points, as pydantic counts them
    within = pc.and_(pc.greater_equal(length, 1), pc.less_equal(length, IDENTIFIER_MAX_CHARS))
    return _flags(within, nullable)


def _at_most(values: pa.Array, most: int, nullable: bool = False) -> np.ndarray:
    return _flags(pc.less_equal(pc.utf8_length(values), most), nullable)


def _mapped(values: pa.Array, mapping: dict[str, str]) -> pa.Array:
    """Raw vocabulary -> normalised values (the grammar admits no other value)."""
    keys = pa.array(list(mapping), _S)
    return pa.array(list(mapping.values()), _S).take(pc.index_in(values, value_set=keys))


def _prefixed(prefix: str, values: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(prefix, values, "")


# --- money and time -------------------------------------------------------------------------


def _digits(text: pa.Array, width: int) -> np.ndarray:
    """The first `width` bytes of each value as digits (byte - '0'), one row per value: the
    grammar fixes where each digit of a date-time stands."""
    values = pc.fill_null(text, "").cast(pa.binary())
    if len(values) == 0:
        return np.zeros((0, width), dtype=np.int64)
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[values.offset :][: len(values) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer else np.zeros(1, np.uint8)
    at = offsets[:-1, None] + np.arange(width)
    digits: np.ndarray = data[np.minimum(at, len(data) - 1)].astype(np.int64) - ord("0")
    return digits


def _number(digits: np.ndarray, start: int, count: int) -> np.ndarray:
    value = np.zeros(len(digits), dtype=np.int64)
    for position in range(start, start + count):
        value = value * 10 + digits[:, position]
    return value


def _amounts(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(fils, valid) of decimal BHD text the grammar admitted (digits, then at most three
    decimals), by schemas.money's rule: positive and at most MAX_FILS."""
    parts = pc.split_pattern(text, ".", max_splits=1)
    whole = pc.list_element(parts, 0).cast(pa.int64()).to_numpy(zero_copy_only=False)
    has_fraction = pc.greater(pc.list_value_length(parts), 1)
    fraction = pc.list_element(pc.list_slice(parts, 1, 2), 0) if len(text) else text
    fraction = pc.if_else(has_fraction, fraction, "")
    frac = pc.utf8_rpad(fraction, 3, "0").cast(pa.int64()).to_numpy(zero_copy_only=False)
    fils = whole * 1000 + frac
    valid = (fils > 0) & (fils <= MAX_FILS)
    return np.where(valid, fils, 0), valid


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return np.asarray(era * 146_097 + doe - 719_468, dtype=np.int64)


def _month_days(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
    return np.asarray(days[np.clip(month, 0, 12)] + ((month == 2) & leap), dtype=np.int64)


def _clock(digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(local epoch seconds, valid) of `YYYY-MM-DD?HH:MM:SS` digits: a real calendar date in
    2000-2099 as written (schemas.raw) and a time of day up to 23:59:59."""
    year, month, day = _number(digits, 0, 4), _number(digits, 5, 2), _number(digits, 8, 2)
    hour, minute, second = _number(digits, 11, 2), _number(digits, 14, 2), _number(digits, 17, 2)
    valid = (month >= 1) & (month <= 12) & (day >= 1) & (day <= _month_days(year, month))
    valid &= (hour <= 23) & (minute <= 59) & (second <= 59)
    valid &= (year >= _FIRST_YEAR) & (year <= _LAST_YEAR)
    seconds = _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
    return seconds, valid


def _offset_instants(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(UTC epoch microseconds, valid) of ISO 8601 text with `Z` or a `+HH:MM` offset."""
    digits = _digits(text, 25)
    seconds, valid = _clock(digits)
    zulu = _flags(pc.equal(pc.utf8_length(text), 20))
    sign = np.where(digits[:, 19] == ord("-") - ord("0"), -1, 1)
    offset = sign * (_number(digits, 20, 2) * 3600 + _number(digits, 23, 2) * 60)
    offset = np.where(zulu, 0, offset)
    valid &= zulu | (_number(digits, 23, 2) <= 59)
    valid &= np.abs(offset) <= _MAX_OFFSET_SECONDS
    return np.where(valid, (seconds - offset) * _MICROS_PER_SECOND, 0), valid


def _wall_clock_instants(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(UTC epoch microseconds, valid) of Bahrain wall-clock text."""
    seconds, valid = _clock(_digits(text, 19))
    micros = (seconds - _BAHRAIN_OFFSET_SECONDS) * _MICROS_PER_SECOND
    return np.where(valid, micros, 0), valid


def _cards(cards: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(card_last4, unmasked) of kiosk card fields, by the privacy rule (`card_last4`): the
    masked form in columns, any other text through the rule itself."""
    masked = _flags(pc.match_substring_regex(cards, _MASKED_CARD))
    present = _flags(pc.greater(pc.utf8_length(cards), 0))
    last4 = pc.utf8_slice_codeunits(cards, -4)
    odd = np.flatnonzero(present & ~masked)
    unmasked = np.zeros(len(cards), dtype=bool)
    values = pc.if_else(pa.array(masked), last4, pa.scalar(None, _S))
    if len(odd):
        listed = values.to_pylist()
        for row in odd.tolist():
            listed[row], unmasked[row] = card_last4(cards[row].as_py())
        values = pa.array(listed, _S)
    return values, unmasked
