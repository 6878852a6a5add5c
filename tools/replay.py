"""Publish generated payment events to a Pub/Sub topic at a chosen rate, so the streaming
pipeline can be watched working locally.

    python -m tools.replay --topic projects/demo-project/topics/payments --rate 500

Events come from the sample generator (tools.generate), stamped around *now* so they are
on time for the live aggregates, with a chosen share delivered out of order, late (minutes to
hours behind) or twice.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from pipelines import cli
from schemas.timekeeping import BAHRAIN
from tools.command_line import ToolParser
from tools.generate import GeneratorConfig, generate


@dataclass(frozen=True)
class ReplayPlan:
    out_of_order: float
    late: float
    duplicate: float
    seed: int


def restamp(event: dict[str, object], moment: datetime) -> dict[str, object]:
    """The event as if it happened at `moment` (each channel says time its own way)."""
    channel = event.get("channel")
    if channel == "portal":
        event["paid_at"] = moment.astimezone(BAHRAIN).isoformat(timespec="seconds")
    elif channel == "mobile_app":
        event["ts"] = int(moment.timestamp() * 1000)
    elif channel == "kiosk":
        event["local_time"] = moment.astimezone(BAHRAIN).strftime("%Y-%m-%d %H:%M:%S")
    return event


def schedule(lines: list[bytes], plan: ReplayPlan, now: datetime) -> list[bytes]:
    """Lines to publish, in publishing order: restamped around now, some shuffled locally,
    some hours late, some twice."""
    rng = random.Random(plan.seed)
    out: list[bytes] = []
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            out.append(line)  # invalid lines stay invalid
            continue
        if not isinstance(event, dict):
            out.append(line)
            continue
        behind = timedelta(minutes=rng.uniform(5, 240)) if rng.random() < plan.late else timedelta()
        payload = orjson.dumps(restamp(event, now - behind))
        out.append(payload)
        if rng.random() < plan.duplicate:
            out.insert(rng.randint(max(0, len(out) - 50), len(out)), payload)
    for i in range(len(out) - 1):
        if rng.random() < plan.out_of_order:
            j = min(len(out) - 1, i + rng.randint(1, 20))
            out[i], out[j] = out[j], out[i]
    return out


# Pub/Sub refuses messages over 10 MB; the generator's "huge line" kind is over 1 MiB and is
# left out too, so replays stay quick.
_MAX_MESSAGE_BYTES = 1_000_000


def publishable_lines(landing: Path) -> list[bytes]:
    """The non-blank lines of a generated landing folder that fit in a Pub/Sub message."""
    return [
        line
        for path in sorted(landing.rglob("*.jsonl"))
        for line in path.read_bytes().split(b"\n")
        if line.strip() and len(line) < _MAX_MESSAGE_BYTES
    ]


def ensure_topic_and_subscription(
    publisher: Any, subscriber: Any, topic: str, subscription: str
) -> None:
    """Create the topic and the pipeline's subscription unless they exist."""
    from google.api_core.exceptions import AlreadyExists

    with contextlib.suppress(AlreadyExists):
        publisher.create_topic(name=topic)
    with contextlib.suppress(AlreadyExists):
        subscriber.create_subscription(name=subscription, topic=topic)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ToolParser(
        prog="python -m tools.replay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=cli.exit_statuses("when every event is published"),
    )
    parser.add_argument("--topic", required=True, help="projects/P/topics/T")
    parser.add_argument(
        "--subscription",
        help="projects/P/subscriptions/S to create with the topic if missing (default: the "
        "topic's name + '-ingest'), so the pipeline can start before or after the replay",
    )
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--scale", type=float, default=0.2, help="generator scale (one day)")
    parser.add_argument("--out-of-order", type=float, default=0.1, dest="out_of_order")
    parser.add_argument("--late", type=float, default=0.02, help="share hours behind now")
    parser.add_argument("--duplicate", type=float, default=0.02, help="share published twice")
    parser.add_argument("--invalid", type=float, default=0.01, help="share of bad lines")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work-dir", default="/tmp/payments-replay", dest="work_dir")
    args = parser.parse(argv)
    cli.check_resource(args.topic, "topics", "--topic")
    if args.subscription:
        cli.check_resource(args.subscription, "subscriptions", "--subscription")
    if args.rate <= 0 or args.scale <= 0:
        parser.error("--rate and --scale must be more than 0")
    for share in ("out_of_order", "late", "duplicate", "invalid"):
        if not 0 <= getattr(args, share) <= 1:
            flag = "--" + share.replace("_", "-")
            parser.error(f"{flag} is a share of the events: between 0 and 1")
    cli.check_output(args.work_dir, "--work-dir")

    from google.cloud import pubsub_v1  # imported late: --help needs no client library

    config = GeneratorConfig(
        days=1,
        scale=args.scale,
        invalid_rate=args.invalid,
        duplicate_rate=0.0,
        conflict_rate=0.0,
        late_rate=0.0,
        seed=args.seed,
    )
    generate(config, args.work_dir)
    lines = publishable_lines(Path(args.work_dir))
    plan = ReplayPlan(args.out_of_order, args.late, args.duplicate, args.seed)
    messages = schedule(lines, plan, datetime.now(timezone.utc))
    publisher = pubsub_v1.PublisherClient()
    subscription = (
        args.subscription or args.topic.replace("/topics/", "/subscriptions/") + "-ingest"
    )
    ensure_topic_and_subscription(publisher, pubsub_v1.SubscriberClient(), args.topic, subscription)
    print(f"publishing to {args.topic}; the pipeline reads {subscription}", flush=True)
    started = time.monotonic()
    futures = []
    for n, message in enumerate(messages, 1):
        futures.append(publisher.publish(args.topic, message))
        delay = n / args.rate - (time.monotonic() - started)
        if delay > 0:
            time.sleep(delay)
        if n % 1000 == 0:
            print(f"published {n:,} of {len(messages):,}", flush=True)
    for future in futures:
        future.result()
    print(
        f"published {len(messages):,} messages to {args.topic} "
        f"in {time.monotonic() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
