"""The streaming pipeline end to end against a real Pub/Sub emulator (gcloud's)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest

from tests.emulators import pubsub_emulator
from tests.pipelines.helpers import balanced, make_landing, payments, rejected
from tests.samples import PORTAL_EVENT
from tools.replay import publishable_lines, restamp
from transforms.core import stats as st

PROJECT = "demo-project"


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    """host:port of a Pub/Sub emulator started for these tests."""
    with pubsub_emulator() as host:
        yield host


def _publish(host: str, lines: list[bytes], topic_name: str) -> str:
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    from google.cloud import pubsub_v1

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(PROJECT, topic_name)
    subscription = subscriber.subscription_path(PROJECT, f"{topic_name}-ingest")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    for future in [publisher.publish(topic, line) for line in lines]:
        future.result()
    return subscription


def _payments_now(n: int) -> list[bytes]:
    """`n` distinct valid portal payments stamped with the current time."""
    now = datetime.now(timezone.utc)
    return [
        orjson.dumps(restamp(orjson.loads(PORTAL_EVENT.replace(b"000123456", b"%09d" % i)), now))
        for i in range(900_000_000, 900_000_000 + n)
    ]


def _publish_more(lines: list[bytes], topic_name: str) -> None:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(PROJECT, topic_name)
    for future in [publisher.publish(topic, line) for line in lines]:
        future.result()


class _Subscribed:
    """A topic and a subscription to it, to see what the pipeline published."""

    def __init__(self, topic: str, subscription: str) -> None:
        self.topic, self.subscription = topic, subscription

    def received(self) -> list[dict[str, object]]:
        from google.cloud import pubsub_v1

        response = pubsub_v1.SubscriberClient().pull(
            subscription=self.subscription, max_messages=100, timeout=10
        )
        return [json.loads(m.message.data) for m in response.received_messages]


def _subscribed_topic(name: str) -> _Subscribed:
    from google.cloud import pubsub_v1

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(PROJECT, name)
    subscription = subscriber.subscription_path(PROJECT, f"{name}-dashboard")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    return _Subscribed(topic, subscription)


def _processed(out: Path) -> dict[str, int]:
    """The committed stats files of every run, summed by kind (read, accepted, …)."""
    files = [json.loads(path.read_text()) for path in out.glob("runs/*/stats-*.json")]
    return st.totals_by_kind(st.merge(files))


def _run_until_balanced(
    subscription: str, out: Path, emulator: str, published: int, *extra: str
) -> None:
    """Run the streaming pipeline until everything published so far is accounted for in its
    committed stats, then stop it the way an operator would (SIGTERM)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.streaming",
            "--input_subscription",
            subscription,
            "--output",
            str(out),
            "--write_every_seconds",
            "2",
            *extra,
        ],
        env={**os.environ, "PUBSUB_EMULATOR_HOST": emulator},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not balanced(_processed(out), published):
            assert process.poll() is None, "the streaming pipeline exited on its own"
            time.sleep(1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.usefixtures("key_env")
def test_every_published_event_is_accounted_for_across_a_restart(
    emulator: str, tmp_path: Path
) -> None:
    truth = make_landing(
        tmp_path,
        start=date(2017, 6, 30),
        days=1,
        scale=1.0,
        invalid_rate=0.01,
        duplicate_rate=0.02,
        conflict_rate=0.005,
        late_rate=0.0,
    )
    # Generated events are from 2017: far behind the local runner's wall-clock watermark, so
    # too late for any live aggregate. A few payments happening now feed the dashboard.
    live = _payments_now(20)
    lines = publishable_lines(tmp_path / "landing") + live
    subscription = _publish(emulator, lines, "payments")
    out = tmp_path / "out"
    dashboard = _subscribed_topic("live-aggregates")
    _run_until_balanced(
        subscription,
        out,
        emulator,
        len(lines),
        "--aggregates_topic",
        dashboard.topic,
        "--early_firing_seconds",
        "1",  # the run ends within seconds: a pane must fire before that
    )
    first = _processed(out)
    assert first["accepted"] == truth["valid_events"] + len(live)
    assert dashboard.received(), "no live aggregate was published to the dashboard topic"

    # The source resends some events after the pipeline restarts (its memory of ids is gone).
    resent = lines[:300]
    _publish_more(resent, "payments")
    _run_until_balanced(subscription, out, emulator, len(lines) + len(resent))

    counts = _processed(out)
    assert counts["accepted"] == first["accepted"], "a restart wrote a second row for an event"
    table = payments(out)
    assert table.num_rows == counts["accepted"] == truth["valid_events"] + len(live)
    assert pc.count_distinct(table["event_id"]).as_py() == table.num_rows
    assert rejected(out).num_rows == counts["rejected"]
    assert table["source_message_id"].null_count == 0
    assert not list(out.rglob("_staging/**/*.parquet")), "a half-written file was left behind"


@pytest.mark.slow
@pytest.mark.usefixtures("key_env")
def test_a_day_replayed_at_speed_leaves_a_file_per_roll_and_one_after_compaction(
    emulator: str, tmp_path: Path
) -> None:
    # A day at the published rate (~2,700 events), published over 60 s while the pipeline
    # commits a pane every 2 s and rolls its open file every 10 s: a day of 60 s panes and
    # hourly rolls, sped up. One file per pane would be ~30 files in the portal partition.
    truth = make_landing(tmp_path, start=date(2017, 6, 30), days=1, scale=1.0, late_rate=0.0)
    lines = publishable_lines(tmp_path / "landing")
    random.Random(12).shuffle(lines)  # the channels' events interleaved, as over a day
    subscription = _publish(emulator, [], "day")
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "pipelines.streaming", "--output", str(out)),
            *("--input_subscription", subscription, "--write_every_seconds", "2"),
            *("--roll_seconds", "10"),
        ],
        env={**os.environ, "PUBSUB_EMULATOR_HOST": emulator},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = 60
    try:
        per_second = len(lines) // seconds + 1
        for start in range(0, len(lines), per_second):
            _publish_more(lines[start : start + per_second], "day")
            time.sleep(1)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not balanced(_processed(out), len(lines)):
            assert process.poll() is None, "the streaming pipeline exited on its own"
            time.sleep(1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert balanced(_processed(out), len(lines))
    partitions = [p for p in out.glob("payments/*/*") if p.is_dir()]
    files = {p.parent.name + "/" + p.name: len(list(p.glob("*.parquet"))) for p in partitions}
    # One file per 10 s roll of the publishing time, and one for the drain after it.
    assert 1 <= files["channel=portal/event_date=2017-06-30"] <= seconds // 10 + 2, files
    before = payments(out)
    subprocess.run(
        [sys.executable, "-m", "pipelines.compact", "--output", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    assert all(len(list(p.glob("*.parquet"))) == 1 for p in partitions)
    after = payments(out)
    assert after.num_rows == before.num_rows == truth["valid_events"]
    assert sorted(after["event_id"].to_pylist()) == sorted(before["event_id"].to_pylist())
