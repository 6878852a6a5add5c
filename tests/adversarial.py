"""Every class of adversarial input issue 8 found, as lines of one landing file, and a reader
that looks for their secrets anywhere under an output root (shared by batch and streaming)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tests.samples import sample_events
from transforms.core.privacy import decode_json_escapes

CARD = "4539578763621486"  # Luhn-valid
CPR = "870412345"
OTHER_CPR = "910203456"

_SAMPLES = sample_events()
_PORTAL: dict[str, Any] = {**_SAMPLES["portal"], "payer": {"cpr": CPR}}
_KIOSK: dict[str, Any] = {**_SAMPLES["kiosk"], "card": "************1486", "cpr": OTHER_CPR}


def _portal(n: int, **fields: Any) -> dict[str, Any]:
    return {**_PORTAL, "txn_id": f"PTL-2017-18100{n:04d}", **fields}


def _kiosk(n: int, **fields: Any) -> dict[str, Any]:
    return {**_KIOSK, "seq": n, **fields}


def _line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode()


def _grouped(separator: str) -> str:
    return separator.join(CARD[i : i + 4] for i in range(0, 16, 4))


def _arabic(digits: str) -> str:
    return "".join(chr(0x660 + int(d)) for d in digits)


def _escaped(digits: str) -> str:
    return "".join(f"\\u{ord(d):04x}" for d in digits)


def adversarial_lines() -> list[bytes]:
    """One line per class (what issue 8 lists), good events between them."""
    return [
        _line(_portal(1)),
        # 1. separators other than space or dash, Unicode spaces, array groups
        _line(_portal(2, note=_grouped("."))),
        _line(_portal(3, note=_grouped("\u00a0"))),
        _line(_portal(4, note=_grouped("\u2009"))),
        _line(_portal(5, note=_grouped("/"))),
        _line(_portal(6, amount_fils=_grouped("."))),  # rejected; the reason quotes nothing
        _line(_kiosk(7, amount=_grouped("."))),  # rejected; the reason quotes the amount
        _line(_kiosk(8, card=[CARD[i : i + 4] for i in range(0, 16, 4)])),
        # 2. fields exempted as identifiers
        _line(_portal(9, gateway_ref=CPR, status="LOST")),
        _line(_portal(10, gateway_ref=CARD, status="LOST")),
        # 3. \u escapes in a line that is not valid JSON
        b'{"channel": "kiosk", "card": "'
        + _escaped(CARD).encode()
        + b'", "cpr": "'
        + _escaped(CPR).encode()
        + b'"',
        # 4. claimed values written as sent
        _line({**_portal(11), "channel": _grouped(" ")}),
        _line({**_portal(12), "channel": CPR}),
        _line(_portal(13, txn_id=_grouped("-"), status="LOST")),
        # 5. free text of accepted events
        _line(_kiosk(14, site=f"Isa Town {_grouped(' ')}")),
        _line(_kiosk(15, site=f"Isa Town {OTHER_CPR}")),
        _line(_kiosk(16, site=f"Isa Town {_arabic(OTHER_CPR)}")),
        # 6. nested deeper than pydantic's limit, shallower than orjson's
        b'{"channel": "portal", "payer": {"cpr": "'
        + CPR.encode()
        + b'"}, "x": '
        + b"[" * 500
        + b"]" * 500
        + b"}",
        # 7. amounts the old model accepted that overflow int64 sums
        _line(_portal(17, amount_fils=10**18 - 1)),
        # 8. duplicate keys
        _line(_portal(18))[:-1] + b', "amount_fils": 99999}',
        # identifier holding the payer's CPR
        _line(_portal(19, txn_id=f"PTL-{CPR}")),
        # Arabic digits of the card in free text of a rejected event
        _line(_portal(20, note=_arabic(CARD), currency="USD")),
        _line(_kiosk(21)),
    ]


def write_landing(folder: Path) -> Path:
    """The adversarial lines as one landing file starting with a byte-order mark (class 9)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "adversarial.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(adversarial_lines()) + b"\n")
    return path


def _readable(text: str) -> str:
    """A value as a reader could read it: escapes decoded, digits in ASCII, separators gone."""
    decoded = decode_json_escapes(text.replace("\ufffd", ""))
    return re.sub(r"[\W_]+", "", re.sub(r"\d", lambda m: str(int(m.group(0))), decoded))


SECRETS = (CARD, CPR, OTHER_CPR)


def secrets_in(root: Path) -> list[str]:
    """Where any secret can be read under `root`: every string of every Parquet file, and every
    other file as text."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            values = [
                str(v) for column in table.columns for v in column.to_pylist() if v is not None
            ]
        else:
            values = [path.read_bytes().decode("utf-8", "replace")]
        for value in values:
            readable = _readable(value)
            found.extend(f"{path}: {secret}" for secret in SECRETS if secret in readable)
    return found
