"""Larger Pub/Sub pulls for the local streaming DirectRunner.

Beam's DirectRunner reads Pub/Sub with one synchronous pull of at most 10 messages per bundle
(hard-coded in `apache_beam/runners/direct/transform_evaluator.py`, `_PubSubReadEvaluator`),
and every bundle walks the whole graph: that alone caps a local pipeline at a few dozen
events per second. Dataflow replaces `ReadFromPubSub` with its own streaming source and never
runs this code, so the override below is local-only: it lets the same evaluator ask for up to
`size` messages per pull. Nothing else about the read changes (the DirectRunner acknowledges
messages as soon as they are pulled, as before).

It depends on a private Beam class; `supported()` says whether this Beam still has it, and the
pipeline falls back to Beam's own pull size with a warning when it does not.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)
DEFAULT_PULL_SIZE = 4000
_MARK = "_payments_pull_size"
_FOLLOW_UP_SECONDS = 1.0
_IDLE_WAIT_SECONDS = 2.0


class _LargerPulls:
    """A subscriber client whose pulls ask for at least `size` messages."""

    def __init__(self, client: Any, size: int) -> None:
        self._client = client
        self._size = size

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
        return response

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


def use_pull_size(size: int = DEFAULT_PULL_SIZE) -> bool:
    """Make the DirectRunner's Pub/Sub reads pull up to `size` messages; idempotent.

    Returns False (and changes nothing) where this Beam does not have the hook.
    """
    if size < 1:
        raise ValueError(f"pull size must be positive, not {size}")
    if not supported():
        log.warning(
            "this Beam's DirectRunner has no Pub/Sub client hook: reading 10 messages per "
            "bundle (local throughput will be low)"
        )
        return False
    evaluator = _evaluator()
    hook: classmethod[Any, Any, Any] = evaluator.__dict__["_get_subscriber_client"]
    original = getattr(hook.__func__, _MARK, None) or hook.__func__

    def larger(cls: Any, transform: Any) -> _LargerPulls:
        return _LargerPulls(original(cls, transform), size)

    setattr(larger, _MARK, original)
    evaluator._get_subscriber_client = classmethod(larger)
    return True
