"""Larger local Pub/Sub pulls: the DirectRunner hook exists in this Beam, and a pull keeps
going while the server returns full pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from pipelines import direct_pubsub


def test_this_beams_direct_runner_has_the_hook() -> None:
    assert direct_pubsub.supported()


def test_use_pull_size_refuses_a_size_below_one() -> None:
    with pytest.raises(ValueError, match="positive"):
        direct_pubsub.use_pull_size(0)


@dataclass
class _Response:
    received_messages: list[int] = field(default_factory=list)


class _CappedServer:
    """A subscription holding `backlog` messages that returns at most `page` per pull, as the
    emulator does (100)."""

    def __init__(self, backlog: int, page: int) -> None:
        self.backlog, self.page, self.asked = backlog, page, []

    def pull(self, *, subscription: str, max_messages: int, **_: Any) -> _Response:
        assert subscription == "s"
        self.asked.append(max_messages)
        n = min(self.page, max_messages, self.backlog)
        self.backlog -= n
        return _Response(list(range(n)))


def test_a_pull_gathers_full_pages_up_to_the_size() -> None:
    server = _CappedServer(backlog=5000, page=100)
    response = direct_pubsub._LargerPulls(server, 1000).pull(subscription="s", max_messages=10)
    assert len(response.received_messages) == 1000
    assert server.backlog == 4000


def test_a_pull_stops_at_a_partial_page() -> None:
    server = _CappedServer(backlog=250, page=100)
    response = direct_pubsub._LargerPulls(server, 1000).pull(subscription="s", max_messages=10)
    assert len(response.received_messages) == 250
    assert len(server.asked) == 3


def test_an_empty_first_pull_is_returned_as_it_is() -> None:
    server = _CappedServer(backlog=0, page=100)
    response = direct_pubsub._LargerPulls(server, 1000).pull(subscription="s", max_messages=10)
    assert response.received_messages == []
    assert server.asked == [1000]


class _HoldingServer:
    """An idle subscription that holds each pull until its deadline, as the emulator does."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def pull(self, *, subscription: str, max_messages: int, timeout: float) -> _Response:
        from google.api_core.exceptions import DeadlineExceeded

        assert subscription == "s"
        assert max_messages > 0
        self.timeouts.append(timeout)
        raise DeadlineExceeded("held until the deadline")


def test_an_idle_subscription_gives_an_empty_pull_after_a_short_wait() -> None:
    server = _HoldingServer()
    pulls = direct_pubsub._LargerPulls(server, 1000)
    response = pulls.pull(subscription="s", max_messages=10, timeout=30)
    assert len(response.received_messages) == 0
    assert server.timeouts == [direct_pubsub._IDLE_WAIT_SECONDS]
