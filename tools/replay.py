"""Publish generated payment events to a Pub/Sub topic at a chosen rate, so the streaming
pipeline can be watched working locally.

    python -m tools.replay --topic projects/demo-project/topics/payments --rate 10

Events are one generated day (tools.generate), stamped over the publishing time at the chosen
rate, so the live aggregates see them as they arrive, with a chosen share delivered out of
order, late (minutes to hours behind) or twice. Each replay gives its events ids of its own
(--same-ids to resend the same ones).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import secrets
import string
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from pipelines import cli
from schemas.timekeeping import BAHRAIN
from tools.generate import GeneratorConfig, generate

# How many later events an out-of-order event may be published after.
OUT_OF_ORDER_REACH = 20
# The namespace of the app event ids a replay derives (uuid5): any fixed UUID will do.
_ID_NAMESPACE = uuid.UUID("5f0c7a52-3c1e-4c59-9d43-7f0f4a0e9b21")


@dataclass(frozen=True)
class ReplayPlan:
    """Shares of events delivered out of order, late and twice; `rate` events per second."""

    out_of_order: float
    late: float
    duplicate: float
    seed: int
    rate: float = 10.0


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


@dataclass(frozen=True)
class ReplayIds:
    """Makes one replay's event ids its own, so a second replay is new payments, not
    conflicting redeliveries of the first: a portal `txn_id` gets the replay's tag as a
    suffix, an app `event_id` becomes a UUID derived from the tag and the old id, a kiosk
    `seq` moves up by the tag's offset (millions, so a kiosk's counters of two replays do
    not meet; at most 12 digits, shorter than any card number)."""

    tag: str  # lowercase letters: no digits for the privacy rule to read as a card or a CPR

    @classmethod
    def new(cls) -> ReplayIds:
        return cls("".join(secrets.choice(string.ascii_lowercase) for _ in range(6)))

    @property
    def seq_offset(self) -> int:
        digest = hashlib.sha256(self.tag.encode()).digest()
        return (int.from_bytes(digest[:8], "big") % 99_999 + 1) * 1_000_000

    def apply(self, event: dict[str, object]) -> dict[str, object]:
        """The event with this replay's ids (fields of the wrong type are left as they are)."""
        channel = event.get("channel")
        txn_id, event_id, seq = event.get("txn_id"), event.get("event_id"), event.get("seq")
        if channel == "portal" and isinstance(txn_id, str):
            event["txn_id"] = f"{txn_id}-{self.tag}"
        elif channel == "mobile_app" and isinstance(event_id, str):
            event["event_id"] = str(uuid.uuid5(_ID_NAMESPACE, f"{self.tag}:{event_id}"))
        elif channel == "kiosk" and isinstance(seq, int) and not isinstance(seq, bool):
            event["seq"] = seq + self.seq_offset
        return event


def schedule(
    lines: list[bytes], plan: ReplayPlan, start: datetime, ids: ReplayIds | None = None
) -> list[bytes]:
    """Lines to publish, in publishing order, one every 1/rate s from `start`: each event
    stamped with the time of its place in that order, except an out-of-order one (stamped
    1 to OUT_OF_ORDER_REACH places earlier, so it arrives after events that happened later)
    and a late one (minutes to hours earlier); some published twice; with `ids`, this
    replay's own ids. No event is stamped after it is published."""
    rng = random.Random(plan.seed)
    events: list[dict[str, object] | None] = []  # None: a line published as it is
    behind: list[timedelta] = []  # how long before its place each event happened
    order: list[int] = []  # indexes into events; a duplicate appears twice
    for n, line in enumerate(lines):
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            event = None  # invalid lines stay invalid
        order.append(n)
        if not isinstance(event, dict):
            events.append(None)
            behind.append(timedelta())
            continue
        if rng.random() < plan.late:
            behind.append(timedelta(minutes=rng.uniform(5, 240)))
        elif rng.random() < plan.out_of_order:
            behind.append(timedelta(seconds=rng.randint(1, OUT_OF_ORDER_REACH) / plan.rate))
        else:
            behind.append(timedelta())
        events.append(ids.apply(event) if ids else event)
        if rng.random() < plan.duplicate:
            order.insert(rng.randint(max(0, len(order) - 50), len(order)), n)
    first: dict[int, int] = {}
    for place, n in enumerate(order):
        first.setdefault(n, place)
    payloads = [
        line if event is None else orjson.dumps(restamp(event, at(start, plan, first[n]) - lag))
        for n, (line, event, lag) in enumerate(zip(lines, events, behind, strict=True))
    ]
    return [payloads[n] for n in order]


def at(start: datetime, plan: ReplayPlan, place: int) -> datetime:
    """When the message in `place` of the publishing order is published."""
    return start + timedelta(seconds=place / plan.rate)


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


def build_parser() -> cli.Parser:
    parser = cli.Parser(
        prog="python -m tools.replay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=cli.exit_statuses("when every event is published"),
    )
    add = parser.add_argument
    add("--topic", required=True, help="projects/P/topics/T")
    add(
        "--subscription",
        help="projects/P/subscriptions/S to create with the topic if missing (default: the "
        "topic's name + '-ingest'), so the pipeline can start before or after the replay",
    )
    add(
        "--rate",
        type=float,
        default=10.0,
        help="messages per second (default %(default)g: the default day, ~2,200 messages, "
        "takes about 3.7 minutes, so the pipeline writes several 60 s panes)",
    )
    add(
        "--scale",
        type=float,
        default=1.0,
        help="generator scale of the one day replayed; 1 = the published daily volume "
        "(default %(default)g)",
    )
    add(
        "--out-of-order",
        type=float,
        default=0.1,
        metavar="SHARE",
        help=f"share of events published after up to {OUT_OF_ORDER_REACH} events that "
        "happened later (default %(default)g)",
    )
    add(
        "--late",
        type=float,
        default=0.02,
        metavar="SHARE",
        help="share of events stamped 5 minutes to 4 hours before they are published "
        "(default %(default)g)",
    )
    add(
        "--duplicate",
        type=float,
        default=0.02,
        metavar="SHARE",
        help="share of events published twice (default %(default)g)",
    )
    add(
        "--invalid",
        type=float,
        default=0.01,
        metavar="SHARE",
        help="share of bad lines (default %(default)g)",
    )
    add(
        "--same-ids",
        action="store_true",
        help="send the generator's event ids unchanged, so a second replay with the same "
        "--seed and --scale sends the same ids again (with new times: the pipeline rejects "
        "them as DUPLICATE_CONFLICT). By default each replay tags its ids, so they are new",
    )
    add(
        "--seed",
        type=int,
        default=7,
        help="seed of the generated events and of the schedule: the same seed replays the "
        "same payments in the same order (default %(default)s)",
    )
    add(
        "--work-dir",
        metavar="DIR",
        help="folder to generate the replayed events into, kept afterwards (default: a new "
        "temporary folder, deleted at the end)",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The checked command line (exit status 2 on a mistake)."""
    parser = build_parser()
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
    if args.work_dir is not None:
        cli.check_output(args.work_dir, "--work-dir")
    return args


@contextlib.contextmanager
def work_folder(given: str | None) -> Iterator[str]:
    """The folder to generate into: the one given (kept), else a new temporary one, deleted
    on leaving (two replays at once never share one)."""
    if given is not None:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="payments-replay-") as folder:
        yield folder


def generated_lines(args: argparse.Namespace) -> list[bytes]:
    """The lines of the one generated day the command line asks for."""
    config = GeneratorConfig(
        days=1,
        scale=args.scale,
        invalid_rate=args.invalid,
        duplicate_rate=0.0,
        conflict_rate=0.0,
        late_rate=0.0,
        seed=args.seed,
    )
    with work_folder(args.work_dir) as folder:
        generate(config, folder)
        return publishable_lines(Path(folder))


_PROGRESS_SECONDS = 30.0  # a "published n of N" line this often


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from google.cloud import pubsub_v1  # imported late: --help needs no client library

    lines = generated_lines(args)
    publisher = pubsub_v1.PublisherClient()
    subscription = (
        args.subscription or args.topic.replace("/topics/", "/subscriptions/") + "-ingest"
    )
    ensure_topic_and_subscription(publisher, pubsub_v1.SubscriberClient(), args.topic, subscription)
    ids = None if args.same_ids else ReplayIds.new()
    plan = ReplayPlan(args.out_of_order, args.late, args.duplicate, args.seed, args.rate)
    start = datetime.now(timezone.utc)  # the schedule's clock: event n happens at n / rate
    messages = schedule(lines, plan, start, ids)
    started = time.monotonic() - (datetime.now(timezone.utc) - start).total_seconds()
    print(
        f"publishing {len(messages):,} messages to {args.topic} at {args.rate:g}/s (about "
        f"{len(messages) / args.rate / 60:.1f} minutes), "
        + (f"ids tagged '{ids.tag}'" if ids else "the generator's ids")
        + f"; the pipeline reads {subscription}",
        flush=True,
    )
    futures = []
    report = started + _PROGRESS_SECONDS
    for n, message in enumerate(messages, 1):
        futures.append(publisher.publish(args.topic, message))
        delay = n / args.rate - (time.monotonic() - started)
        if delay > 0:
            time.sleep(delay)
        if time.monotonic() >= report:
            print(f"published {n:,} of {len(messages):,}", flush=True)
            report += _PROGRESS_SECONDS
    for future in futures:
        future.result()
    print(
        f"published {len(messages):,} messages to {args.topic} "
        f"in {time.monotonic() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
