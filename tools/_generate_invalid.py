"""Invalid input lines for the generator: one maker per kind of breakage the pipeline must reject.

Each maker starts from a well-formed event and breaks exactly one rule, so a rejected line tells
which validation caught it. Every kind keeps the event unacceptable even to a lenient parser
(the huge line and the deep nesting sit in the CPR/payer field, not in an ignorable extra).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import orjson

from schemas.enums import Channel

Event = dict[str, Any]
_RAW = "__raw_token__"  # placeholder replaced by a bare JSON token orjson would never write
_NESTING_DEPTH = 5_000
_HUGE_BYTES = (1 << 20) + 4_096  # over the 1 MiB line limit

_AMOUNT_PATH: dict[Channel, tuple[str, ...]] = {
    Channel.PORTAL: ("amount_fils",),
    Channel.MOBILE_APP: ("payment", "amount"),
    Channel.KIOSK: ("amount",),
}
_CPR_PATH: dict[Channel, tuple[str, ...]] = {
    Channel.PORTAL: ("payer", "cpr"),
    Channel.MOBILE_APP: ("user", "cpr"),
    Channel.KIOSK: ("cpr",),
}
_REQUIRED: dict[Channel, tuple[str, ...]] = {
    Channel.PORTAL: ("txn_id", "amount_fils", "status", "paid_at", "payer"),
    Channel.MOBILE_APP: ("event_id", "payment", "ts", "service_code"),
    Channel.KIOSK: ("kiosk_id", "seq", "amount", "local_time", "result"),
}
_BAD_TIMES: dict[Channel, tuple[Any, ...]] = {
    Channel.PORTAL: ("2017-02-30T10:00:00+03:00", "2017-06-30T25:61:00+03:00", "yesterday"),
    Channel.MOBILE_APP: (10**16, 2**63, -(10**15)),
    Channel.KIOSK: ("2017-02-30 10:00:00", "2017-06-30 24:00:00", "30/06/2017 21:15:03"),
}
_BAD_UTF8 = (
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
)  # stray, broken, surrogate, overlong
_NOT_OBJECTS = (b"[1,2]", b'"portal"', b"42", b"null", b"true", b'[{"channel":"portal"}]')


def _get(event: Event, path: tuple[str, ...]) -> Any:
    node: Any = event
    for key in path:
        node = node[key]
    return node


def _set(event: Event, path: tuple[str, ...], value: Any) -> None:
    node: Any = event
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _fils(event: Event, channel: Channel) -> int:
    value = _get(event, _AMOUNT_PATH[channel])
    if isinstance(value, int):
        return value
    whole, frac = str(value).split(".")
    return int(whole) * 1000 + int(frac)


def _text(fils: int, sign: str = "") -> str:
    return f"{sign}{fils // 1000}.{fils % 1000:03d}"


def _dump(event: Event, raw: bytes = b"") -> bytes:
    return orjson.dumps(event).replace(f'"{_RAW}"'.encode(), raw)


def _amount(event: Event, ch: Channel, portal: Any, text: str, raw: bytes = b"") -> bytes:
    _set(event, _AMOUNT_PATH[ch], portal if ch is Channel.PORTAL else text)
    return _dump(event, raw)


def _malformed_json(event: Event, _ch: Channel, rng: random.Random) -> bytes:
    line = _dump(event)
    cut = rng.randrange(2, len(line) - 1)  # a proper prefix of an object never closes it
    while line[cut] >= 0x80:  # cut between characters, so the line stays valid UTF-8
        cut -= 1
    return line[:cut]


def _invalid_utf8(event: Event, _ch: Channel, rng: random.Random) -> bytes:
    return _dump(event).replace(b'"channel":"', b'"channel":"' + rng.choice(_BAD_UTF8), 1)


def _wrong_type(event: Event, ch: Channel, _rng: random.Random) -> bytes:
    if ch is Channel.PORTAL:
        event["amount_fils"] = str(event["amount_fils"])  # "12500" instead of 12500
    elif ch is Channel.MOBILE_APP:
        event["payment"]["amount"] = _fils(event, ch) / 1000  # 12.5, a float
    else:
        event["seq"] = str(event["seq"])
    return _dump(event)


def _missing_field(event: Event, ch: Channel, rng: random.Random) -> bytes:
    del event[rng.choice(_REQUIRED[ch])]
    return _dump(event)


def _unknown_channel(event: Event, _ch: Channel, rng: random.Random) -> bytes:
    event["channel"] = rng.choice(("counter", "sms", "whatsapp", "atm", "pos"))
    return _dump(event)


def _missing_channel(event: Event, _ch: Channel, _rng: random.Random) -> bytes:
    del event["channel"]
    return _dump(event)


def _absurd_nesting(event: Event, ch: Channel, _rng: random.Random) -> bytes:
    _set(event, _CPR_PATH[ch], _RAW)
    return _dump(event, b"[" * _NESTING_DEPTH + b"]" * _NESTING_DEPTH)


def _huge_line(event: Event, ch: Channel, _rng: random.Random) -> bytes:
    _set(event, _CPR_PATH[ch], "8" * _HUGE_BYTES)
    return _dump(event)


def _amount_4_decimals(event: Event, ch: Channel, rng: random.Random) -> bytes:
    fils = _fils(event, ch)
    text = f"{_text(fils)}{rng.randrange(1, 10)}"
    return _amount(event, ch, fils + rng.randrange(1, 10) / 10, text)  # 12500.1 fils = 12.5001


def _amount_nan(event: Event, ch: Channel, _rng: random.Random) -> bytes:
    return _amount(event, ch, _RAW, "NaN", b"NaN")


def _amount_infinity(event: Event, ch: Channel, rng: random.Random) -> bytes:
    token = rng.choice(("Infinity", "-Infinity"))
    return _amount(event, ch, _RAW, token, token.encode())


def _zero_amount(event: Event, ch: Channel, _rng: random.Random) -> bytes:
    return _amount(event, ch, 0, "0.000")


def _negative_amount(event: Event, ch: Channel, _rng: random.Random) -> bytes:
    fils = _fils(event, ch)
    return _amount(event, ch, -fils, _text(fils, "-"))


def _wrong_currency(event: Event, ch: Channel, rng: random.Random) -> bytes:
    currency = rng.choice(("USD", "USD", "SAR", "KWD"))
    if ch is Channel.PORTAL:
        event["currency"] = currency
    else:
        event["payment"]["currency"] = currency
    return _dump(event)


def _bad_timestamp(event: Event, ch: Channel, rng: random.Random) -> bytes:
    key = {Channel.PORTAL: "paid_at", Channel.MOBILE_APP: "ts", Channel.KIOSK: "local_time"}[ch]
    event[key] = rng.choice(_BAD_TIMES[ch])
    return _dump(event)


def _bad_cpr(event: Event, ch: Channel, rng: random.Random) -> bytes:
    cpr = rng.choice(("12345678", "1234567890", "85O101234", "8501-0123"))
    _set(event, _CPR_PATH[ch], cpr)
    return _dump(event)


def _not_object(_event: Event, _ch: Channel, rng: random.Random) -> bytes:
    return rng.choice(_NOT_OBJECTS)


Maker = Callable[[Event, Channel, random.Random], bytes]
_MAKERS: dict[str, Maker] = {
    "malformed_json": _malformed_json,
    "invalid_utf8": _invalid_utf8,
    "wrong_type": _wrong_type,
    "missing_field": _missing_field,
    "unknown_channel": _unknown_channel,
    "missing_channel": _missing_channel,
    "absurd_nesting": _absurd_nesting,
    "huge_line": _huge_line,
    "amount_4_decimals": _amount_4_decimals,
    "amount_nan": _amount_nan,
    "amount_infinity": _amount_infinity,
    "zero_amount": _zero_amount,
    "negative_amount": _negative_amount,
    "wrong_currency": _wrong_currency,
    "bad_timestamp": _bad_timestamp,
    "bad_cpr": _bad_cpr,
    "not_object": _not_object,
}
INVALID_KINDS: tuple[str, ...] = tuple(_MAKERS)
# What a day's landing files hold when they go wrong: every kind but `huge_line` (over 1 MiB
# each), which at a realistic 1% would be most of the bytes of the input.
REALISTIC_INVALID_KINDS: tuple[str, ...] = tuple(k for k in INVALID_KINDS if k != "huge_line")


def kinds_for(channel: Channel) -> tuple[str, ...]:
    """Kinds that can break this channel's shape: kiosks send no currency, so none to get wrong."""
    if channel is Channel.KIOSK:
        return tuple(kind for kind in INVALID_KINDS if kind != "wrong_currency")
    return INVALID_KINDS


def make_invalid(kind: str, event: Event, rng: random.Random) -> bytes:
    """One invalid line (no newline) of `kind`, made from a copy of a well-formed `event`."""
    channel = Channel(event["channel"])
    return _MAKERS[kind](copy.deepcopy(event), channel, rng)


def make_conflict(line: bytes, fils: int, rng: random.Random) -> bytes:
    """The same event (same id) with its amount raised by 1-9 BHD: a contradicting redelivery."""
    event = orjson.loads(line)
    channel = Channel(event["channel"])
    new_fils = fils + 1000 * rng.randint(1, 9)
    _set(event, _AMOUNT_PATH[channel], new_fils if channel is Channel.PORTAL else _text(new_fils))
    return orjson.dumps(event)


def luhn_pan(rng: random.Random) -> str:
    """A 16-digit, Luhn-valid card number: what old kiosk firmware sends instead of a mask."""
    body = [4, *(rng.randrange(10) for _ in range(14))]  # a Visa-like prefix
    total = 0
    for index, digit in enumerate(reversed(body)):  # the check digit will sit to the right
        doubled = digit * 2 if index % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return "".join(map(str, body)) + str((10 - total % 10) % 10)
