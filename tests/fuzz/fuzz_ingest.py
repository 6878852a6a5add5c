"""Fuzz target `bytes -> accepted | rejected` (atheris): one row out for every line in, and
nothing the privacy rule forbids in any output value.

Run by tests/fuzz/test_fuzz_ingest.py for a fixed time in CI; by hand:
`.venv/bin/python tests/fuzz/fuzz_ingest.py -max_total_time=60`.
"""

from __future__ import annotations

import sys

import apache_beam  # noqa: F401  (imported first: instrumenting Beam would cost minutes)
import atheris
import pyarrow  # noqa: F401
import pydantic  # noqa: F401

# Only the project's own modules are instrumented: the rule under test is Python.
with atheris.instrument_imports():
    from schemas.catalogue import load_catalogue
    from transforms.core.blocks import RunContext, process_block
    from transforms.core.normalise import Normaliser
    from transforms.core.privacy import Pseudonymiser
    from transforms.core.rawblock import RawBlock
    from transforms.core.scanner import scan_table

_CTX = RunContext(
    Normaliser(Pseudonymiser(b"fuzz-pseudonym-key-0123456789abcdef"), load_catalogue()),
    "run-fuzz",
    0,
)
# Seeds worth mutating: the contract's shapes with a card number and a CPR in free text.
SEEDS = [
    b'{"channel": "kiosk", "kiosk_id": "KSK-017", "seq": 40213, "site": "Isa 4111 1111 1111 1111",'
    b' "service": "VEH-REG-RENEW", "amount": "25.000", "local_time": "2017-06-30 21:15:03",'
    b' "result": "OK", "card": "4111111111111111", "cpr": "850101234"}',
    b'{"channel": "portal", "txn_id": "PTL-2017-000123456", "service": {"code": "GDT-FINE",'
    b' "entity": "GDT"}, "amount_fils": 12500, "currency": "BHD", "status": "PAID",'
    b' "paid_at": "2017-06-30T21:15:03+03:00", "payer": {"cpr": "850101234"},'
    b' "method": "DEBIT_CARD", "gateway_ref": "850101234"}',
]


def check(data: bytes) -> None:
    """The property: one row per event, and the scanner finds nothing in the output."""
    result = process_block(RawBlock("fuzz.jsonl", [data], line_numbers=[1]), _CTX)
    rows = result.accepted.num_rows + result.rejected.num_rows
    if rows != 1:
        raise AssertionError(f"{rows} rows for one event")
    for name, table in (("accepted", result.accepted), ("rejected", result.rejected)):
        leaks = scan_table(table, name)
        if leaks:
            raise AssertionError(f"the rule's own scanner sees {leaks} in {data!r}")


def main(argv: list[str]) -> None:
    atheris.Setup(argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
