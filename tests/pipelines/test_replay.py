"""The replay tool's schedule: stamped at the publishing rate, some late, some twice, ids of
its own, nothing lost."""

from __future__ import annotations

import itertools
import os
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from schemas.catalogue import load_catalogue
from schemas.raw import event_id_of
from tests.samples import KIOSK_EVENT, MOBILE_EVENT, PORTAL_EVENT, TEST_KEY
from tools.generate import GeneratorConfig, generate
from tools.replay import (
    OUT_OF_ORDER_REACH,
    ReplayIds,
    ReplayPlan,
    publishable_lines,
    schedule,
    work_folder,
)
from transforms.core.blocks import RunContext, process_block
from transforms.core.normalise import Normaliser
from transforms.core.privacy import Pseudonymiser
from transforms.core.rawblock import RawBlock
from transforms.core.validate import Rejection, parse_event

START = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
LINES = [PORTAL_EVENT, MOBILE_EVENT, KIOSK_EVENT, b"{not json"] * 50
# Only mobile events, whose `ts` is in milliseconds: stamps can be compared exactly.
MOBILE = [MOBILE_EVENT] * 200


def _ts(line: bytes) -> datetime:
    return datetime.fromtimestamp(orjson.loads(line)["ts"] / 1000, timezone.utc)


def _ids(lines: list[bytes]) -> set[str]:
    events = [parse_event(line) for line in lines]
    return {event_id_of(e) for e in events if not isinstance(e, Rejection)}


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """One generated day with no invalid lines, as the replay reads it."""
    landing = tmp_path_factory.mktemp("replay")
    generate(GeneratorConfig(days=1, scale=0.5, invalid_rate=0.0, duplicate_rate=0.0,
                             conflict_rate=0.0, late_rate=0.0, seed=7), str(landing))  # fmt: skip
    return publishable_lines(landing)


def test_every_line_is_published_at_least_once() -> None:
    out = schedule(LINES, ReplayPlan(0.3, 0.1, 0.0, seed=1), START)
    assert len(out) == len(LINES)


def test_duplicates_add_exact_copies() -> None:
    # At one event a second every event has a stamp of its own: only duplicates repeat.
    out = schedule(LINES, ReplayPlan(0.0, 0.0, 0.5, seed=1, rate=1.0), START)
    assert len(out) > len(LINES)
    assert len(set(out)) == 150 + 1  # the restamped events and the one bad line


def test_restamped_events_stay_valid() -> None:
    out = schedule(LINES[:3], ReplayPlan(0.0, 0.0, 0.0, seed=1), START)
    for line in out:
        event = parse_event(line)
        assert not isinstance(event, Rejection), event


def test_events_are_stamped_at_the_rate_they_are_published() -> None:
    out = schedule(MOBILE, ReplayPlan(0.0, 0.0, 0.0, seed=1, rate=10.0), START)
    assert [_ts(line) for line in out] == [
        START + timedelta(seconds=n / 10) for n in range(len(MOBILE))
    ]


def test_a_kiosk_event_is_stamped_in_bahrain_wall_clock_time() -> None:
    out = schedule([KIOSK_EVENT], ReplayPlan(0.0, 0.0, 0.0, seed=1), START)
    assert orjson.loads(out[0])["local_time"] == "2026-11-23 15:00:00"


def test_out_of_order_events_happened_a_few_places_before_they_are_published() -> None:
    plan = ReplayPlan(0.5, 0.0, 0.0, seed=3, rate=10.0)
    stamps = [_ts(line) for line in schedule(MOBILE, plan, START)]
    assert any(a > b for a, b in itertools.pairwise(stamps))  # some are out of order
    for place, stamp in enumerate(stamps):
        behind = START + timedelta(seconds=place / plan.rate) - stamp
        assert timedelta() <= behind <= timedelta(seconds=OUT_OF_ORDER_REACH / plan.rate)


def test_no_event_is_published_before_it_happened() -> None:
    plan = ReplayPlan(0.5, 0.1, 0.3, seed=3, rate=10.0)
    for place, line in enumerate(schedule(MOBILE, plan, START)):
        assert _ts(line) <= START + timedelta(seconds=place / plan.rate)


def test_late_events_are_stamped_minutes_to_hours_before_their_place() -> None:
    plan = ReplayPlan(0.0, 1.0, 0.0, seed=1, rate=10.0)
    for place, line in enumerate(schedule(MOBILE, plan, START)):
        behind = START + timedelta(seconds=place / 10) - _ts(line)
        assert timedelta(minutes=5) <= behind <= timedelta(hours=4)


def test_two_replays_of_the_same_day_send_different_ids(day: list[bytes]) -> None:
    plan = ReplayPlan(0.0, 0.0, 0.0, seed=1)
    first = _ids(schedule(day, plan, START, ReplayIds("aaaaaa")))
    second = _ids(schedule(day, plan, START, ReplayIds("bbbbbb")))
    assert len(first) == len(second) == len(day)
    assert not first & second
    assert {i.split(":")[0] for i in first} == {"portal", "mobile_app", "kiosk"}


def test_without_replay_ids_the_generators_ids_are_sent(day: list[bytes]) -> None:
    out = schedule(day, ReplayPlan(0.0, 0.0, 0.0, seed=1), START)
    assert _ids(out) == _ids(day)


def test_a_new_replay_draws_a_new_tag() -> None:
    assert len({ReplayIds.new().tag for _ in range(20)}) == 20


def test_events_with_replay_ids_are_all_accepted(day: list[bytes]) -> None:
    """No tagged id reads as a card number or a CPR (PERSONAL_DATA_IN_ID)."""
    out = schedule(day, ReplayPlan(0.0, 0.0, 0.0, seed=1), START, ReplayIds.new())
    ctx = RunContext(Normaliser(Pseudonymiser(TEST_KEY), load_catalogue()), "run-test", 0)
    result = process_block(RawBlock("projects/p/subscriptions/s", out), ctx)
    assert result.rejected.num_rows == 0, result.rejected.column("reason").to_pylist()[:3]
    assert result.accepted.num_rows == len(day)


@pytest.mark.parametrize("tag", ["aaaaaa", "zzzzzz", "qxkzbm"])
def test_a_replayed_kiosk_seq_is_shorter_than_any_card_number(tag: str) -> None:
    event = ReplayIds(tag).apply(orjson.loads(KIOSK_EVENT))
    assert 1_000_000 <= int(str(event["seq"])) < 10**12


def test_the_default_work_folder_is_a_new_temporary_one_deleted_afterwards() -> None:
    with work_folder(None) as first, work_folder(None) as second:
        assert first != second
        assert Path(first).parent == Path(tempfile.gettempdir())
    assert not os.path.exists(first)


def test_a_given_work_folder_is_kept(tmp_path: Path) -> None:
    with work_folder(str(tmp_path / "work")) as folder:
        os.makedirs(folder)
    assert os.path.isdir(folder)
