"""The tags of every multi-output step, in one vocabulary: a misspelt tag in Beam is not an
error, it is an output nobody reads."""

from __future__ import annotations

from enum import Enum


class Output(str, Enum):
    """What a step emits, by tag (the `.value` is the Beam tag)."""

    # The core (transforms/ingest.py): every event ends in one of these three.
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    STATS = "stats"
    # Reading input (transforms/batch/read.py).
    BLOCKS = "blocks"
    FILE_STATS = "file_stats"
    # Batch staging (transforms/batch/stage.py).
    STAGED = "staged"
    STALE = "stale"
    AGGREGATES = "aggregates"
    # Streaming (transforms/streaming/): first deliveries, and paths a sink published.
    FIRST = "first"
    WRITTEN = "written"
