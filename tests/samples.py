"""Sample events and settings shared by the tests (the contract's own examples)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from schemas.run import Run

TEST_KEY = b"test-pseudonym-key-0123456789abcdef"

# The three examples of contract.md, byte for byte.
PORTAL_EVENT = (
    b'{"channel": "portal", "txn_id": "PTL-2017-000123456",'
    b' "service": {"code": "GDT-FINE", "entity": "GDT"},'
    b' "amount_fils": 12500, "currency": "BHD", "status": "PAID",'
    b' "paid_at": "2017-06-30T21:15:03+03:00", "payer": {"cpr": "850101234"},'
    b' "method": "DEBIT_CARD", "gateway_ref": "BNF8823410"}'
)
MOBILE_EVENT = (
    b'{"channel": "mobile_app", "event_id": "3f0c2a9e-6c1b-4d3e-9a51-0b7d5f9e2c11",'
    b' "app": {"id": "traffic", "version": "4.2.1", "os": "ios"},'
    b' "service_code": "GDT-FINE",'
    b' "payment": {"amount": "12.500", "currency": "BHD", "method": "APPLE_PAY",'
    b' "outcome": "success"},'
    b' "ts": 1498846503123, "user": {"cpr": "850101234"}}'
)
KIOSK_EVENT = (
    b'{"channel": "kiosk", "kiosk_id": "KSK-017", "seq": 40213, "site": "Isa Town",'
    b' "service": "VEH-REG-RENEW", "amount": "25.000",'
    b' "local_time": "2017-06-30 21:15:03", "result": "OK", "card": "************1234"}'
)


def sample_events() -> dict[str, dict[str, object]]:
    """The three examples as fresh dicts, by channel, for tests that rewrite fields."""
    return {
        "portal": json.loads(PORTAL_EVENT),
        "mobile_app": json.loads(MOBILE_EVENT),
        "kiosk": json.loads(KIOSK_EVENT),
    }


# The local engine for batch tests: Beam 2.77's DirectRunner would first try to download Prism.
BATCH_RUNNER = "FnApiRunner"


def run_of(
    run_id: str = "run",
    root: str = "out",
    ingested_micros: int = 0,
    input_key: str = "",
    inputs: tuple[tuple[str, int], ...] = (),
    pipeline: str = "batch",
) -> Run:
    """A run as the pipelines make one (`schemas.run.Run`), with the id, root and clock a test
    names: its `ingested_micros` is what every row it writes is stamped with."""
    started = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=ingested_micros)
    return Run(run_id, pipeline, root, started, input_key, inputs)
