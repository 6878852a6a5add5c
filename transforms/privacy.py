"""Privacy rules: no raw CPR and no full card number leave the pipeline, in any output."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

_MIN_KEY_BYTES = 16
# Keys whose values identify a person or a card, wherever they appear in a raw event.
_CPR_KEYS = frozenset({"cpr", "national_id", "cpr_number"})
_CARD_KEYS = frozenset({"card", "pan", "card_number"})
# System-generated identifiers: their digits are sequence numbers, not personal data, and
# keeping them lets an operator find the event at the source.
_ID_KEYS = frozenset({"txn_id", "event_id", "kiosk_id", "gateway_ref", "seq"})
# A CPR or card number as a bare run of 9 or more digits (a longer run may hide both), or a
# card number written in groups (4-4-4-4, 4-4-4-x, Amex 4-6-5). Dates and times such as
# "2017-07-01 02:00" are not matched. \d is deliberate: Arabic-Indic digits are caught too.
_DIGIT_RUN = re.compile(
    r"(?<!\d)(?:\d{9,}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]?\d{1,3})?|\d{4}[ -]\d{6}[ -]\d{5})(?!\d)"
)
_REDACTED_RAW_MAX_CHARS = 2048


class Pseudonymiser:
    """Keyed pseudonym of a CPR: HMAC-SHA256 under a secret key.

    A plain hash of a 9-digit number is reversible by trying all 10^9 of them; without the key
    an HMAC is not. The same key always gives the same pseudonym, so payers can be joined
    across runs and channels without anyone seeing the CPR.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ValueError(
                f"the pseudonymisation key must be at least {_MIN_KEY_BYTES} bytes; "
                "generate one with `python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        # HMAC (RFC 2104) with its keyed inner and outer SHA-256 states computed once: each
        # pseudonym then costs two hash copies instead of a full hmac.new (2.5x faster).
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        padded = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))
        self._cache: dict[str, str] = {}

    def __call__(self, cpr: str) -> str:
        cached = self._cache.get(cpr)
        if cached is None:
            inner = self._inner.copy()
            inner.update(cpr.encode())
            outer = self._outer.copy()
            outer.update(inner.digest())
            cached = outer.hexdigest()[:32]
            if len(self._cache) < 1_000_000:  # residents pay repeatedly; bound the memory
                self._cache[cpr] = cached
        return cached


def card_last4(card: str | None) -> tuple[str | None, bool]:
    """(last four digits, whether the input held a full card number) of a card field."""
    if not card:
        return None, False
    digits = [c for c in card if c.isdigit()]
    last4 = "".join(digits[-4:]) if len(digits) >= 4 else None
    return last4, len(digits) > 4


def _mask_digits(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if len(digits) == 9:
        return "<redacted-cpr>"
    if len(digits) > 19:  # not one card number: nothing of it is kept
        return "<redacted-digits>"
    return "*" * (len(digits) - 4) + digits[-4:]


def redact_text(text: str) -> str:
    """Mask every run of 9 to 19 digits: a CPR or a card number may hide in any free text."""
    return _DIGIT_RUN.sub(_mask_digits, text)


def _redact_value(key: str | None, value: Any) -> Any:
    if isinstance(value, dict):
        # Keys too: a producer may key a map by CPR.
        return {redact_text(str(k)): _redact_value(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(None, v) for v in value]
    lowered = key.lower() if isinstance(key, str) else None
    if lowered in _CPR_KEYS and value is not None:
        return "<redacted-cpr>"
    if lowered in _CARD_KEYS and value is not None:
        last4, _ = card_last4(str(value))
        return f"************{last4}" if last4 else "<redacted-card>"
    if lowered in _ID_KEYS:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, float) and abs(value) >= 1e8:
        value = int(value)  # a card number sent as a float is still a card number
    if isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) >= 9:
        # A number that could be a CPR or a card number is masked unless it is clearly
        # an epoch timestamp in milliseconds (13 digits starting with 1).
        text = str(value)
        if len(text) == 13 and text.startswith("1"):
            return value
        return redact_text(text)
    return value


def redact_raw(payload: bytes, parsed: Any = None) -> str:
    """The raw event as text for the rejected output, with personal data removed.

    A parseable event is redacted field by field (known CPR and card keys, then any digit run);
    anything else is redacted as text. The result is cut to a bounded size so a huge line does
    not become a huge rejected row.
    """
    if parsed is None:
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            parsed = None
    if parsed is not None:
        text = orjson.dumps(_redact_value(None, parsed)).decode()
    else:
        text = redact_text(payload[: _REDACTED_RAW_MAX_CHARS * 4].decode("utf-8", "replace"))
    if len(text) > _REDACTED_RAW_MAX_CHARS:
        text = text[:_REDACTED_RAW_MAX_CHARS] + f"…[{len(payload)} bytes in all]"
    return text
