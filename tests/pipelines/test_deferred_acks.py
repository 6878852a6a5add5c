"""Deferred acknowledgements of the local runner's Pub/Sub reads: a pulled message is
recorded, not acknowledged; its deadline is extended until it is settled; settling
acknowledges it once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor

from pipelines import direct_pubsub, streaming
from pipelines.direct_pubsub import DeferredAcks, _LargerPulls
from schemas.run import STREAMING, Run
from tests.samples import TEST_KEY
from transforms.core import stats as st
from transforms.dedup.table import Deduplicated
from transforms.streaming import acks
from transforms.streaming.dedup import settled_duplicates
from transforms.streaming.sinks import WriteStreamingStats, repeated_messages


@dataclass
class _Message:
    message_id: str


@dataclass
class _Received:
    ack_id: str
    message: _Message


@dataclass
class _Response:
    received_messages: list[_Received] = field(default_factory=list)


class _Server:
    """Records acknowledgements and deadline extensions; serves `messages` once."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        self.acked: list[str] = []
        self.extended: list[tuple[str, int]] = []

    def pull(self, *, subscription: str, max_messages: int, **_: Any) -> _Response:
        assert subscription == "s"
        assert max_messages > 0
        served, self.messages = self.messages, []
        return _Response([_Received(f"ack-{m}", _Message(m)) for m in served])

    def acknowledge(self, *, request: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.acked.extend((request or kwargs)["ack_ids"])

    def modify_ack_deadline(self, *, request: dict[str, Any]) -> None:
        self.extended.extend((a, request["ack_deadline_seconds"]) for a in request["ack_ids"])


def _deferred(server: _Server, lease: int = 30) -> DeferredAcks:
    deferred = DeferredAcks(lease)
    deferred._client = server
    deferred._thread = object()  # type: ignore[assignment]  # no background thread in tests
    return deferred


def test_a_pull_records_its_messages_and_beams_acknowledgement_does_nothing() -> None:
    server = _Server(["m1", "m2"])
    deferred = _deferred(server)
    client = _LargerPulls(server, 10, deferred)
    response = client.pull(subscription="s", max_messages=10)
    client.acknowledge(subscription="s", ack_ids=[r.ack_id for r in response.received_messages])
    assert server.acked == []
    assert len(deferred) == 2


def test_without_deferred_acks_beams_acknowledgement_goes_through() -> None:
    server = _Server(["m1"])
    client = _LargerPulls(server, 10)
    client.acknowledge(subscription="s", ack_ids=["ack-m1"])
    assert server.acked == ["ack-m1"]


def test_settling_acknowledges_each_message_once() -> None:
    server = _Server(["m1", "m2", "m3"])
    deferred = _deferred(server)
    _LargerPulls(server, 10, deferred).pull(subscription="s", max_messages=10)
    deferred.settle(["m1", "m3", "unknown"])
    deferred.settle(["m1"])
    assert server.acked == ["ack-m1", "ack-m3"]
    assert len(deferred) == 1


def test_deadlines_are_extended_when_due_until_settled() -> None:
    server = _Server(["m1", "m2"])
    deferred = _deferred(server, lease=30)
    _LargerPulls(server, 10, deferred).pull(subscription="s", max_messages=10)
    assert deferred.extend_due(0.0) == 0  # not due yet
    far = 1e12
    assert deferred.extend_due(far) == 2
    assert server.extended == [("ack-m1", 30), ("ack-m2", 30)]
    assert deferred.extend_due(far + 1) == 0  # next one a third of a lease later
    deferred.settle(["m1"])
    assert deferred.extend_due(far + 11) == 1


def test_a_message_pulled_again_is_held_under_its_newest_ack_id() -> None:
    server = _Server([])
    deferred = _deferred(server)
    deferred.record("s", [_Received("old", _Message("m1"))])
    deferred.record("s", [_Received("new", _Message("m1"))])
    deferred.settle(["m1"])
    assert server.acked == ["new"]


@pytest.mark.parametrize("lease", [9, 601])
def test_a_lease_outside_pubsubs_range_is_refused(lease: int) -> None:
    with pytest.raises(ValueError, match="10-600"):
        DeferredAcks(lease)


def test_settling_without_a_settler_does_nothing() -> None:
    acks.register(None)
    acks.settle(["m1"])


def test_settled_ids_travel_in_stats_and_come_out_before_writing() -> None:
    stats = acks.with_settled({"duplicates:portal:in_input": 2}, ["m1", None, "m2"])
    counts, ids = acks.split_settled(st.merge([stats, {"warning:portal:x": 1}]))
    assert counts == {"duplicates:portal:in_input": 2, "warning:portal:x": 1}
    assert sorted(ids) == ["m1", "m2"]


def test_the_ids_a_step_consumed_are_those_it_did_not_pass_on() -> None:
    passed = pa.table({"source_message_id": ["m2", None]})
    assert acks.not_in(["m1", "m2", "m3"], passed) == ["m1", "m3"]


def test_each_outcome_is_counted_with_its_read() -> None:
    stats = {"accepted:portal": 3, "accepted_fils:portal:PAID": 900, "rejected:kiosk:E": 1}
    assert st.with_reads(stats) == {**stats, "read:portal": 3, "read:kiosk": 1}


def test_this_beams_hook_takes_deferred_acks() -> None:
    assert direct_pubsub.use_pull_size(10, DeferredAcks())
    direct_pubsub.use_pull_size()  # back to the default, without deferred acks


class _Recent:
    """What de-duplication state remembers: the first delivery's message of each event id."""

    def __init__(self, first_messages: dict[str, str]) -> None:
        self.first_messages = first_messages

    def get(self, id_hash: int, event_id: str) -> Any:
        assert isinstance(id_hash, int)
        message = self.first_messages.get(event_id)
        return None if message is None else type("First", (), {"first_message_id": message})


def test_a_duplicate_is_settled_unless_it_is_its_first_deliverys_own_message() -> None:
    block = pa.table(
        {
            "event_id": ["e1", "e2", "e3", "e4"],
            "source_message_id": ["m1", "m2", "m3", "m4"],
        }
    )
    winners, conflicts = block.slice(0, 1), block.slice(3, 1)
    result = Deduplicated(winners, conflicts, [], {})
    # e2 was first delivered by another message (a re-publication): settled here. e3's first
    # delivery is m3 itself, still in flight: its row is not written yet, so not settled.
    recent = _Recent({"e1": "m1", "e2": "m0", "e3": "m3"})
    assert settled_duplicates(block, result, recent) == ["m2"]  # type: ignore[arg-type]


def test_a_message_repeated_in_a_rejected_pane_is_rejected_once() -> None:
    table = pa.table({"source_message_id": ["m1", "m2", "m1", None, None]})
    assert repeated_messages(table).to_pylist() == [False, False, True, False, False]


def test_with_deferred_acks_the_stats_line_is_the_balanced_one(tmp_path: Path) -> None:
    """Each read is counted with its outcome: the stats writer logs `processed:`."""
    options = PipelineOptions(
        ["--streaming", "--input_subscription", "projects/payments-demo/subscriptions/payments"]
    )
    planned = streaming.StreamingPlan(Run.start(STREAMING, str(tmp_path)), options, TEST_KEY, True)
    pipeline = beam.Pipeline(options=options)
    streaming.build(pipeline, planned)
    found: list[WriteStreamingStats] = []

    class Stats(PipelineVisitor):  # type: ignore[misc]
        def enter_composite_transform(self, node: Any) -> None:
            if isinstance(node.transform, WriteStreamingStats):
                found.append(node.transform)

    pipeline.visit(Stats())
    assert [w._reads_with_outcomes for w in found] == [True]
