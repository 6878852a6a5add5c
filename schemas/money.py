"""Money rules of the contract: BHD has three minor digits, amounts are exact and positive."""

from __future__ import annotations

import re
from decimal import Decimal

CURRENCY = "BHD"
FILS_PER_DINAR = 1000
# The largest single payment: 999,999,999.999 BHD (9 integer digits). Bahrain's government
# e-payments for a whole year come to about 500 million BHD, so one payment above ~1 billion
# BHD is a producer error, refused as INVALID_AMOUNT. The cap is far below the decimal(18,3)
# payment column and keeps any sum of fewer than 9 million payments within int64; sums are
# exact anyway (decimal(38,3) aggregates, Python-int manifest figures).
MAX_FILS = 10**12 - 1
MAX_INTEGER_DIGITS = len(str(MAX_FILS // FILS_PER_DINAR))  # 9

# Digits, optionally a point and one to three digits. No sign, exponent, NaN or Infinity: each
# of those is an error in a payment amount, and a fourth decimal must never be rounded away.
# Its integer digits are counted without leading zeros against MAX_INTEGER_DIGITS.
_AMOUNT_TEXT = re.compile(r"([0-9]+)(?:\.([0-9]{1,3}))?")  # ASCII digits only


class AmountError(ValueError):
    """An amount that cannot be taken as exact, positive BHD; `code` says which rule it broke."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def fils_from_text(text: str) -> int:
    """Exact fils of a decimal BHD string such as "12.500"; refuses anything inexact."""
    match = _AMOUNT_TEXT.fullmatch(text)
    if match is None:
        if re.fullmatch(r"\s*-\s*[0-9.]+\s*", text):
            raise AmountError("NON_POSITIVE_AMOUNT", f"amount '{text}' is negative")
        if re.fullmatch(r"[0-9]+\.[0-9]{4,}", text):
            raise AmountError(
                "INVALID_AMOUNT", f"amount '{text}' has more than 3 decimals (BHD has 3)"
            )
        raise AmountError("INVALID_AMOUNT", f"amount '{text}' is not a decimal number like 12.500")
    whole, frac = match.group(1).lstrip("0") or "0", match.group(2) or ""
    if len(whole) > MAX_INTEGER_DIGITS:
        # Refused before int(): a thousand-digit string must not cost a big-number conversion.
        raise AmountError("INVALID_AMOUNT", f"amount '{text}' exceeds {format_bhd(MAX_FILS)} BHD")
    return check_fils(int(whole) * FILS_PER_DINAR + int(frac.ljust(3, "0")))


def check_fils(fils: int) -> int:
    """The same fils if positive and at most MAX_FILS; otherwise an AmountError."""
    if fils <= 0:
        raise AmountError("NON_POSITIVE_AMOUNT", f"amount of {fils} fils is not positive")
    if fils > MAX_FILS:
        raise AmountError(
            "INVALID_AMOUNT",
            f"amount of {fils} fils exceeds the largest payment, {format_bhd(MAX_FILS)} BHD",
        )
    return fils


def fils_to_decimal(fils: int) -> Decimal:
    """BHD as an exact Decimal with three places (12500 -> Decimal('12.500'))."""
    return Decimal(fils).scaleb(-3)


def format_bhd(fils: int) -> str:
    """BHD text with three decimals, for logs and manifests (JSON has no decimal type)."""
    sign = "-" if fils < 0 else ""
    whole, frac = divmod(abs(fils), FILS_PER_DINAR)
    return f"{sign}{whole}.{frac:03d}"
