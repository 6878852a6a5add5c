"""Settling Pub/Sub messages once what they became is committed (local runner only).

Beam's local runner acknowledges a message the moment it pulls it, so a killed pipeline lost
every payment pulled but not yet written. On the local runner the pipeline instead defers
acknowledgements (`pipelines.direct_pubsub.DeferredAcks`) and the steps that commit a
message's outcome settle its id here once that outcome is durable: a payment row or a
rejection in a file renamed into place together with the stats file counting it, or a
duplicate counted in a stats file. A settled message is acknowledged; an unsettled one is
redelivered after a restart, and the writers leave out what is already committed.

The sink steps run in the pipeline's own process on the local runner, so a process-wide
settler is enough; where none is registered (Dataflow, unit tests) settling does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

# A stats partial carries the ids its counts settle under keys of this kind, so that the
# counts and the ids reach the same stats pane together (two outputs could land in two
# panes); the stats writer takes them out before writing.
SETTLED = "settled"


class Settler(Protocol):
    """What acknowledges messages whose outcome is committed."""

    def settle(self, message_ids: Iterable[str]) -> None: ...


_lock = threading.Lock()
_settler: Settler | None = None


def register(settler: Settler | None) -> None:
    """Make `settler` receive every settled message id of this process (None: stop)."""
    global _settler
    with _lock:
        _settler = settler


def settle(message_ids: Iterable[str]) -> None:
    """Acknowledge these messages: what they became is committed. A no-op without a settler."""
    with _lock:
        settler = _settler
    if settler is not None:
        settler.settle(message_ids)


def settled_key(message_id: str) -> str:
    return f"{SETTLED}:{message_id}"


def with_settled(stats: dict[str, int], message_ids: Iterable[str | None]) -> dict[str, int]:
    """`stats` plus the ids they settle (see SETTLED)."""
    out = dict(stats)
    for message_id in message_ids:
        if message_id is not None:
            out[settled_key(message_id)] = 1
    return out


def split_settled(stats: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """(the counts, the settled message ids) of a merged stats pane."""
    prefix = f"{SETTLED}:"
    counts = {k: v for k, v in stats.items() if not k.startswith(prefix)}
    ids = [k[len(prefix) :] for k in stats if k.startswith(prefix)]
    return counts, ids


def message_ids(table: pa.Table) -> list[str]:
    """The source message ids of a table's rows (none for rows without one)."""
    if "source_message_id" not in table.column_names or table.num_rows == 0:
        return []
    ids: list[str] = pc.drop_null(table["source_message_id"]).to_pylist()
    return ids


def not_in(ids: Iterable[str], table: pa.Table) -> list[str]:
    """`ids` less the source message ids of `table`'s rows: what a step consumed without
    passing on (duplicates), or passed on elsewhere."""
    passed = set(message_ids(table))
    return [i for i in ids if i not in passed]
