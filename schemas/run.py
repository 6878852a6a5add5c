"""The identity of a run: one value, one id format, for batch and streaming runs.

A run id begins with its UTC start time, so ids sort in start order (the Composer schedule and
the committed-files reader rely on it), and ends with random hex, so two runs started in the
same second never share one. File names that carry a run id (streaming panes, aggregate
versions, schemas/layout.py) match `RUN_ID_PATTERN`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from schemas.timekeeping import to_utc_micros

RUN_ID_PATTERN = r"\d{8}T\d{6}Z-[0-9a-f]+"
BATCH = "batch"
STREAMING = "streaming"
# Rewrites committed payment partitions into fewer files (pipelines/compact.py).
COMPACT = "compact"


def new_run_id(now: datetime) -> str:
    """The id of a run started at `now` (an aware datetime, taken as UTC)."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Run:
    """Who writes, where, since when, and from what: every composite of a pipeline gets this
    one value, so no step can disagree with another on the run id, the output root or the
    clock its rows are stamped with.

    `started_at` is the one clock of a run: every row it writes (accepted, rejected, a
    conflict found at any step) carries it as `ingested_at`, so the rows of one run share one
    ingest time, the same as its manifest's `started_at`. `input_key` names a batch run's
    files (derived from its inputs' content, pipelines/batch.py) and is empty for streaming,
    whose files are named by run id. `inputs` are a batch run's (path, bytes).
    """

    run_id: str
    pipeline: str
    output_root: str
    started_at: datetime
    input_key: str = ""
    inputs: tuple[tuple[str, int], ...] = field(default=())

    @classmethod
    def start(
        cls,
        pipeline: str,
        output_root: str,
        input_key: str = "",
        inputs: Sequence[tuple[str, int]] = (),
        now: datetime | None = None,
    ) -> Run:
        """A new run started now (or at `now`), with a fresh id."""
        started = now or datetime.now(timezone.utc)
        return cls(
            new_run_id(started),
            pipeline,
            output_root.rstrip("/"),
            started,
            input_key,
            tuple((path, size) for path, size in inputs),
        )

    @property
    def ingested_micros(self) -> int:
        """`started_at` in UTC microseconds, as the `ingested_at` column stores it."""
        return to_utc_micros(self.started_at)

    @property
    def started_at_text(self) -> str:
        """`started_at` as the manifest writes it (ISO 8601, to the second)."""
        return self.started_at.isoformat(timespec="seconds")
