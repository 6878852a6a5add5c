"""The identity of a run: one id format for batch and streaming runs.

A run id begins with its UTC start time, so ids sort in start order (the Composer schedule and
the committed-files reader rely on it), and ends with random hex, so two runs started in the
same second never share one. File names that carry a run id (streaming panes, aggregate
versions, schemas/layout.py) match `RUN_ID_PATTERN`.
"""

from __future__ import annotations

import secrets
from datetime import datetime

RUN_ID_PATTERN = r"\d{8}T\d{6}Z-[0-9a-f]+"


def new_run_id(now: datetime) -> str:
    """The id of a run started at `now` (an aware datetime, taken as UTC)."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
