"""The unit of work of ingestion: a block of raw events from one source."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RawBlock:
    """Consecutive raw events from one source.

    Batch: `first_line` is the 1-based line number of `payloads[0]`, and `line_numbers` the
    line of each payload (blank lines are skipped, so they are not always consecutive).
    Streaming: `message_ids` holds the Pub/Sub message id of each payload.
    """

    source: str
    payloads: list[bytes]
    line_numbers: list[int] | None = None
    message_ids: list[str] | None = None
    blank_lines: int = 0  # skipped before or between these payloads: no event, but counted

    def origin(self, index: int) -> tuple[int | None, str | None]:
        line = self.line_numbers[index] if self.line_numbers is not None else None
        message = self.message_ids[index] if self.message_ids is not None else None
        return line, message
