"""Larger Pub/Sub pulls for the local streaming DirectRunner.

Beam's DirectRunner reads Pub/Sub with one synchronous pull of at most 10 messages per bundle
(hard-coded in `apache_beam/runners/direct/transform_evaluator.py`, `_PubSubReadEvaluator`),
and every bundle walks the whole graph: that alone caps a local pipeline at a few dozen
events per second. Dataflow replaces `ReadFromPubSub` with its own streaming source and never
runs this code, so the override below is local-only: it lets the same evaluator ask for up to
`size` messages per pull.

Beam's evaluator also acknowledges every message as soon as it pulls it, so a killed local
pipeline lost what it had pulled but not yet written. Given a `DeferredAcks`, the override
turns that acknowledgement into a record of the message's ack id, keeps extending its ack
deadline, and acknowledges it only once the pipeline settles it (`transforms.streaming.acks`):
once what the message became is committed.

It depends on a private Beam class; `supported()` says whether this Beam still has it, and the
pipeline falls back to Beam's own pull size with a warning when it does not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

log = logging.getLogger(__name__)
DEFAULT_PULL_SIZE = 4000
_MARK = "_payments_pull_size"
_FOLLOW_UP_SECONDS = 1.0
_IDLE_WAIT_SECONDS = 2.0
DEFAULT_ACK_LEASE_SECONDS = 30
# A pulled message's deadline is first extended this soon after the pull: well inside the
# shortest deadline Pub/Sub allows a subscription (10 s).
_FIRST_EXTENSION_SECONDS = 2.0
_ACK_IDS_PER_REQUEST = 1000  # well under Pub/Sub's request size limit


class DeferredAcks:
    """Pulled messages not yet settled: their ack ids, by message id, leased until settled.

    A daemon thread extends each pending message's ack deadline to `lease_seconds` a third
    of a lease before it runs out, so a message stays with this process for as long as its
    outcome takes to commit (a pane or two), and comes back to another run within
    `lease_seconds` when this one is killed.
    """

    def __init__(self, lease_seconds: int = DEFAULT_ACK_LEASE_SECONDS) -> None:
        if not 10 <= lease_seconds <= 600:
            raise ValueError(f"must be 10-600 s (Pub/Sub's range), not {lease_seconds}")
        self._lease = lease_seconds
        self._lock = threading.Lock()
        # message id -> (subscription, ack id, when its deadline is next extended)
        self._pending: dict[str, tuple[str, str, float]] = {}
        self._client: Any = None
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def record(self, subscription: str, received: Iterable[Any]) -> None:
        """Hold these pulled messages (ReceivedMessages) until they are settled. A message
        pulled again (its deadline ran out) is held under its newest ack id."""
        due = time.monotonic() + _FIRST_EXTENSION_SECONDS
        with self._lock:
            for message in received:
                self._pending[message.message.message_id] = (subscription, message.ack_id, due)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._extend_forever, name="pubsub-ack-leases", daemon=True
                )
                self._thread.start()

    def settle(self, message_ids: Iterable[str]) -> None:
        """Acknowledge these messages (unknown ids are ignored: settled already, or pulled
        by another run). A failed acknowledgement is logged: the message comes back, and the
        writers count it as a duplicate."""
        by_subscription: dict[str, list[str]] = {}
        with self._lock:
            for message_id in message_ids:
                held = self._pending.pop(message_id, None)
                if held is not None:
                    by_subscription.setdefault(held[0], []).append(held[1])
        for subscription, ack_ids in by_subscription.items():
            self._call("acknowledge", subscription, ack_ids)

    def _extend_forever(self) -> None:
        while True:
            time.sleep(0.5)
            self.extend_due(time.monotonic())

    def extend_due(self, now: float) -> int:
        """Extend the deadline of every message whose extension is due; how many were."""
        later = now + self._lease / 3
        by_subscription: dict[str, list[str]] = {}
        with self._lock:
            for message_id, (subscription, ack_id, due) in self._pending.items():
                if due <= now:
                    by_subscription.setdefault(subscription, []).append(ack_id)
                    self._pending[message_id] = (subscription, ack_id, later)
        for subscription, ack_ids in by_subscription.items():
            self._call("modify_ack_deadline", subscription, ack_ids, self._lease)
        return sum(len(ids) for ids in by_subscription.values())

    def _call(self, method: str, subscription: str, ack_ids: Sequence[str], *deadline: int) -> None:
        if self._client is None:
            from google.cloud import pubsub_v1

            self._client = pubsub_v1.SubscriberClient()
        for start in range(0, len(ack_ids), _ACK_IDS_PER_REQUEST):
            chunk = list(ack_ids[start : start + _ACK_IDS_PER_REQUEST])
            request: dict[str, Any] = {"subscription": subscription, "ack_ids": chunk}
            if deadline:
                request["ack_deadline_seconds"] = deadline[0]
            try:
                getattr(self._client, method)(request=request)
            except Exception as error:  # a lost call only means a redelivery
                log.warning("Pub/Sub %s of %d messages failed: %s", method, len(chunk), error)


class _LargerPulls:
    """A subscriber client whose pulls ask for at least `size` messages."""

    def __init__(self, client: Any, size: int, acks: DeferredAcks | None = None) -> None:
        self._client = client
        self._size = size
        self._acks = acks

    def pull(self, *, subscription: str, max_messages: int, **_: Any) -> Any:
        """One response of up to `size` messages. A server may cap each pull (the emulator
        returns at most 100), so while pulls come back full and more are wanted, pull again
        with a short deadline: a backlog drains in large bundles, an idle queue costs one
        short wait."""
        from google.api_core.exceptions import DeadlineExceeded
        from google.pubsub_v1.types import PullResponse

        wanted = max(max_messages, self._size)
        try:
            # An idle subscription on the emulator holds a pull until its deadline (Beam asks
            # for 30 s), and the local runner does nothing else meanwhile: no pane is written.
            response = self._client.pull(
                subscription=subscription, max_messages=wanted, timeout=_IDLE_WAIT_SECONDS
            )
        except DeadlineExceeded:
            return PullResponse()
        page = len(response.received_messages)
        last = page
        while page and last == page and len(response.received_messages) < wanted:
            try:
                more = self._client.pull(
                    subscription=subscription,
                    max_messages=wanted - len(response.received_messages),
                    timeout=_FOLLOW_UP_SECONDS,
                )
            except DeadlineExceeded:
                break
            last = len(more.received_messages)
            response.received_messages.extend(more.received_messages)
        if self._acks is not None:
            self._acks.record(subscription, response.received_messages)
        return response

    def acknowledge(self, *, subscription: str, ack_ids: list[str], **kwargs: Any) -> None:
        """Beam's evaluator acknowledges right after its pull: with deferred acks, nothing
        happens here (the pull recorded the ids; `DeferredAcks.settle` acknowledges)."""
        if self._acks is None:
            self._client.acknowledge(subscription=subscription, ack_ids=ack_ids, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _evaluator() -> Any:
    try:
        from apache_beam.runners.direct.transform_evaluator import _PubSubReadEvaluator
    except ImportError:
        return None
    return _PubSubReadEvaluator


def supported() -> bool:
    """Whether this Beam's DirectRunner has the client hook the override wraps."""
    evaluator = _evaluator()
    hook = None if evaluator is None else evaluator.__dict__.get("_get_subscriber_client")
    return isinstance(hook, classmethod)


def use_pull_size(size: int = DEFAULT_PULL_SIZE, acks: DeferredAcks | None = None) -> bool:
    """Make the DirectRunner's Pub/Sub reads pull up to `size` messages, and with `acks`
    defer their acknowledgement to it; idempotent (the last call's settings hold).

    Returns False (and changes nothing) where this Beam does not have the hook.
    """
    if size < 1:
        raise ValueError(f"pull size must be positive, not {size}")
    if not supported():
        log.warning(
            "this Beam's DirectRunner has no Pub/Sub client hook: reading 10 messages per "
            "bundle (local throughput will be low), and messages are acknowledged as soon as "
            "they are pulled (a killed pipeline loses what it had not yet written)"
        )
        return False
    evaluator = _evaluator()
    hook: classmethod[Any, Any, Any] = evaluator.__dict__["_get_subscriber_client"]
    original = getattr(hook.__func__, _MARK, None) or hook.__func__

    def larger(cls: Any, transform: Any) -> _LargerPulls:
        return _LargerPulls(original(cls, transform), size, acks)

    setattr(larger, _MARK, original)
    evaluator._get_subscriber_client = classmethod(larger)
    return True
