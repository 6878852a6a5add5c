"""The unit of work of ingestion: a block of raw events from one source, or from several small
files packed together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

import numpy as np


@dataclass(frozen=True)
class RawBlock:
    """Consecutive raw events from one source, or from several small files one after another.

    Batch: `line_numbers` holds the 1-based line of each payload (blank lines are skipped, so
    they are not always consecutive). Streaming: `message_ids` holds the Pub/Sub message id of
    each payload.

    A packed block (`RawBlock.packed`) holds the lines of several files: `source` is the first
    file, and `source_starts` says at which payload each file's lines begin. Each block costs
    ~4 ms whatever its size (Arrow calls, RE2 compilations, Beam's own per-element work), so a
    night of many small files is cheaper as a few full blocks (benchmarks/RESULTS.md, #11).
    """

    source: str
    payloads: list[bytes]
    line_numbers: list[int] | None = None
    message_ids: list[str] | None = None
    blank_lines: int = 0  # skipped before or between these payloads: no event, but counted
    # ((first payload index, file), ...) in payload order, for a packed block; None when every
    # payload is from `source`.
    source_starts: tuple[tuple[int, str], ...] | None = None

    def origin(self, index: int) -> tuple[int | None, str | None]:
        line = self.line_numbers[index] if self.line_numbers is not None else None
        message = self.message_ids[index] if self.message_ids is not None else None
        return line, message

    def source_of(self, index: int) -> str:
        """The file (or subscription) payload `index` came from."""
        if self.source_starts is None:
            return self.source
        starts = [start for start, _ in self.source_starts]
        return self.source_starts[int(np.searchsorted(starts, index, side="right")) - 1][1]

    def sources_of(self, indices: Sequence[int]) -> list[str]:
        """`source_of` of each index, in one pass for a whole column."""
        if self.source_starts is None:
            return [self.source] * len(indices)
        starts = np.asarray([start for start, _ in self.source_starts], dtype=np.int64)
        names = [name for _, name in self.source_starts]
        at = np.searchsorted(starts, np.asarray(indices, dtype=np.int64), side="right") - 1
        return [names[i] for i in at.tolist()]

    @classmethod
    def packed(cls, blocks: Sequence[RawBlock]) -> RawBlock:
        """One block of the payloads of `blocks` (batch blocks, in order), each payload keeping
        its own file and line."""
        if len(blocks) == 1:
            return blocks[0]
        if not blocks or any(b.line_numbers is None or b.message_ids for b in blocks):
            raise ValueError("only batch blocks (with line numbers) are packed")
        offsets = accumulate((len(b.payloads) for b in blocks), initial=0)
        starts: list[tuple[int, str]] = []
        for offset, block in zip(offsets, blocks, strict=False):
            if not block.payloads:
                continue  # blank lines only: counted below, no payload to name a file for
            for start, name in block.source_starts or ((0, block.source),):
                if not (starts and starts[-1][1] == name):
                    starts.append((start + offset, name))
        return cls(
            starts[0][1] if starts else blocks[0].source,
            [p for b in blocks for p in b.payloads],
            line_numbers=[n for b in blocks for n in b.line_numbers or ()],
            blank_lines=sum(b.blank_lines for b in blocks),
            source_starts=tuple(starts) if len(starts) > 1 else None,
        )
