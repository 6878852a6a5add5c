"""What streaming de-duplication remembers of accepted events, and the check against it.

Pure Arrow; `transforms.streaming.dedup` keeps it in Beam state. The rows a block holds
twice are settled first by `transforms.dedup.table.deduplicate`.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from hashlib import blake2b
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.core import stats as st
from transforms.dedup.table import CONTENT_COLUMNS, Deduplicated, deduplicate, merge_results

SEEN_AT = "seen_at"
_RECENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("id_hash", pa.int64(), nullable=False),
        pa.field("content", pa.int64(), nullable=False),
        pa.field("first_message_id", pa.string()),
        pa.field(SEEN_AT, pa.int64(), nullable=False),
    ]
)


def recent_schema() -> pa.Schema:
    """What streaming de-duplication remembers of each accepted event: its id (and a 64-bit
    hash of it), a digest of its content, the message that first carried it, and when
    (processing time, seconds) it was accepted."""
    return _RECENT_SCHEMA


def _digest(text: str) -> int:
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


def id_hashes(table: pa.Table) -> pa.Array:
    """A 64-bit hash of each row's event_id: looking up integers is several times cheaper than
    looking up strings, and matches are confirmed on the id itself."""
    return pa.array([_digest(i) for i in table["event_id"].to_pylist()], pa.int64())


def content_digests(table: pa.Table) -> pa.Array:
    """A 64-bit digest of each row's CONTENT_COLUMNS: equal content, equal digest."""
    texts = [pc.fill_null(pc.cast(table[c], pa.string()), "\x00") for c in CONTENT_COLUMNS]
    joined = pc.binary_join_element_wise(*texts, "\x1f").to_pylist()
    return pa.array([_digest(t) for t in joined], pa.int64())


class _First(NamedTuple):
    event_id: str
    content: int
    first_message_id: str | None
    seen_at: int


_ROW_BITS = 32


class RecentIds:
    """The ids accepted within the horizon, indexed in memory by id hash.

    Streaming state keeps the same rows as append-only chunks (`recent_schema`), so a block
    costs time in its own size, not in everything remembered: looking ids up in a rebuilt
    Arrow hash table per block took half the pipeline's time after a few minutes at 2,000
    events/s. The rows stay in their Arrow chunks (about 90 bytes an id, shared with the
    state's own bytes where the caller decodes them from it); the index maps an id hash to
    (chunk, row), about 100 bytes more. Chunks are forgotten whole, oldest first, once their
    newest id is older than the horizon; a chunk holding a long span (a compacted state) is
    cut into slices of `slice_seconds` first, so it expires a slice at a time.
    """

    def __init__(self, slice_seconds: int = 3600) -> None:
        self._slice = max(1, slice_seconds)
        self._where: dict[int, int] = {}  # id hash -> chunk number << 32 | row
        self._chunks: dict[int, pa.Table] = {}
        self._order: deque[tuple[int, int]] = deque()  # (newest seen_at, chunk number)
        self._next = 0
        self.expired_since_compaction = 0

    @classmethod
    def of(cls, chunks: Iterable[pa.Table], cutoff: int, slice_seconds: int = 3600) -> RecentIds:
        """Rebuilt from stored chunks (in the order stored), leaving out what expired."""
        recent = cls(slice_seconds)
        for chunk in chunks:
            recent.add(chunk.filter(pc.greater_equal(chunk[SEEN_AT], cutoff)))
        return recent

    def __len__(self) -> int:
        return len(self._where)

    def add(self, chunk: pa.Table) -> None:
        """Remember a chunk of new events (in arrival order: not older than what is here)."""
        if chunk.num_rows == 0:
            return
        seen = chunk[SEEN_AT].to_numpy()
        if seen[-1] - seen[0] >= self._slice:
            slices = (seen - seen[0]) // self._slice
            for value in np.unique(slices).tolist():
                self._add_one(chunk.filter(pa.array(slices == value)))
        else:
            self._add_one(chunk)

    def _add_one(self, chunk: pa.Table) -> None:
        number = self._next
        self._next += 1
        self._chunks[number] = chunk
        base = number << _ROW_BITS
        for row, id_hash in enumerate(chunk["id_hash"].to_pylist()):
            self._where[id_hash] = base | row
        self._order.append((int(pc.max(chunk[SEEN_AT]).as_py()), number))

    def expire(self, cutoff: int) -> int:
        """Forget chunks whose newest id was accepted before `cutoff`; how many ids."""
        forgotten = 0
        while self._order and self._order[0][0] < cutoff:
            _, number = self._order.popleft()
            chunk = self._chunks.pop(number)
            for id_hash in chunk["id_hash"].to_pylist():
                where = self._where.get(id_hash)
                if where is not None and where >> _ROW_BITS == number:
                    del self._where[id_hash]
                    forgotten += 1
        self.expired_since_compaction += forgotten
        return forgotten

    def get(self, id_hash: int, event_id: str) -> _First | None:
        """The first delivery of an id, unless another id shares its hash."""
        where = self._where.get(id_hash)
        if where is None:
            return None
        chunk, row = self._chunks[where >> _ROW_BITS], where & ((1 << _ROW_BITS) - 1)
        if chunk["event_id"][row].as_py() != event_id:
            return None
        return _First(
            event_id,
            chunk["content"][row].as_py(),
            chunk["first_message_id"][row].as_py(),
            chunk[SEEN_AT][row].as_py(),
        )

    def table(self) -> pa.Table:
        """Everything remembered, oldest first, as one table (to compact the stored state)."""
        chunks = [self._chunks[number] for _, number in self._order]
        return pa.concat_tables([recent_schema().empty_table(), *chunks]).combine_chunks()


def against_recent(
    rows: pa.Table, recent: RecentIds, now_seconds: int
) -> tuple[Deduplicated, pa.Table]:
    """Streaming de-duplication of one block: its rows against each other and against the
    events accepted within the horizon (`recent`). Returns the result and the chunk of new
    events to remember (`recent_schema`): the caller stores it and adds it to `recent`."""
    within = deduplicate(rows)
    candidates = within.winners
    digests, hashes = content_digests(candidates), id_hashes(candidates)
    ids = candidates["event_id"].to_pylist()
    firsts = [recent.get(h, i) for h, i in zip(hashes.to_pylist(), ids, strict=True)]
    stats: st.Stats = Counter()
    seen = np.array([f is not None for f in firsts], dtype=bool)
    conflict = np.zeros(candidates.num_rows, dtype=bool)
    details: list[str] = []
    if seen.any():
        channels = candidates["channel"].to_pylist()
        contents = digests.to_pylist()
        for row in np.flatnonzero(seen).tolist():
            first = firsts[row]
            assert first is not None
            if first.content == contents[row]:
                stats[st.duplicate_key(channels[row], "in_input")] += 1
            else:
                conflict[row] = True
                message = first.first_message_id
                details.append(f"differs from the first delivery (message {message})")
    new = pa.array(~seen)
    winners = candidates.filter(new)
    chunk = pa.table(
        [
            winners["event_id"],
            hashes.filter(new),
            digests.filter(new),
            winners["source_message_id"],
            pa.array([now_seconds] * winners.num_rows, pa.int64()),
        ],
        schema=_RECENT_SCHEMA,
    )
    earlier = Deduplicated(winners, candidates.filter(pa.array(conflict)), details, stats)
    return merge_results(winners, within, earlier), chunk
